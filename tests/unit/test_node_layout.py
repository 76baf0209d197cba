"""Where node N lives (plugins/filter/node_layout.py): the rule, the host's overrides, and the
forest_node role's defaults, which are computed by the same filters."""
import os
import pwd

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.pgforest.cluster.plugins.filter import node_layout
from ansible_collections.pgforest.cluster.plugins.module_utils import local_server
from pgforest_dev import REPO


def test_the_rule_for_a_host_without_overrides():
    assert node_layout.node_server({'forest_serverid': 1}) == dict(
        base_dir='/var/lib/pgforest/node1', data_dir='/var/lib/pgforest/node1/data',
        log_file='/var/lib/pgforest/node1/postgresql.log', os_user='postgres', service_manager='pg_ctl',
        service_name='pgforest-node1')


def test_the_host_variables_win_and_a_base_dir_moves_what_is_under_it():
    server = node_layout.node_server({'forest_serverid': '0', 'forest_node_base_dir': '/srv/pg0',
                                      'forest_node_service_manager': 'systemd', 'forest_node_data_dir': ''})
    assert (server['data_dir'], server['log_file'], server['service_manager'], server['service_name']) == (
        '/srv/pg0/data', '/srv/pg0/postgresql.log', 'systemd', 'pgforest-node0')
    assert node_layout.node_server({'forest_serverid': 0, 'forest_node_data_dir': '/d'})['data_dir'] == '/d'


@pytest.mark.parametrize('serverid', [None, 2, -1, 'one'])
def test_a_host_without_a_valid_serverid_is_refused_clearly(serverid):
    with pytest.raises(AnsibleFilterError, match='a serverid is 0 or 1.*forest_serverid'):
        node_layout.node_server({'forest_serverid': serverid})


def test_the_forest_node_role_defaults_follow_the_same_rule():
    with open(os.path.join(REPO, 'roles', 'forest_node', 'defaults', 'main.yml')) as handle:
        defaults = yaml.safe_load(handle)
    assert defaults['forest_node_base_dir'] == '{{ forest_node_serverid | pgforest.cluster.node_base_dir }}'
    assert defaults['forest_node_data_dir'] == '{{ forest_node_base_dir | pgforest.cluster.node_data_dir }}'
    assert defaults['forest_node_socket_dir'] == '{{ forest_node_base_dir | pgforest.cluster.node_socket_dir }}'
    assert defaults['forest_node_log_file'] == '{{ forest_node_base_dir | pgforest.cluster.node_log_file }}'
    assert defaults['forest_node_service_name'] == '{{ forest_node_serverid | pgforest.cluster.node_service_name }}'
    assert (defaults['forest_node_os_user'], defaults['forest_node_service_manager']) == (
        local_server.DEFAULT_OS_USER, local_server.DEFAULT_SERVICE_MANAGER)


def test_a_module_on_the_node_host_finds_the_log_where_the_role_puts_it():
    # os_user: any user this host has (the log's place does not depend on it; a controller without
    # PostgreSQL has no postgres user)
    server = local_server.LocalServer.from_params(dict(
        data_dir='/var/lib/pgforest/node1/data', pg_bindir='/usr/lib/postgresql/15/bin',
        os_user=pwd.getpwuid(os.getuid()).pw_name,
        log_file=None, service_manager='pg_ctl', service_name=None, start_timeout=60))
    assert server.log_file == node_layout.node_server({'forest_serverid': 1})['log_file']


def test_with_forest_tls_the_modules_verify_against_the_ca_the_role_installs():
    from ansible_collections.pgforest.cluster.plugins.plugin_utils.inventory_defaults import tls_defaults
    assert tls_defaults({'forest_serverid': 1}) == {}
    assert tls_defaults({'forest_tls': 'false', 'forest_serverid': 1}) == {}
    assert tls_defaults({'forest_tls': True, 'forest_serverid': 1}) == dict(
        ssl_mode='verify-full', ssl_rootcert='/var/lib/pgforest/node1/tls/ca.crt')
    assert tls_defaults({'forest_tls': 'yes', 'forest_serverid': 0, 'forest_node_base_dir': '/srv/pg0'}) == dict(
        ssl_mode='verify-full', ssl_rootcert='/srv/pg0/tls/ca.crt')
    # the role installs it where its own variable, computed by the same filter, says
    with open(os.path.join(REPO, 'roles', 'forest_node', 'vars', 'main.yml')) as handle:
        assert 'pgforest.cluster.node_tls_dir' in yaml.safe_load(handle)['forest_node_tls_dir']


def test_the_modules_that_drive_the_server_take_it_from_the_inventory():
    from ansible_collections.pgforest.cluster.plugins.plugin_utils.inventory_defaults import local_server_defaults
    assert local_server_defaults({}) == {}  # no serverid: the module says what it needs
    assert local_server_defaults({'forest_serverid': 1}) == dict(
        data_dir='/var/lib/pgforest/node1/data', os_user='postgres', service_manager='pg_ctl',
        service_name='pgforest-node1')
    assert local_server_defaults({'forest_serverid': 0, 'forest_node_base_dir': '/srv/pg0',
                                  'forest_node_os_user': 'pg', 'forest_node_service_manager': 'systemd'}) == dict(
        data_dir='/srv/pg0/data', os_user='pg', service_manager='systemd', service_name='pgforest-node0')
