#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: forest_dbsync
short_description: Compare the two user databases of a PostgresForest pair by content, repair only what differs
description:
  - The jma-dbsync equivalent, done properly. Compares the user database of both nodes table by
    table (columns and types, row counts, B(content hashes)) and every sequence's state, localizes
    differences to primary keys, and with O(mode=sync) repairs the target from the source copying
    only what differs.
  - Both sides are read at the same logical moment, in read-only repeatable-read snapshots opened
    with the applications stopped (checked), or with O(online=true) inside a short write freeze
    (the quiesce protocol); the hashing runs on the snapshots after the freeze is released.
  - Row hashes do not depend on session settings (DateStyle, TimeZone, extra_float_digits,
    bytea_output, IntervalStyle, lc_monetary are pinned); NULL differs from every string; numerics
    of different scale, C(-0) and C(0), json whitespace count as different, as a dump would show them.
  - Tables are hashed in buckets of primary-key hashes; only differing buckets are read row by row.
    Tables without a primary key are compared whole and repaired whole.
  - A repair runs per table in one transaction on the target with triggers and foreign-key checks
    off (C(session_replication_role=replica)); the table is verified against the source's hashes
    before it commits. Sequences are set to the source's state. The source is only read.
  - Schema differences (a table on one side only, columns or types or primary key that differ) are
    reported and never guessed at; such tables are not synced.
version_added: 0.1.0
author: pgforest.cluster developers (@pgforest)
extends_documentation_fragment:
  - pgforest.cluster.connection
  - pgforest.cluster.pair
  - pgforest.cluster.freeze
options:
  mode:
    description: C(compare) changes nothing; C(sync) repairs the target from the source.
    type: str
    choices: [compare, sync]
    default: compare
  scope:
    description:
      - C(diff) compares and repairs only what differs.
      - C(all) copies every table without comparing (the old C(-allsync)); with O(mode=compare) it is the same as C(diff).
    type: str
    choices: [diff, all]
    default: diff
  source:
    description:
      - Serverid read from. Defaults to the valid node when exactly one is valid.
      - Needed for O(mode=sync) when both nodes are valid, or both broken.
      - A sync from a node that is not valid onto the valid one is refused (it would overwrite the good copy).
    type: int
    choices: [0, 1]
  target:
    description: Serverid compared with (and repaired). Defaults to the other node.
    type: int
    choices: [0, 1]
  online:
    description:
      - Compare while the applications keep running, from snapshots opened inside a short write
        freeze. Without it, the module refuses to run while other sessions use the user database.
      - Not allowed with O(mode=sync), which needs the applications stopped (use
        M(pgforest.cluster.forest_recover) to bring a node back online).
    type: bool
    default: false
  include:
    description:
      - Only tables and sequences whose C(schema.name) matches one of these shell patterns, written
        plain (C(Sales Ü.Order*)) or quoted as results show names (C("Sales Ü".*)).
      - C(pg_catalog.pg_largeobject) selects the large objects (compared unless include or exclude leave them out).
      - A pattern that matches nothing on either node is refused.
    type: list
    elements: str
  exclude:
    description: Skip tables and sequences whose C(schema.name) matches one of these shell patterns.
    type: list
    elements: str
  sample_size:
    description: How many differing keys to list per table and kind (missing, extra, changed).
    type: int
    default: 20
  reload_fraction:
    description: Reload a table whole with COPY when more than this fraction of its rows differ.
    type: float
    default: 0.5
  notice_wait:
    description:
      - Seconds to wait, inside the write freeze, for polling drivers to notice it (O(online=true)).
      - Defaults to C(mngdb_read_duration) as O(freeze_read_duration) has made it (given, nothing is lowered).
    type: float
  jobs:
    description:
      - Sessions per node that hash a big table (8 MB and more) at once, each a block range of it, in the
        compare's snapshot; two servers with many cores finish in a fraction of the time. Each job is one
        more connection to each node. From C(1) to C(64).
    type: int
    default: 1
  copy_with:
    description:
      - How whole tables are copied (O(scope=all), tables without a key, mostly different tables).
      - C(psql) pipes C(psql COPY TO STDOUT) into C(psql --single-transaction COPY FROM STDIN), the
        fastest; C(python) streams through this module; C(auto) uses psql when it is on PATH.
      - Rows copied by key always go through the module.
    type: str
    choices: [auto, psql, python]
    default: auto
attributes:
  check_mode:
    support: full
    description: With O(mode=sync), compares and reports what would be repaired.
  diff_mode:
    support: none
    description: The per-table report in RV(tables) is the diff.
requirements:
  - psycopg >= 3.1
notes:
  - Row hashes are 64-bit (C(hashtextextended)) summed per bucket with the row count; two
    different rows hashing alike go unnoticed with a probability of about 2^-64.
'''

EXAMPLES = r'''
- name: Compare the pair (applications stopped)
  pgforest.cluster.forest_dbsync:
    userdb: userdb
  register: cmp

- name: Compare while the applications run
  pgforest.cluster.forest_dbsync:
    userdb: userdb
    online: true

- name: Repair serverid 1 from serverid 0, only what differs
  pgforest.cluster.forest_dbsync:
    userdb: userdb
    mode: sync
    source: 0
    target: 1
  when: not cmp.equal

- name: Copy everything without comparing (the old -allsync)
  pgforest.cluster.forest_dbsync:
    userdb: userdb
    mode: sync
    scope: all
'''

RETURN = r'''
equal:
  description: Whether both user databases were found equal (after the repair, with O(mode=sync)).
  returned: always
  type: bool
source:
  description: Serverid read from.
  returned: always
  type: int
target:
  description: Serverid compared and repaired.
  returned: always
  type: int
unlogged_tables:
  description: The source's unlogged tables (a crash of either server empties them; a physical copy leaves them
    empty, which online recovery makes up for inside its freeze).
  returned: always
  type: list
  elements: str
tables:
  description: One entry per table, and one named C(pg_catalog.pg_largeobject) for the large objects (keyed by
    C(oid); C(changed) counts those whose content, owner or permissions differ; left out when O(include) or
    O(exclude) do not select that name). Table names are shown quoted where SQL needs it
    (C("Sales Ü"."Order Items")). C(status) is C(equal), C(different), C(schema_differs),
    C(only_on_source), C(only_on_target), C(repaired), C(would_repair) (check mode) or C(failed);
    counts of C(missing), C(extra) and C(changed) rows; C(keys) samples of each; C(rows_copied),
    C(bytes_copied), C(method) (C(keys) or C(reload)).
  returned: always
  type: list
  elements: dict
sequences:
  description: Sequences whose state differs (or was set), with both values.
  returned: always
  type: list
  elements: dict
report:
  description: One readable line per table and per differing sequence.
  returned: always
  type: list
  elements: str
summary:
  description: Counts of tables per status, rows and bytes copied.
  returned: always
  type: dict
phases:
  description: Seconds per phase (snapshot, catalog, hash, localize, repair).
  returned: always
  type: dict
freeze_window:
  description: Seconds the applications' writes were frozen (O(online=true)), else null.
  returned: always
  type: float
freeze:
  description:
    - With O(online=true), the freeze's figures, else null. C(window) as freeze_window; C(notice_seconds);
      C(waited_before_seconds) (waited with the writes flowing for long transactions to end); C(undone) (each
      freeze begun and undone, with its C(window) and C(reason)); C(snapshot_retries) (snapshots taken again
      because a transaction took an id while they were taken).
  returned: always
  type: dict
  sample: {"window": 1.32, "notice_seconds": 1.25, "waited_before_seconds": 0.0, "undone": [], "snapshot_retries": 1}
read_duration:
  description:
    - With O(online=true) and no O(notice_wait), what happened to C(mngdb_read_duration) (O(freeze_read_duration)),
      else null. C(short) the value used; C(lowered), C(adopted) (left short by a run that was killed),
      C(put_back) and C(kept) (changed by someone during the run) list management databases as
      C(serverid N name); C(waited) the seconds waited before the freeze for the drivers to take it.
  returned: always
  type: dict
  sample: {"short": 1, "lowered": ["serverid 0 userdb_pghainfo", "serverid 1 userdb_pghainfo"], "adopted": [],
           "put_back": ["serverid 0 userdb_pghainfo", "serverid 1 userdb_pghainfo"], "kept": [], "waited": 29.8}
progress:
  description: What the module did, with seconds since it started (also shown with -v).
  returned: always
  type: list
  elements: str
'''

from ..module_utils.argument_specs import pair_argument_spec
from ..module_utils.dbsync_job import Sync, SyncOptions
from ..module_utils.forest_pg import out_of_range
from ..module_utils.module_runner import forest_module, run_job
from ..module_utils.pair_choice import dbsync_pair


def main():
    argument_spec = pair_argument_spec()
    argument_spec.update(
        mode=dict(type='str', choices=['compare', 'sync'], default='compare'),
        scope=dict(type='str', choices=['diff', 'all'], default='diff'),
        source=dict(type='int', choices=[0, 1]),
        target=dict(type='int', choices=[0, 1]),
        online=dict(type='bool', default=False),
        include=dict(type='list', elements='str'),
        exclude=dict(type='list', elements='str'),
        sample_size=dict(type='int', default=20),
        reload_fraction=dict(type='float', default=0.5),
        notice_wait=dict(type='float'),
        freeze_read_duration=dict(type='int', default=1),
        jobs=dict(type='int', default=1),
        idle_wait_timeout=dict(type='float', default=60),
        copy_with=dict(type='str', choices=['auto', 'psql', 'python'], default='auto'),
    )
    module = forest_module(argument_spec)
    if module.params['online'] and module.params['mode'] == 'sync':
        module.fail_json(msg='online=true is for mode=compare: a sync needs the applications stopped. To bring a '
                             'node back while they run, use pgforest.cluster.forest_recover mode=online')
    bad = out_of_range(module.params,
                       positive=('sample_size', 'notice_wait', 'freeze_read_duration', 'idle_wait_timeout', 'jobs'),
                       fractions=('reload_fraction',))
    if not bad and module.params['jobs'] > 64:
        bad = 'jobs must be from 1 to 64 (got %d): each job is a connection to each node. Nothing was changed' \
            % module.params['jobs']
    if bad:
        module.fail_json(msg=bad)
    run_job(module, lambda slot: compare_and_repair(module, slot))


def compare_and_repair(module, slot):
    params = module.params
    sync = slot.job = Sync(params, SyncOptions.from_params(params), module.check_mode, module.log)
    source, target = dbsync_pair(sync.read_status(), params['mode'], params['source'], params['target'])
    result = sync.run(source, target)
    changed = any(t['status'] in ('repaired', 'would_repair') for t in result['tables']) or \
        any(s['status'] in ('set', 'would_set') for s in result['sequences'])
    if sync.failed():
        failure = [t['detail'] for t in result['tables'] if t['status'] == 'failed'][0]
        module.fail_json(msg='sync failed: %s; tables repaired before it stay repaired, the failed one '
                             'and those after it are untouched' % failure, changed=changed, **result)
    return dict(changed=changed, **result)


if __name__ == '__main__':
    main()
