#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: forest_restore
short_description: Restore a PostgresForest pair from a forest_backup backup
description:
  - The way back when both nodes are broken (state C(down), guide §5.2 and 7), or to return to a point
    in time. Before anything is changed it checks the SHA-256 of every file of the backup against
    its manifest, that no session other than its own is connected to the user or management
    database, and that O(confirm=true) was given; any of these failing changes nothing.
  - A logical backup is restored once for the pair (PostgresForest guide §7.2) onto both nodes of the backup's
    C(server_info) (which must be this pair's). Both databases are loaded into fresh databases on
    both nodes at once (four C(pg_restore --jobs)), their row counts are checked against the
    manifest, and only then are they renamed into place, the old ones dropped, and both nodes set
    C(udb_validity=1). Until the rename, a failure leaves the pair as it was.
  - A physical backup is restored on each node's host (PostgresForest guide §7.1), each with its own part of the
    backup (O(serverid)). The copy is staged beside the data directory; the server is stopped, the
    directories swapped and the server started (the old directory comes back if it does not start);
    the row counts are checked against the manifest. Set C(udb_validity=1) on both afterwards
    (C(playbooks/restore.yml) does, with M(pgforest.cluster.forest_mngdb)).
version_added: 0.1.0
author: pgforest.cluster developers (@pgforest)
extends_documentation_fragment:
  - pgforest.cluster.connection
  - pgforest.cluster.pair
  - pgforest.cluster.local_server
options:
  backup:
    description: The backup's directory, its name in O(backup_dir), or C(latest) (the newest in O(backup_dir)).
    type: str
    default: latest
  backup_dir:
    description: Directory that holds the backups.
    type: path
  confirm:
    description: Must be C(true) for anything to be dropped or replaced (not needed in check mode).
    type: bool
    default: false
  serverid:
    description: For a physical backup, this host's serverid (its part of the backup).
    type: int
    choices: [0, 1]
  keep_replaced:
    description: Physical restore, keep the replaced data directory as C(<data_dir>.pgforest-replaced).
    type: bool
    default: false
  jobs:
    description: Parallel jobs of each C(pg_restore).
    type: int
    default: 2
attributes:
  check_mode:
    support: full
    description: Checks the backup's files and the nodes, reports the backup's kind and contents, changes nothing.
  diff_mode:
    support: none
    description: Everything is replaced; RV(row_counts) says what the databases hold now.
requirements:
  - psycopg >= 3.1
  - pg_restore of the backup's major version or newer; root or O(os_user) for a physical backup
'''

EXAMPLES = r'''
- name: Restore the newest backup onto both nodes (applications stopped)
  pgforest.cluster.forest_restore:
    userdb: userdb
    backup_dir: /var/backups/pgforest
    confirm: true
  run_once: true

- name: What would be restored (kind, time, tables), files checked
  pgforest.cluster.forest_restore:
    userdb: userdb
    backup: /var/backups/pgforest/forest-logical-20261121T101500Z
  check_mode: true
  run_once: true
'''

RETURN = r'''
backup:
  description: Directory of the backup.
  returned: always
  type: str
name:
  description: Name of the backup.
  returned: always
  type: str
kind:
  description: C(logical) or C(physical), from the manifest.
  returned: always
  type: str
created:
  description: When the backup was taken (UTC).
  returned: always
  type: str
restored:
  description: Serverids restored (or that would be).
  returned: always
  type: list
  elements: int
row_counts:
  description: Per database key (C(userdb), C(mngdb)), rows per table, checked on every restored node.
  returned: always
  type: dict
seconds:
  description: Seconds the module ran.
  returned: success
  type: float
phases:
  description: Seconds per phase (checksums, load or copy, verify, swap, validity).
  returned: always
  type: dict
progress:
  description: What was done, with seconds since the start.
  returned: always
  type: list
  elements: str
'''

from ..module_utils.backup import BackupError, backup_kind
from ..module_utils.backup_jobs import BackupOptions
from ..module_utils.backup_logical import LogicalRestore
from ..module_utils.backup_physical import PhysicalRestore
from ..module_utils.argument_specs import node_host_argument_spec
from ..module_utils.module_runner import forest_module, run_job


def main():
    argument_spec = node_host_argument_spec()
    argument_spec.update(
        backup=dict(type='str', default='latest'),
        backup_dir=dict(type='path'),
        confirm=dict(type='bool', default=False),
        serverid=dict(type='int', choices=[0, 1]),
        keep_replaced=dict(type='bool', default=False),
        jobs=dict(type='int', default=2),
    )
    module = forest_module(argument_spec)
    run_job(module, lambda slot: restore(module, slot))


def restore(module, slot):
    options = BackupOptions.from_params(module.params)
    kind = backup_kind(options.backup, options.backup_dir)
    if kind == 'physical' and not module.params['data_dir']:
        raise BackupError('%s is a physical backup: give data_dir (this node\'s data directory) and serverid'
                          % options.backup)
    job_class = PhysicalRestore if kind == 'physical' else LogicalRestore
    job = slot.job = job_class(module.params, options, module.check_mode, module.log)
    return job.run()


if __name__ == '__main__':
    main()
