#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: forest_mngdb
short_description: Create and keep the PostgresForest management database
description:
  - The C(createmngdb.sh) equivalent and the management database's keeper.
  - With O(servers), creates the user database (optional) and C(<userdb>_pghainfo) on the node
    it talks to, with the tables C(server_info), C(global_config), C(local_config),
    C(broken_log_detail), the view C(broken_log) and the default rows of the PostgresForest guide, and registers
    serverid 0 and 1 in the order given. An existing, correct management database is left alone;
    one whose C(server_info) differs is refused unless O(overwrite=true).
  - With O(global_config), changes keys on B(both) nodes to the same value (both must answer).
  - With O(local_config), the same, but only while no driver session is connected to the user or
    management database on either node, unless O(force=true).
  - With O(serverid) and O(validity), sets that server's C(udb_validity) in every reachable
    management database and notifies listening drivers.
  - Before changing anything it reads both nodes' C(server_info); if they differ the pair is
    misconfigured and nothing is done. Every value is validated before any connection writes.
  - Every management database holds the pair's record of both nodes' identity (table C(node_identity), the
    server's C(system_identifier) and the management database's own id from C(mngdb_origin)), the same rows in
    both views. A node new to the pair is never valid, see O(servers) and O(record_identity).
version_added: 0.1.0
author: pgforest.cluster developers (@pgforest)
extends_documentation_fragment:
  - pgforest.cluster.connection
  - pgforest.cluster.pair
options:
  servers:
    description:
      - The pair as C(host:port), serverid 0 first. Must be in the same order on both nodes.
      - Creates (or checks) this node's management database.
      - When this node's user or management database is missing while the other node's management database
        serves the pair (it recorded the nodes' identities, or it is from before identities), this node is new
        to the pair (a rebuilt host, a lost data directory), so it is first set to C(-1) in the other node's
        management database, then its databases are created with itself C(-1), and a warning says that
        C(playbooks/recover.yml) brings it back. If the other node does not answer, nothing is created.
      - A node new to the pair gets the other node's C(global_config) and C(local_config) (every configid), the
        DBA's C(mngdb_read_duration) where an operation has lowered it for its length; a new pair gets the
        guide's defaults.
      - Adds the identity tables to a management database from before them.
    type: list
    elements: str
  create_userdb:
    description: Create the user database too when it is missing (with O(servers)).
    type: bool
    default: true
  overwrite:
    description: Rewrite a C(server_info) that differs from O(servers) (drivers must be stopped unless O(force=true)).
    type: bool
    default: false
  global_config:
    description: C(global_config) keys to set on both nodes, validated against the guide's ranges.
    type: dict
  local_config:
    description: C(local_config) keys to set on both nodes for O(configid); drivers must be stopped unless O(force=true).
    type: dict
  configid:
    description: C(local_config) configuration id.
    type: str
    default: DEFAULT
  serverid:
    description: Server whose validity to set (with O(validity)).
    type: int
    choices: [0, 1]
  validity:
    description: C(1) valid, C(0) write-suppressed, C(-1) broken.
    type: int
    choices: [-1, 0, 1]
  force:
    description: Change C(local_config) or C(server_info) even while driver sessions are connected.
    type: bool
    default: false
  record_identity:
    description:
      - Compare each node with the pair's record of its identity, in both management databases.
      - A node not recorded yet is recorded as it is now while it is valid (C(1)) in both views (a new pair,
        or one provisioned before identities were recorded); a recorded row missing from a view is copied there.
      - A node whose C(system_identifier) or management database id differs from the record is not the node
        the pair knew (a new initdb, a restored copy), so it is set to C(-1) in every view and named in a warning.
      - O(validity=1) records the node as it is now too (the DBA says it holds the pair's data); so do
        M(pgforest.cluster.forest_recover) and M(pgforest.cluster.forest_restore).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reports what would change, changes nothing.
  diff_mode:
    support: full
    description: Shows the management database rows before and after, per node.
requirements:
  - psycopg >= 3.1
notes:
  - The PostgresForest guide (§9.2, §10.1) allows changing C(server_info) and C(local_config) only while no driver runs; this
    module checks C(pg_stat_activity) on both nodes for sessions other than its own.
'''

EXAMPLES = r'''
- name: Create the management database on each node (same order on both)
  pgforest.cluster.forest_mngdb:
    userdb: userdb
    servers: [10.0.0.11:5432, 10.0.0.12:5432]

- name: Change the driver's read interval on both nodes
  pgforest.cluster.forest_mngdb:
    userdb: userdb
    global_config:
      mngdb_read_duration: 10
  run_once: true

- name: Record both nodes' identities (provision does it once both nodes have their databases)
  pgforest.cluster.forest_mngdb:
    userdb: userdb
    record_identity: true
  run_once: true

- name: Mark serverid 1 valid again after an offline repair
  pgforest.cluster.forest_mngdb:
    userdb: userdb
    serverid: 1
    validity: 1
  run_once: true
'''

RETURN = r'''
changes:
  description: What was changed (or would be, in check mode), one line each.
  returned: always
  type: list
  elements: str
  sample: ["127.0.0.11:5432: global_config mngdb_read_duration 30 -> 10"]
unreached:
  description: With O(validity), the nodes that did not answer (node, SQLSTATE, detail, hint); the change was
    made on the others. O(global_config) and O(local_config) need both nodes and are refused instead.
  returned: always
  type: list
  elements: dict
driver_sessions:
  description: Sessions other than this module's on the user and management databases, per node (checked with
    O(local_config) and O(overwrite); empty otherwise).
  returned: always
  type: dict
new_nodes:
  description: Nodes found new to the pair (O(servers), O(record_identity)) and marked C(-1), each with its
    C(serverid), C(reason), C(mngdb) and the C(message) also given as a warning.
  returned: always
  type: list
  elements: dict
  sample: [{"serverid": 1, "mngdb": "appdb_pghainfo",
            "reason": "its forest databases are missing while serverid 0 has them (a new server: ...)",
            "message": "serverid 1 is new to the pair: ... playbooks/recover.yml brings it back ..."}]
'''

from ..module_utils.argument_specs import pair_argument_spec
from ..module_utils.mngdb import DEFAULT_CONFIGID
from ..module_utils.mngdb_job import Keeper
from ..module_utils.mngdb_plan import MngdbOptions
from ..module_utils.module_runner import forest_module, run_job


def main():
    argument_spec = pair_argument_spec()
    argument_spec.update(
        servers=dict(type='list', elements='str'),
        create_userdb=dict(type='bool', default=True),
        overwrite=dict(type='bool', default=False),
        global_config=dict(type='dict'),
        local_config=dict(type='dict'),
        configid=dict(type='str', default=DEFAULT_CONFIGID),
        serverid=dict(type='int', choices=[0, 1]),
        validity=dict(type='int', choices=[-1, 0, 1]),
        force=dict(type='bool', default=False),
        record_identity=dict(type='bool', default=False),
    )
    module = forest_module(argument_spec, required_together=[('serverid', 'validity')],
                           required_one_of=[('servers', 'global_config', 'local_config', 'validity',
                                             'record_identity')])
    run_job(module, lambda slot: manage(module, slot))


def manage(module, slot):
    keeper = slot.job = Keeper(module.params, MngdbOptions.from_params(module.params), module.check_mode, module.log)
    result = keeper.run(diff=module._diff)
    for found in result['new_nodes']:
        module.warn(found['message'])
    return result


if __name__ == '__main__':
    main()
