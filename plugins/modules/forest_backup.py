#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: forest_backup
short_description: Back up a PostgresForest pair, logically from a valid node or physically per node
description:
  - O(kind=logical) (PostgresForest guide §6.2) dumps the user database and its management database from a valid node
    (C(udb_validity=1), found through the merged status) with C(pg_dump --format=directory --jobs),
    which C(pg_restore --jobs) loads in parallel. Both dumps and the row counts of every table come
    from one exported snapshot. A broken or recovering node is never picked; naming one (O(source))
    is refused unless O(allow_invalid_source=true). Run it once for the pair; the backup is written
    on the host the task runs on.
  - O(kind=physical) (PostgresForest guide §6.1) runs on each node's host. It refuses while sessions other than its
    own are connected to the user or management database (stop the applications first), counts the
    rows of every table, stops the node's server, copies its data directory and starts it again.
    Give both hosts the same O(name) so their parts land in one backup.
  - Each backup is a directory C(<backup_dir>/forest-<kind>-<UTC time>) with a C(manifest.json)
    (time, node, server version, databases, sizes, SHA-256 of every file, row count of every table),
    written under a C(.partial) name and renamed when complete. The newest O(keep) backups of the
    kind are kept, older ones removed.
version_added: 0.1.0
author: pgforest.cluster developers (@pgforest)
extends_documentation_fragment:
  - pgforest.cluster.connection
  - pgforest.cluster.pair
  - pgforest.cluster.local_server
options:
  kind:
    description: C(logical) (pg_dump of both databases) or C(physical) (copy of the data directory).
    type: str
    choices: [logical, physical]
    default: logical
  backup_dir:
    description: Directory that holds the backups (created with mode 0700).
    type: path
    required: true
  name:
    description: Name of the backup directory; default C(forest-<kind>-<UTC time>).
    type: str
  keep:
    description: How many backups of this kind to keep in O(backup_dir) (C(0) keeps all).
    type: int
    default: 7
  source:
    description: With O(kind=logical), the serverid to dump; default the first valid node.
    type: int
    choices: [0, 1]
  allow_invalid_source:
    description: Back up a node that is not valid (C(-1) or C(0)), e.g. both are broken and you keep what is left.
    type: bool
    default: false
  jobs:
    description: Parallel jobs of C(pg_dump).
    type: int
    default: 2
attributes:
  check_mode:
    support: full
    description: Picks the node and checks the preconditions, writes nothing.
  diff_mode:
    support: none
    description: A backup adds a directory; RV(backup) names it.
requirements:
  - psycopg >= 3.1
  - pg_dump of the server's major version or newer (O(pg_bindir)); root or O(os_user) for O(kind=physical)
'''

EXAMPLES = r'''
- name: Dump both databases from a valid node, keep the last 7
  pgforest.cluster.forest_backup:
    userdb: userdb
    backup_dir: /var/backups/pgforest
  run_once: true

- name: Both nodes are broken; keep a copy of serverid 0 before restoring
  pgforest.cluster.forest_backup:
    userdb: userdb
    backup_dir: /var/backups/pgforest
    source: 0
    allow_invalid_source: true
  run_once: true

- name: Physical backup, applications stopped, on each node's host
  pgforest.cluster.forest_backup:
    userdb: userdb
    kind: physical
    name: "forest-physical-{{ now(utc=true, fmt='%Y%m%dT%H%M%SZ') }}"
    backup_dir: /var/backups/pgforest
    data_dir: /var/lib/pgforest/node{{ forest_serverid }}/data
  become: true
'''

RETURN = r'''
backup:
  description: Directory of the backup (of this node's part with O(kind=physical)).
  returned: always
  type: str
name:
  description: Name of the backup.
  returned: always
  type: str
kind:
  description: C(logical) or C(physical).
  returned: always
  type: str
source:
  description: Serverid backed up.
  returned: always
  type: int
total_bytes:
  description: Bytes written (none in check mode).
  returned: always
  type: int
row_counts:
  description: Per database key (C(userdb), C(mngdb)), rows per table as in the manifest.
  returned: always
  type: dict
removed:
  description: Older backups removed by the retention.
  returned: always
  type: list
  elements: str
seconds:
  description: Seconds the module ran.
  returned: success
  type: float
phases:
  description: Seconds per phase (dump, copy, checksums).
  returned: always
  type: dict
progress:
  description: What was done, with seconds since the start.
  returned: always
  type: list
  elements: str
'''

from ..module_utils.backup import NAME_PATTERN
from ..module_utils.backup_jobs import BackupOptions
from ..module_utils.backup_logical import LogicalBackup
from ..module_utils.backup_physical import PhysicalBackup
from ..module_utils.argument_specs import node_host_argument_spec
from ..module_utils.module_runner import forest_module, run_job


def main():
    argument_spec = node_host_argument_spec()
    argument_spec.update(
        kind=dict(type='str', choices=['logical', 'physical'], default='logical'),
        backup_dir=dict(type='path', required=True),
        name=dict(type='str'),
        keep=dict(type='int', default=7),
        source=dict(type='int', choices=[0, 1]),
        allow_invalid_source=dict(type='bool', default=False),
        jobs=dict(type='int', default=2),
    )
    module = forest_module(argument_spec, required_if=[('kind', 'physical', ['data_dir'])])
    options = BackupOptions.from_params(module.params)
    check_options(module, module.params['kind'], options)
    run_job(module, lambda slot: back_up(module, options, slot))


def back_up(module, options, slot):
    job_class = PhysicalBackup if module.params['kind'] == 'physical' else LogicalBackup
    job = slot.job = job_class(module.params, options, module.check_mode, module.log)
    return job.run()


def check_options(module, kind, options):
    if kind == 'physical' and options.source is not None:
        module.fail_json(msg='source is for kind=logical: a physical backup copies the node of the host it runs on')
    if options.keep < 0 or options.jobs < 1:
        module.fail_json(msg='keep must be 0 (keep all) or more, and jobs 1 or more')
    match = NAME_PATTERN.match(options.name or '')
    if options.name is not None and not (match and match.group(1) == kind):
        module.fail_json(msg='name must look like forest-%s-YYYYmmddTHHMMSSZ (retention recognises backups by it)'
                         % kind)


if __name__ == '__main__':
    main()
