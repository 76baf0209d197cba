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
    concurrently, merges the two views with the guide's rule (for each serverid C(-1) wins,
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
  - pgforest.cluster.pair
options:
  userdb:
    description:
      - One user database of the pair; its management database is C(<userdb>_pghainfo).
      - In a play it defaults to the host's C(forest_userdb) inventory variable, unless O(userdbs) is given
        or the host has C(forest_userdbs).
      - Give O(userdb) or O(userdbs).
    type: str
    required: false
  userdbs:
    description:
      - Several user databases of the same pair (each with its management database), read at once.
        The pair's RV(cluster_state) is its worst database's; RV(databases) has each one's status.
      - In a play it defaults to the host's C(forest_userdbs) inventory variable.
    type: list
    elements: str
  broken_log_limit:
    description: How many of the most recent C(broken_log) rows to return.
    type: int
    default: 10
  compare:
    description:
      - C(counts) also counts the rows of every user table on both nodes (one C(count(*)) per table and
        node, up to three rounds). A pair whose views say C(healthy) but whose counts differ the same way
        in every round is C(diverged) (split brain, guide §11.1.2 and 11.2); RV(user_databases) names the tables.
      - C(none) reads only the management databases.
      - A table scan per table, cheap on small databases, a real cost on big ones.
        M(pgforest.cluster.forest_dbsync) with O(pgforest.cluster.forest_dbsync#module:mode=compare) names the rows.
    type: str
    choices: [none, counts]
    default: none
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

- name: Every user database of the pair at once; the worst one decides
  pgforest.cluster.forest_status:
    userdbs: [orders, billing]
  register: status

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
  description:
    - With several user databases, the state of the worst one (RV(userdb) names it; RV(databases) has each).
    - C(healthy), C(degraded) (one node -1 or unreachable), C(recovering) (a node is 0),
      C(down) (no usable node), C(misconfigured) (server_info differs, or a management database is missing or broken),
      C(split_brain) (each node marks itself valid and the other broken) or, with O(compare=counts),
      C(diverged) (both valid, user databases differ).
  returned: always
  type: str
  sample: degraded
healthy:
  description: Whether every user database's state is C(healthy).
  returned: always
  type: bool
userdb:
  description: The user database the other top-level values describe (with several, the worst one, the first of equals).
  returned: always
  type: str
  sample: billing
unhealthy_userdbs:
  description: The user databases whose state is not C(healthy), in the order asked.
  returned: always
  type: list
  elements: str
  sample: [billing]
databases:
  description: Each user database's own status, in the order asked, with the same keys as the top level
    (C(cluster_state), C(healthy), C(nodes), C(recommended_action), ...) and its C(userdb).
  returned: always
  type: list
  elements: dict
  sample: [{"userdb": "orders", "cluster_state": "healthy", "healthy": true},
           {"userdb": "billing", "cluster_state": "degraded", "healthy": false}]
nodes:
  description:
    - One entry per serverid of C(server_info).
    - C(ssl) says whether this module's session to the node was encrypted (the server's C(pg_stat_ssl)),
      C(tls_version) with what, C(tls_client_dn) the client certificate the server verified (O(ssl_cert)), all
      C(null) for a node not read.
    - C(replication_slots) lists an online recovery's slot on its source, C(pgforest_recovery_<target>), with
      C(name), C(active) (the copy or the standby streams through it) and C(lag_bytes), the WAL written since the
      target last confirmed (what it still has to catch up); empty when no recovery runs.
    - C(read_duration) is the node's C(mngdb_read_duration) (C(seconds)) and, while an online recovery or online
      compare has it lowered, C(lowered) - the DBA's value C(dba), C(short), C(by), C(at) and C(for_seconds) -
      also left behind by a killed run (the summary says so; the next such run puts it back).
    - C(replaced) is C(true) when the node is not the one the pair recorded (its C(system_identifier) or its
      management database's id differs from the record both management databases keep), such as a rebuilt host, a lost
      data directory, a restored copy. Its database is then never C(healthy); the action is its recovery.
      C(identity) has C(system_identifier), C(mngdb_id), C(recorded) (the views' rows for it), C(verdict)
      (C(matches), C(replaced), C(unrecorded) or C(unknown)) and C(reason).
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
      ssl: true
      tls_version: TLSv1.3
      tls_client_dn: null
      replication_slots: []
      read_duration: {"seconds": 30, "lowered": null}
      mngdb: present
      error: null
      replaced: true
      identity: {"system_identifier": "7716034651242188732", "mngdb_id": "2ad369dd-62a0-4a47-8470-a470e50c1aee",
                 "recorded": [{"serverid": 1, "system_identifier": "7716034651565068222",
                               "mngdb_id": "3f4634e4-4cac-432d-8a27-a84f784546a1",
                               "recorded_at": "2026-12-06 04:00:53+00"}],
                 "verdict": "replaced", "reason": "its server is not the one the pair recorded ..."}
user_databases:
  description:
    - With O(compare=counts), the comparison of the user databases. C(equal) is C(null) when a node does not answer.
    - C(differences) maps each table whose counts differ in every round to the counts per serverid.
    - C(unlogged_tables) names the unlogged tables of either node (a crash of a server empties them).
  returned: when O(compare=counts)
  type: dict
  sample: {"compared": "counts", "equal": false, "rounds": 3, "tables_compared": 4,
           "differences": {"public.orders": {"0": 1200, "1": 1187}}, "unlogged_tables": []}
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
    C(offline_recovery), C(mark_broken), C(wait_or_cancel_recovery), C(start_servers), C(restore_from_backup),
    C(resolve_split_brain), C(compare_and_repair),
    C(fix_configuration), C(investigate); C(target) and C(source) name serverids for recoveries;
    with C(mark_broken) (a node that does not answer but is not marked -1), C(command) is the
    forest_mngdb call a recovery needs first.
  returned: always
  type: dict
  sample: {"action": "online_recovery", "target": 1, "source": 0, "online_possible": true,
           "reason": "serverid 1 is marked broken (-1); serverid 0 is valid ..."}
broken_log:
  description: Most recent C(broken_log) rows of both views, newest first, without duplicates; C(time) as the
    server writes it, C(epoch) the same as Unix time.
  returned: always
  type: list
  elements: dict
unreached:
  description: Why each unreachable node could not be read (node, SQLSTATE, detail, hint).
  returned: always
  type: list
  elements: dict
summary:
  description: The status as readable lines, one per node; with several user databases, one for the pair,
    then each database's lines prefixed by its name.
  returned: always
  type: list
  elements: str
elapsed:
  description: Seconds the module spent reading the nodes.
  returned: always
  type: float
'''

import time

from ..module_utils.argument_specs import pair_argument_spec
from ..module_utils.cluster_status import pair_of_databases, read_databases
from ..module_utils.divergence import compare_row_counts, flag_divergence
from ..module_utils.forest_pg import ForestPgError
from ..module_utils.mngdb import MngdbError, mngdb_name
from ..module_utils.module_runner import forest_module, run_job
from ..module_utils.status_text import pair_summary_lines


def main():
    argument_spec = pair_argument_spec()
    argument_spec['userdb'].update(required=False)
    argument_spec.update(
        userdbs=dict(type='list', elements='str'),
        broken_log_limit=dict(type='int', default=10),
        compare=dict(type='str', default='none', choices=['none', 'counts']),
        fail_unless_healthy=dict(type='bool', default=False),
    )
    module = forest_module(argument_spec, required_one_of=[('userdb', 'userdbs')],
                           mutually_exclusive=[('userdb', 'userdbs')])
    if module.params['broken_log_limit'] < 0:
        module.fail_json(msg='broken_log_limit must be 0 or more (got %d)' % module.params['broken_log_limit'])
    run_job(module, lambda slot: pair_status(module, userdbs_of(module)))


def userdbs_of(module):
    """The user databases asked for, each checked (a management database name must follow it)."""
    names = module.params['userdbs'] if module.params['userdbs'] is not None else [module.params['userdb']]
    if not names:
        module.fail_json(msg='userdbs is empty: list at least one user database')
    repeated = sorted(set(name for name in names if names.count(name) > 1))
    if repeated:
        module.fail_json(msg='userdbs lists %s more than once' % ', '.join(repeated))
    for name in names:
        try:
            mngdb_name(name)
        except MngdbError as exc:
            module.fail_json(msg='%s. Nothing was read' % exc)
    return names


def pair_status(module, userdbs):
    params = module.params
    started = time.monotonic()
    statuses = read_databases(params, userdbs, params['broken_log_limit'])
    if params['compare'] == 'counts':
        for userdb, found in statuses.items():
            try:
                flag_divergence(found, compare_row_counts(dict(params, userdb=userdb), found))
            except ForestPgError as exc:
                module.fail_json(msg='could not compare the user database %s: %s' % (userdb, exc), **found)
    status = pair_of_databases(statuses)
    status['summary'] = pair_summary_lines(status)
    status['elapsed'] = round(time.monotonic() - started, 3)
    for line in status['summary']:
        module.debug(line)
    if params['fail_unless_healthy'] and not status['healthy']:
        named = ' (not healthy: %s)' % ', '.join(status['unhealthy_userdbs']) if len(userdbs) > 1 else ''
        module.fail_json(msg='pair is %s%s: %s' % (status['cluster_state'], named,
                                                   status['recommended_action']['reason']), **status)
    return dict(changed=False, **status)


if __name__ == '__main__':
    main()
