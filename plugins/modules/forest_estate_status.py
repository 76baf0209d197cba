#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: forest_estate_status
short_description: Merged status of every PostgresForest pair of the inventory, read at once
description:
  - Reads every pair of the inventory group O(group) from the host it runs on (run it once, on the
    controller with C(delegate_to localhost) and C(run_once), as C(playbooks/status.yml) does), every pair,
    user database and node at once, each node within O(connect_timeout) and less than a second more.
  - Each pair's status is what M(pgforest.cluster.forest_status) gives for it (the same reading and merge rules),
    with its C(summary) lines.
  - The pairs are taken from the inventory with the playbooks' rules (a host's pair is its C(forest_pair), two
    hosts with C(forest_serverid) 0 and 1; C(forest_userdbs)), each pair of which a host is in the play; each node
    is reached at its C(forest_pg_host) and C(forest_pg_port) with C(forest_pg_user) and C(forest_pg_password) of the
    pair's serverid 0. TLS files are the ones where the module runs, C(forest_pg_ssl_mode), C(forest_pg_ssl_rootcert)
    (and cert, key) as given, else with C(forest_tls) C(verify-full) against the pair's CA on the controller
    (C(forest_tls_ca_file), else C(ca.crt) of C(forest_tls_ca_dir)).
  - The host it runs on must reach every node's server (the nodes' C(pg_hba.conf) admit it,
    C(forest_node_admin_hosts)).
version_added: 0.2.0
author: pgforest.cluster developers (@pgforest)
options:
  group:
    description: The inventory group of the pairs' hosts (read by the action plugin).
    type: str
    default: forest
  connect_timeout:
    description: Seconds to wait for a node to accept a connection (libpq C(connect_timeout), at least 2 in effect).
    type: int
    default: 3
  broken_log_limit:
    description: How many of the most recent C(broken_log) rows each status returns.
    type: int
    default: 10
  pairs:
    description:
      - The pairs to read, each C(pair) (its name), C(userdbs) and C(params) (connection options of its serverid 0
        with C(peer_host) and C(peer_port) its serverid 1, as M(pgforest.cluster.forest_status) takes them).
      - Filled by the action plugin from the inventory; give it only to read pairs the inventory does not hold.
      - The passwords are not here but in O(passwords).
    type: list
    elements: dict
  passwords:
    description:
      - The superuser's password of each pair, by pair name (filled by the action plugin from C(forest_pg_password)).
      - Never logged or returned.
    type: dict
attributes:
  check_mode:
    support: full
    description: Reads only.
  diff_mode:
    support: none
    description: Changes nothing.
requirements:
  - psycopg >= 3.1
'''

EXAMPLES = r'''
- name: Read every pair of the inventory from the controller
  pgforest.cluster.forest_estate_status:
  delegate_to: localhost
  run_once: true
  register: estate

- name: Name the pairs that are not healthy
  ansible.builtin.debug:
    msg: "{{ estate.pairs | rejectattr('status.healthy') | map(attribute='pair') }}"
  run_once: true
'''

RETURN = r'''
pairs:
  description: Each pair, by name, with C(pair) and C(status), what M(pgforest.cluster.forest_status) returns for it
    (C(cluster_state), C(healthy), C(unhealthy_userdbs), C(databases), C(nodes), C(recommended_action), C(summary), ...).
  returned: always
  type: list
  elements: dict
  sample: [{"pair": "pair0", "status": {"cluster_state": "healthy", "healthy": true, "unhealthy_userdbs": []}}]
healthy:
  description: Whether every user database of every pair is C(healthy).
  returned: always
  type: bool
unhealthy_pairs:
  description: The pairs with a user database that is not C(healthy), by name.
  returned: always
  type: list
  elements: str
elapsed:
  description: Seconds the module spent reading the pairs.
  returned: always
  type: float
'''

import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ..module_utils.estate_read import read_estate
from ..module_utils.forest_pg import PSYCOPG_IMPORT_ERROR
from ..module_utils.mngdb import MngdbError, mngdb_name

PAIR_KEYS = ('pair', 'userdbs', 'params')


def main():
    module = AnsibleModule(argument_spec=dict(
        group=dict(type='str', default='forest'),
        connect_timeout=dict(type='int', default=3),
        broken_log_limit=dict(type='int', default=10),
        pairs=dict(type='list', elements='dict'),
        passwords=dict(type='dict', no_log=True),
    ), supports_check_mode=True)
    if PSYCOPG_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib('psycopg (version 3)'), exception=PSYCOPG_IMPORT_ERROR)
    pairs = module.params['pairs']
    if not pairs:
        module.fail_json(msg='no pair to read: the inventory group %s has no host in the play (or pairs is empty)'
                         % module.params['group'])
    if module.params['broken_log_limit'] < 0:
        module.fail_json(msg='broken_log_limit must be 0 or more (got %d)' % module.params['broken_log_limit'])
    for pair in pairs:
        missing = [key for key in PAIR_KEYS if key not in pair]
        if missing:
            module.fail_json(msg='each of pairs needs %s; %s lacks %s' % (', '.join(PAIR_KEYS), pair.get('pair'),
                                                                          ', '.join(missing)))
        for userdb in pair['userdbs']:
            try:
                mngdb_name(userdb)
            except MngdbError as exc:
                module.fail_json(msg='pair %s: %s. Nothing was read' % (pair['pair'], exc))
    passwords = module.params['passwords'] or {}
    pairs = [dict(pair, params=dict(pair['params'], login_password=passwords.get(pair['pair'])))
             for pair in pairs]
    started = time.monotonic()
    found = read_estate(pairs, module.params['broken_log_limit'])
    failed = [item for item in found if item['error']]
    if failed:
        module.fail_json(msg='reading %s failed: %s' % (', '.join(item['pair'] for item in failed),
                                                        '; '.join(item['error'] for item in failed)))
    statuses = [dict(pair=item['pair'], status=item['status']) for item in found]
    module.exit_json(changed=False, pairs=statuses,
                     healthy=all(item['status']['healthy'] for item in statuses),
                     unhealthy_pairs=[item['pair'] for item in statuses if not item['status']['healthy']],
                     elapsed=round(time.monotonic() - started, 3))


if __name__ == '__main__':
    main()
