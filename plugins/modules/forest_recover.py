#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: forest_recover
short_description: Bring the broken node of a PostgresForest pair back (offline)
description:
  - Offline recovery (seed 8.1) of the node marked broken (C(-1)) from the valid one, with the
    applications stopped (checked on both nodes, no other session on the user or management
    database), then C(udb_validity=1) for it in both management databases.
  - O(method=diff) repairs only what differs, with the forest_dbsync engine (content hashes,
    one verified transaction per table, sequences), and refuses to mark the node valid unless
    the pair then compares equal. O(method=dump) is the seed's way, drop and C(pg_dump | psql)
    of the user and management databases.
  - Preconditions come from the merged status, exactly one node effectively C(-1), the other C(1),
    identical C(server_info). Anything else is refused with the state and the right tool, and
    changes nothing. Two recoveries of the same pair cannot run at once (advisory lock).
  - Online recovery (applications keep running) is not part of this version.
version_added: 0.1.0
author: pgforest.cluster developers (@pgforest)
extends_documentation_fragment:
  - pgforest.cluster.connection
  - pgforest.cluster.pair
options:
  mode:
    description: C(offline) is the only mode of this version.
    type: str
    choices: [offline]
    default: offline
  method:
    description: C(diff) copies only what differs; C(dump) re-copies both databases whole.
    type: str
    choices: [diff, dump]
    default: diff
  target:
    description: Serverid you expect to recover; refused when it is not the broken node.
    type: int
    choices: [0, 1]
  copy_with:
    description: How forest_dbsync copies whole tables with O(method=diff) (see M(pgforest.cluster.forest_dbsync)).
    type: str
    choices: [auto, psql, python]
    default: auto
  sample_size:
    description: How many differing keys the diff report lists per table and kind.
    type: int
    default: 20
  reload_fraction:
    description: Reload a table whole when more than this fraction of its rows differ (O(method=diff)).
    type: float
    default: 0.5
attributes:
  check_mode:
    support: full
    description: Checks the preconditions and, with O(method=diff), reports what would be repaired.
  diff_mode:
    support: none
    description: The repair report is in RV(dbsync).
requirements:
  - psycopg >= 3.1
  - pg_dump and psql on PATH for O(method=dump)
'''

EXAMPLES = r'''
- name: Recover the broken node, applications stopped
  pgforest.cluster.forest_recover:
    userdb: userdb
    mode: offline
  run_once: true

- name: The seed's way
  pgforest.cluster.forest_recover:
    userdb: userdb
    method: dump
    target: 1
  run_once: true
'''

RETURN = r'''
source:
  description: Serverid copied from.
  returned: success
  type: int
target:
  description: Serverid recovered.
  returned: success
  type: int
phases:
  description: Seconds per phase (copy, validity).
  returned: success
  type: dict
bytes_copied:
  description: Bytes moved from the source to the target.
  returned: success
  type: int
dbsync:
  description: With O(method=diff), the forest_dbsync result of the repair (tables, sequences, report).
  returned: success
  type: dict
progress:
  description: What was done, with seconds since the start.
  returned: always
  type: list
  elements: str
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.pgforest.cluster.plugins.module_utils.cluster_status import pair_argument_spec
from ansible_collections.pgforest.cluster.plugins.module_utils.dbsync import DbsyncError
from ansible_collections.pgforest.cluster.plugins.module_utils.forest_pg import PSYCOPG_IMPORT_ERROR, ForestPgError
from ansible_collections.pgforest.cluster.plugins.module_utils.mngdb import MngdbError
from ansible_collections.pgforest.cluster.plugins.module_utils.recovery import OfflineRecovery, RecoveryError


def main():
    argument_spec = pair_argument_spec()
    argument_spec.update(
        mode=dict(type='str', choices=['offline'], default='offline'),
        method=dict(type='str', choices=['diff', 'dump'], default='diff'),
        target=dict(type='int', choices=[0, 1]),
        copy_with=dict(type='str', choices=['auto', 'psql', 'python'], default='auto'),
        sample_size=dict(type='int', default=20),
        reload_fraction=dict(type='float', default=0.5),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if PSYCOPG_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib('psycopg (version 3)'), exception=PSYCOPG_IMPORT_ERROR)
    params = dict(module.params, notice_wait=None, idle_wait_timeout=20)
    recovery = OfflineRecovery(params, module.check_mode, module.log)
    try:
        result = recovery.run()
        module.exit_json(changed=True, **result)
    except (RecoveryError, DbsyncError, MngdbError, ForestPgError) as exc:
        module.fail_json(msg=str(exc), progress=recovery.progress)
    finally:
        recovery.close()


if __name__ == '__main__':
    main()
