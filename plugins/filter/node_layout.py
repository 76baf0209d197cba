# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where node N of the pair lives on its host and how its server runs, for roles and playbooks.
The rule itself is in module_utils/local_server.py (the modules on a node's host use it too).

The forest_node role's defaults are computed by these filters (node_base_dir, node_data_dir,
node_log_file, node_service_name), and the modules that stop, start or replace a node's server
(online recovery, physical backup and restore) get it from their action plugin
(plugin_utils/inventory_defaults.py), which asks node_server: that host's forest_node_*
inventory variables over the same rule.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleFilterError

from ansible_collections.pgforest.cluster.plugins.module_utils import local_server as layout


def _serverid(value):
    try:
        serverid = int(value)
    except (TypeError, ValueError):
        raise AnsibleFilterError('a serverid is 0 or 1, got %r: set forest_serverid for the host' % (value,))
    if serverid not in (0, 1):
        raise AnsibleFilterError('a serverid is 0 or 1, got %r: set forest_serverid for the host' % (value,))
    return serverid


def node_base_dir(serverid):
    return layout.node_base_dir(_serverid(serverid))


def node_service_name(serverid):
    return layout.node_service_name(_serverid(serverid))


def node_server(host_vars):
    """{base_dir, data_dir, log_file, os_user, service_manager, service_name} of the host whose
    variables are given (hostvars[host]): its forest_node_* variables where set, else the rule."""
    def given(name):
        value = host_vars.get(name)
        return None if value in (None, '') else value

    serverid = given('forest_node_serverid')
    serverid = serverid if serverid is not None else host_vars.get('forest_serverid')
    base_dir = given('forest_node_base_dir') or node_base_dir(serverid)
    return dict(base_dir=base_dir,
                data_dir=given('forest_node_data_dir') or layout.node_data_dir(base_dir),
                log_file=given('forest_node_log_file') or layout.node_log_file(base_dir),
                os_user=given('forest_node_os_user') or layout.DEFAULT_OS_USER,
                service_manager=given('forest_node_service_manager') or layout.DEFAULT_SERVICE_MANAGER,
                service_name=given('forest_node_service_name') or node_service_name(serverid))


# The private CA of forest_tls on the controller, unless forest_tls_ca_dir says where.
DEFAULT_TLS_CA_DIR = '~/.pgforest/ca'


def tls_ca_dir(value=None):
    """The private CA's directory on the controller (forest_tls_ca_dir, else ~/.pgforest/ca), expanded."""
    return os.path.expanduser(value if value not in (None, '') else DEFAULT_TLS_CA_DIR)


def tls_ca_file(host_vars):
    """On the controller, the CA certificate a host's node certificate chains to: the DBA's
    (forest_tls_ca_file) or the private CA's."""
    given = host_vars.get('forest_tls_ca_file')
    return given if given not in (None, '') else os.path.join(tls_ca_dir(host_vars.get('forest_tls_ca_dir')), 'ca.crt')


class FilterModule(object):
    def filters(self):
        return {
            'node_base_dir': node_base_dir,
            'node_data_dir': layout.node_data_dir,
            'node_socket_dir': layout.node_socket_dir,
            'node_log_file': layout.node_log_file,
            'node_tls_dir': layout.node_tls_dir,
            'node_service_name': node_service_name,
            'node_server': node_server,
            'tls_ca_dir': tls_ca_dir,
            'tls_ca_file': tls_ca_file,
        }
