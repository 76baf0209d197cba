# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin base: fill a module's connection options from the host's
forest_* inventory variables, so `ansible forest -m pgforest.cluster.forest_status
-a userdb=userdb` reaches each host's own server without more arguments."""

from __future__ import annotations

from ansible.plugins.action import ActionBase

# module option -> inventory variable
INVENTORY_DEFAULTS = {
    'login_host': 'forest_pg_host',
    'login_port': 'forest_pg_port',
    'login_user': 'forest_pg_user',
    'login_password': 'forest_pg_password',
    'peer_host': 'forest_peer_host',
    'userdb': 'forest_userdb',
}


class InventoryDefaultsAction(ActionBase):
    _supports_check_mode = True
    _supports_async = False
    # A module that reads several user databases at once (option userdbs) takes the host's
    # forest_userdbs when the task names none; userdb and userdbs exclude each other.
    takes_userdbs = False

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
        for option, variable in INVENTORY_DEFAULTS.items():
            if option not in skip and args.get(option) is None and variable in task_vars:
                args[option] = self._templar.template(task_vars[variable])
        result.update(self._execute_module(module_name=self._task.action, module_args=args,
                                           task_vars=task_vars))
        return result
