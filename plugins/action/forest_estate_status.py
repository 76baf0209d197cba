# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs forest_estate_status with the pairs of the inventory (plugin_utils/estate.py: the pair rule and
the connection variables), each pair of which a host is in the play."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail, AnsibleFilterError
from ansible.plugins.action import ActionBase

from ansible_collections.pgforest.cluster.plugins.plugin_utils.estate import EstateError, check_tls_files, estate_pairs


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        args = dict(self._task.args)
        if args.get('pairs') is None:
            group = args.get('group') or 'forest'
            group_hosts = task_vars.get('groups', {}).get(group)
            if not group_hosts:
                raise AnsibleActionFail('the inventory has no group %s (the pairs\' hosts): give group' % group)
            try:
                pairs = check_tls_files(estate_pairs(task_vars['hostvars'], group_hosts, group,
                                                     task_vars.get('ansible_play_hosts'), args.get('connect_timeout') or 3))
            except (AnsibleFilterError, EstateError) as exc:
                raise AnsibleActionFail('%s. Nothing was read' % exc)
            # The passwords go in their own no_log option: a no_log list of pairs would hide every name in the output.
            args['passwords'] = dict((pair['pair'], pair['params'].pop('login_password')) for pair in pairs)
            args['pairs'] = pairs
        result.update(self._execute_module(module_name=self._task.action, module_args=args, task_vars=task_vars))
        return result
