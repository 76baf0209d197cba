#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: forest_status
short_description: Merged status of a PostgresForest pair
description:
  - Reads C(server_info) from the management database C(<userdb>_pghainfo) of both nodes
    concurrently, merges the two views with the seed's rule (for each serverid C(-1) wins,
    then C(0), else C(1)) and returns the state of the pair, each node's effective validity,
    reachability, server version and recovery state, where the views disagree, the most recent
    C(broken_log) rows, and the recommended action.
  - Never hangs. A node that is stopped, or hung (accepts TCP connections but does not answer),
    is reported unreachable after O(connect_timeout) plus less than a second.
  - The peer is found in this node's C(server_info), or given with O(peer_host). In a play, the
    connection options default to the host's inventory variables C(forest_pg_host),
    C(forest_pg_port), C(forest_pg_user), C(forest_pg_password), C(forest_peer_host) and
    C(forest_userdb), so C(ansible forest -m pgforest.cluster.forest_status -a userdb=userdb) works ad hoc.
version_added: 0.1.0
author: pgforest.cluster developers (@pgforest)
extends_documentation_fragment:
  - pgforest.cluster.connection
options:
  userdb:
    description: User database of the pair; its management database is C(<userdb>_pghainfo).
    type: str
    required: true
  peer_host:
    description:
      - Address of the other node. Read at the same time as this node, so its status is known
        even when this node does not answer.
      - Defaults to the other entry of this node's C(server_info).
    type: str
  peer_port:
    description: Port of the other node (default O(login_port)).
    type: int
  broken_log_limit:
    description: How many of the most recent C(broken_log) rows to return.
    type: int
    default: 10
  fail_unless_healthy:
    description: Fail (after returning everything) when RV(cluster_state) is not C(healthy), for monitoring and CI.
    type: bool
    default: false
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
- name: Read the pair's status
  pgforest.cluster.forest_status:
    userdb: userdb
  register: status

- name: Recover when degraded
  ansible.builtin.debug:
    msg: "{{ status.recommended_action.reason }}"
  when: status.cluster_state == 'degraded'

- name: Alert unless healthy (monitoring)
  pgforest.cluster.forest_status:
    userdb: userdb
    login_host: 10.0.0.11
    peer_host: 10.0.0.12
    login_password: "{{ vault_forest_pg_password }}"
    connect_timeout: 2
    fail_unless_healthy: true
'''

RETURN = r'''
cluster_state:
  description: C(healthy), C(degraded) (one node -1 or unreachable), C(recovering) (a node is 0),
    C(down) (no usable node) or C(misconfigured) (server_info differs, or a management database is missing or broken).
  returned: always
  type: str
  sample: degraded
healthy:
  description: Whether RV(cluster_state) is C(healthy).
  returned: always
  type: bool
nodes:
  description: One entry per serverid of C(server_info).
  returned: always
  type: list
  elements: dict
  sample:
    - serverid: 1
      url: 127.0.0.12:5432/userdb
      host: 127.0.0.12
      port: 5432
      userdb: userdb
      reachable: true
      validity: -1
      validity_name: broken
      views: {"0": 1, "1": -1}
      server_version: 150018
      in_recovery: false
      mngdb: present
      error: null
views_agree:
  description: Whether both views hold the same server_info, values included.
  returned: always
  type: bool
disagreements:
  description: Serverids whose validity differs between the views, with each view's value.
  returned: always
  type: list
  elements: dict
  sample: [{"serverid": 1, "views": {"0": 1, "1": -1}}]
problems:
  description: Configuration problems that make the pair C(misconfigured).
  returned: always
  type: list
  elements: str
recommended_action:
  description: What to do now. Its C(action) is one of C(none), C(online_recovery),
    C(offline_recovery), C(wait_or_cancel_recovery), C(start_servers), C(restore_from_backup),
    C(fix_configuration), C(investigate); C(target) and C(source) name serverids for recoveries.
  returned: always
  type: dict
  sample: {"action": "online_recovery", "target": 1, "source": 0, "online_possible": true,
           "reason": "serverid 1 is marked broken (-1); serverid 0 is valid ..."}
broken_log:
  description: Most recent C(broken_log) rows of both views, newest first, without duplicates.
  returned: always
  type: list
  elements: dict
unreached:
  description: Why each unreachable node could not be read (node, SQLSTATE, detail, hint).
  returned: always
  type: list
  elements: dict
summary:
  description: The status as readable lines, one per node.
  returned: always
  type: list
  elements: str
elapsed:
  description: Seconds the module spent reading the nodes.
  returned: always
  type: float
'''

import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.pgforest.cluster.plugins.module_utils.cluster_status import (
    merge, read_views, summary_lines)
from ansible_collections.pgforest.cluster.plugins.module_utils.forest_pg import (
    PSYCOPG_IMPORT_ERROR, Node, connection_argument_spec)
from ansible_collections.pgforest.cluster.plugins.module_utils.mngdb import (
    MngdbError, mngdb_name, parse_udb_url)

# A read gets connect_timeout plus this long before its node is called unreachable.
READ_MARGIN = 0.75


def peers_from(view, known):
    """Nodes listed in a view's server_info that are not yet read."""
    found = {}
    for row in view['server_info'] or []:
        host, port, _db = parse_udb_url(row['udb_url'])
        if (host, port) not in known and '%s:%s' % (host, port) != view['server_addr']:
            found[(host, port)] = host
    return found


def main():
    argument_spec = connection_argument_spec()
    argument_spec.update(
        userdb=dict(type='str', required=True),
        peer_host=dict(type='str'),
        peer_port=dict(type='int'),
        broken_log_limit=dict(type='int', default=10),
        fail_unless_healthy=dict(type='bool', default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if PSYCOPG_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib('psycopg (version 3)'), exception=PSYCOPG_IMPORT_ERROR)
    params = module.params
    try:
        mngdb = mngdb_name(params['userdb'])
    except MngdbError as exc:
        module.fail_json(msg=str(exc))

    started = time.monotonic()
    deadline = params['connect_timeout'] + READ_MARGIN
    nodes = {(params['login_host'], params['login_port']): Node.from_params(params)}
    if params['peer_host']:
        peer = (params['peer_host'], params['peer_port'] or params['login_port'])
        nodes[peer] = Node(peer[0], peer[1], params['login_user'], params['login_password'],
                           params['connect_timeout'], params['statement_timeout'])
    views = read_views(nodes, mngdb, params['broken_log_limit'], deadline)
    for view in list(views.values()):
        more = dict((key, Node(key[0], key[1], params['login_user'], params['login_password'],
                               params['connect_timeout'], params['statement_timeout']))
                    for key in peers_from(view, views))
        if more:
            views.update(read_views(more, mngdb, params['broken_log_limit'], deadline))

    status = merge(list(views.values()))
    status['summary'] = summary_lines(status)
    status['elapsed'] = round(time.monotonic() - started, 3)
    for line in status['summary']:
        module.debug(line)
    if params['fail_unless_healthy'] and not status['healthy']:
        module.fail_json(msg='pair is %s: %s' % (status['cluster_state'], status['recommended_action']['reason']),
                         **status)
    module.exit_json(changed=False, **status)


if __name__ == '__main__':
    main()
