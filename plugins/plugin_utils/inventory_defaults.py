# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin base: fill a module's connection options from the host's
forest_* inventory variables, so `ansible forest -m pgforest.cluster.forest_status
-a userdb=userdb` reaches each host's own server without more arguments."""

from __future__ import annotations

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

from ansible_collections.pgforest.cluster.plugins.filter.node_layout import node_server
from ansible_collections.pgforest.cluster.plugins.module_utils import local_server as layout

# module option -> inventory variable
INVENTORY_DEFAULTS = {
    'login_host': 'forest_pg_host',
    'login_port': 'forest_pg_port',
    'login_user': 'forest_pg_user',
    'login_password': 'forest_pg_password',
    'peer_host': 'forest_peer_host',
    'userdb': 'forest_userdb',
    'ssl_mode': 'forest_pg_ssl_mode',
    'ssl_rootcert': 'forest_pg_ssl_rootcert',
    'ssl_cert': 'forest_pg_ssl_cert',
    'ssl_key': 'forest_pg_ssl_key',
}

# Taken from the host the module runs on (its files: the CA certificate, a client key).
TLS_OPTIONS = ('ssl_mode', 'ssl_rootcert', 'ssl_cert', 'ssl_key')
# What tls_defaults reads: whether TLS is on, and where the node lives (node_server).
TLS_RULE_VARIABLES = ('forest_tls', 'forest_serverid', 'forest_node_serverid', 'forest_node_base_dir')
# The options of the doc fragment local_server filled from node_server (the forest_node_* variables over
# the rule), and what node_server reads to compute them.
LOCAL_SERVER_OPTIONS = ('data_dir', 'os_user', 'service_manager', 'service_name')
NODE_SERVER_VARIABLES = ('forest_serverid', 'forest_node_serverid', 'forest_node_base_dir', 'forest_node_data_dir',
                         'forest_node_log_file', 'forest_node_os_user', 'forest_node_service_manager',
                         'forest_node_service_name')


def tls_defaults(host_vars):
    """With forest_tls true (the forest_node role serves TLS with the pair's CA), what the modules
    connect with unless told otherwise: verify-full against the CA certificate the role put on the
    node.  host_vars: the host's variables, templated."""
    if not boolean(host_vars.get('forest_tls', False), strict=False):
        return {}
    return dict(ssl_mode='verify-full',
                ssl_rootcert=layout.node_tls_ca_file(node_server(host_vars)['base_dir']))


def local_server_defaults(host_vars):
    """The node's server on the host the module runs on (node_server of its variables), for the options
    of the doc fragment local_server; nothing when the host names no serverid (the module then says
    what it needs).  host_vars: the host's variables, templated."""
    if host_vars.get('forest_node_serverid') in (None, '') and host_vars.get('forest_serverid') in (None, ''):
        return {}
    server = node_server(host_vars)
    return dict((option, server[option]) for option in LOCAL_SERVER_OPTIONS)


class InventoryDefaultsAction(ActionBase):
    _supports_check_mode = True
    _supports_async = False
    # A module that reads several user databases at once (option userdbs) takes the host's
    # forest_userdbs when the task names none; userdb and userdbs exclude each other.
    takes_userdbs = False
    # A module that stops, starts or replaces the node's server (doc fragment local_server) takes
    # that server's data_dir, os_user, service_manager and service_name from the inventory.
    takes_local_server = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        skip = set()
        if self.takes_userdbs and args.get('userdb') is None:
            if args.get('userdbs') is None and task_vars.get('forest_userdbs') is not None:
                args['userdbs'] = self._templar.template(task_vars['forest_userdbs'])
            if args.get('userdbs') is not None:
                skip.add('userdb')
        # The TLS files are read where the module runs: a delegated task's, on the delegate host.
        file_vars, file_templar = task_vars, self._templar
        delegated = task_vars.get('ansible_delegated_vars', {}).get(self._task.delegate_to or '')
        if self._task.delegate_to and delegated is not None:
            file_vars, file_templar = delegated, self._templar.copy_with_new_env(available_variables=delegated)
        for option, variable in INVENTORY_DEFAULTS.items():
            source, templar = (file_vars, file_templar) if option in TLS_OPTIONS else (task_vars, self._templar)
            if option not in skip and args.get(option) is None and variable in source:
                args[option] = templar.template(source[variable])
        if 'forest_tls' in file_vars:
            host_vars = dict((name, file_templar.template(file_vars[name])) for name in TLS_RULE_VARIABLES
                             if name in file_vars)
            for option, value in tls_defaults(host_vars).items():
                if args.get(option) is None:
                    args[option] = value
        if self.takes_local_server:
            # The server is the one where the module runs: a delegated task's, the delegate host's, read
            # through hostvars so that its variables are templated as that host's (a base directory named
            # after {{ inventory_hostname }} is the delegate's, not the task host's).
            server_vars = task_vars
            if self._task.delegate_to and self._task.delegate_to in task_vars.get('hostvars', {}):
                server_vars = task_vars['hostvars'][self._task.delegate_to]
            host_vars = dict((name, self._templar.template(server_vars[name])) for name in NODE_SERVER_VARIABLES
                             if name in server_vars)
            for option, value in local_server_defaults(host_vars).items():
                if args.get(option) is None:
                    args[option] = value
        result.update(self._execute_module(module_name=self._task.action, module_args=args,
                                           task_vars=task_vars))
        return result
