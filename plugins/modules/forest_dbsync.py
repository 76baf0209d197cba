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
    description: Only tables and sequences whose C(schema.name) matches one of these shell patterns.
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
      - Defaults to the pair's C(mngdb_read_duration).
    type: float
  idle_wait_timeout:
    description: Seconds to wait for open transactions to end inside the freeze before giving up.
    type: float
    default: 20
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
tables:
  description: One entry per table. C(status) is C(equal), C(different), C(schema_differs),
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
progress:
  description: What the module did, with seconds since it started (also shown with -v).
  returned: always
  type: list
  elements: str
'''

import threading
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.pgforest.cluster.plugins.module_utils import dbsync as d
from ansible_collections.pgforest.cluster.plugins.module_utils.cluster_status import (
    merge, pair_argument_spec, read_pair)
from ansible_collections.pgforest.cluster.plugins.module_utils.forest_pg import (
    PSYCOPG_IMPORT_ERROR, ForestPgError, Node, psycopg, run)
from ansible_collections.pgforest.cluster.plugins.module_utils.mngdb import (
    MngdbError, describe_sessions, driver_sessions, mngdb_name, read_config)
from ansible_collections.pgforest.cluster.plugins.module_utils.quiesce import Quiesce, QuiesceError


class Sync(object):
    """One compare (and repair) of the target's user database against the source's."""

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.userdb = self.p['userdb']
        self.mngdb = mngdb_name(self.userdb)
        self.started = time.monotonic()
        self.timer = d.Timer()
        self.progress = []
        self.conns = []
        self.freeze_window = None
        self.source = self.target = None
        self.results = []
        self.sequences = []

    def say(self, text):
        line = '%7.2fs %s' % (time.monotonic() - self.started, text)
        self.progress.append(line)
        self.module.log(line)

    def connect(self, node, dbname):
        conn = node.connect(dbname)
        self.conns.append(conn)
        return conn

    # --- who is source, who is target ---------------------------------------
    def pair(self):
        status = merge(list(read_pair(self.p, self.mngdb).values()))
        if status['cluster_state'] == 'misconfigured':
            raise d.DbsyncError('the pair is misconfigured, refusing to compare: %s' % '; '.join(status['problems']))
        by_sid = dict((node['serverid'], node) for node in status['nodes'])
        unreachable = [sid for sid, node in by_sid.items() if not node['reachable']]
        if unreachable or len(by_sid) != 2:
            raise d.DbsyncError('both nodes must answer: %s' % (
                [by_sid[sid]['error'] for sid in unreachable] or status['recommended_action']['reason']))
        source, target = self.choose(by_sid)
        self.source, self.target = by_sid[source], by_sid[target]

    def choose(self, by_sid):
        source, target = self.p['source'], self.p['target']
        if source is None and target is None:
            valid = [sid for sid, node in by_sid.items() if node['validity'] == 1]
            if len(valid) == 1:
                source = valid[0]
            elif self.p['mode'] == 'sync':
                raise d.DbsyncError('%s: say which node is the source (source=0 or source=1); this module does '
                                    'not guess which copy is right' % (
                                        'both nodes are valid' if len(valid) == 2 else 'no node is valid'))
            else:
                source = 0
        if source is None:
            source = 1 - target
        if target is None:
            target = 1 - source
        if source == target:
            raise d.DbsyncError('source and target are both serverid %d: give two different nodes' % source)
        if self.p['mode'] == 'sync' and by_sid[source]['validity'] == -1 and by_sid[target]['validity'] == 1:
            self.module.warn('syncing from serverid %d, which is marked broken (-1), onto serverid %d, which is '
                             'valid' % (source, target))
        return source, target

    # --- snapshots -------------------------------------------------------------
    def open_snapshots(self, source, target):
        this = Node.from_params(self.p)
        src_node = this.sibling(source['host'], source['port'])
        tgt_node = this.sibling(target['host'], target['port'])
        self.src_node, self.tgt_node = src_node, tgt_node
        self.src = self.connect(src_node, source['userdb'])
        self.tgt = self.connect(tgt_node, target['userdb'])
        self.src_peer = self.connect(src_node, source['userdb'])  # hashes the source beside self.src
        for conn in (self.src, self.tgt, self.src_peer):
            d.pin_settings(conn)
        if self.p['online']:
            self.snapshot_in_freeze(src_node, tgt_node, target['serverid'])
        else:
            self.refuse_if_sessions()
            self.begin_snapshots()

    def refuse_if_sessions(self):
        own = [conn.info.backend_pid for conn in self.conns]
        found = []
        for conn in (self.src, self.tgt):
            found += [s for s in driver_sessions(conn, [self.userdb]) if s['pid'] not in own]
        if found:
            raise d.DbsyncError('applications are connected to %s (%s): stop them, or compare with online=true '
                                '(a short write freeze); nothing was read or changed'
                                % (self.userdb, describe_sessions(found)))

    def begin_snapshots(self):
        for conn in (self.src, self.tgt):
            run(conn, 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY')
            run(conn, 'SELECT 1')  # takes the snapshot now
        # The second source connection shares the first one's snapshot.
        snapshot = self.snapshot = run(self.src, 'SELECT pg_export_snapshot() AS id')[0]['id']
        run(self.src_peer, 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY')
        run(self.src_peer, d.sql.SQL('SET TRANSACTION SNAPSHOT {}').format(d.sql.Literal(snapshot)))

    def snapshot_in_freeze(self, src_node, tgt_node, target_sid):
        mngdbs = {}
        for node in (src_node, tgt_node):
            mngdbs[node.label] = self.connect(node, self.mngdb)
        notice = self.p['notice_wait']
        if notice is None:
            notice = float(read_config(mngdbs[src_node.label], 'global_config').get('mngdb_read_duration', 30))
        self.say('write freeze: serverid %d to 0, waiting %.1fs for drivers to notice' % (target_sid, notice))
        freeze = Quiesce(mngdbs, [self.src, self.tgt], target_sid, notice, self.p['idle_wait_timeout'])
        with freeze:
            self.begin_snapshots()
        self.freeze_window = freeze.window
        self.say('write freeze released after %.3fs (snapshots open on both nodes)' % freeze.window)

    # --- comparing ---------------------------------------------------------------
    def compare(self):
        with self.timer('catalog'):
            src_tables = d.read_catalog(self.src, self.p['include'], self.p['exclude'])
            tgt_tables = d.read_catalog(self.tgt, self.p['include'], self.p['exclude'])
            src_seqs = d.read_sequences(self.src, self.p['include'], self.p['exclude'])
            tgt_seqs = d.read_sequences(self.tgt, self.p['include'], self.p['exclude'])
        self.say('catalog: %d tables and %d sequences on the source' % (len(src_tables), len(src_seqs)))
        self.results = []
        for name in sorted(set(src_tables) | set(tgt_tables)):
            self.results.append(self.compare_table(name, src_tables.get(name), tgt_tables.get(name)))
        self.sequences = [dict(sequence=name, source=_seq_state(src_seqs.get(name)),
                               target=_seq_state(tgt_seqs.get(name)), status='different', seq=src_seqs.get(name))
                          for name in sorted(set(src_seqs) | set(tgt_seqs))
                          if _seq_state(src_seqs.get(name)) != _seq_state(tgt_seqs.get(name))]

    def compare_table(self, name, src, tgt):
        result = dict(table=name, status='equal', missing=0, extra=0, changed=0, keys={},
                      rows_copied=0, bytes_copied=0)
        if src is None or tgt is None:
            result['status'] = 'only_on_target' if src is None else 'only_on_source'
            return result
        problem = d.schema_difference(src, tgt)
        if problem:
            result.update(status='schema_differs', detail=problem)
            return result
        table_sql = d.table_sql_for(self.src_peer, self.tgt, src, tgt)
        result['_sql'] = table_sql
        if self.p['scope'] == 'all' and self.p['mode'] == 'sync':
            result.update(status='different', method='reload', detail='scope=all: copied without comparing')
            return result
        with self.timer('hash'):
            src_buckets, tgt_buckets = self.both(d.bucket_hashes, table_sql)
        result['rows_source'] = sum(n for n, _h in src_buckets.values())
        result['rows_target'] = sum(n for n, _h in tgt_buckets.values())
        differing = d.compare_buckets(src_buckets, tgt_buckets)
        result['_src_buckets'] = src_buckets
        result['_differing'] = differing
        if not differing:
            return result
        result['status'] = 'different'
        if not table_sql.pkey:
            result.update(method='reload', detail='no primary key: compared and repaired whole')
            return result
        with self.timer('localize'):
            src_rows, tgt_rows = self.both(d.row_hashes, table_sql, differing)
        missing, extra, changed = d.localize(src_rows, tgt_rows)
        result.update(missing=len(missing), extra=len(extra), changed=len(changed), _keys=(missing, extra, changed),
                      keys=dict((kind, [dict(zip(table_sql.pkey, key)) for key in keys[:self.p['sample_size']]])
                                for kind, keys in (('missing', missing), ('extra', extra), ('changed', changed))
                                if keys))
        wrong = len(missing) + len(extra) + len(changed)
        result['method'] = 'reload' if wrong > self.p['reload_fraction'] * max(result['rows_source'], 1) else 'keys'
        self.say('%s: %d missing, %d extra, %d changed of %d rows'
                 % (name, len(missing), len(extra), len(changed), result['rows_source']))
        return result

    def both(self, function, *args):
        """Run function(conn, *args) on the source and the target at the same time."""
        out = {}

        def work(key, conn):
            try:
                out[key] = function(conn, *args)
            except Exception as exc:  # re-raised below in the module's thread
                out[key] = exc
        thread = threading.Thread(target=work, args=('source', self.src_peer))
        thread.start()
        work('target', self.tgt)
        thread.join()
        for key in ('source', 'target'):
            if isinstance(out[key], Exception):
                raise out[key]
        return out['source'], out['target']

    # --- repairing ---------------------------------------------------------------
    def repair(self, target_node):
        run(self.tgt, 'COMMIT')  # the compare snapshot's locks would block TRUNCATE
        self.psql = d.find_psql(self.p['copy_with'])
        writer = self.connect(target_node, self.userdb)
        d.pin_settings(writer)
        for result in self.results:
            if result['status'] != 'different':
                continue
            if self.module.check_mode:
                result['status'] = 'would_repair'
                continue
            started = time.monotonic()
            try:
                with self.timer('repair'):
                    self.repair_table(writer, result)
                result['status'] = 'repaired'
            except (ForestPgError, d.DbsyncError, psycopg.Error) as exc:
                # psycopg.Error: the rollback itself failed because the connection is gone.
                result.update(status='failed', detail=str(exc) if not isinstance(exc, psycopg.Error) else
                              '%s: connection lost during the repair (%s); its transaction did not commit'
                              % (result['table'], exc))
                self.say('%s: repair failed and was rolled back: %s' % (result['table'], exc))
                break
            result['seconds'] = round(time.monotonic() - started, 3)
            self.say('%s: repaired (%s), %d rows / %d bytes copied' % (
                result['table'], result['method'], result['rows_copied'], result['bytes_copied']))
        if self.module.check_mode:
            for seq in self.sequences:
                seq['status'] = 'would_set'
        elif self.sequences and not self.failed():
            with writer.transaction():
                for seq in self.sequences:
                    if seq['seq'] is not None and seq['target'] is not None:
                        d.set_sequence(writer, seq['seq'])
                        seq['status'] = 'set'

    def repair_table(self, writer, result):
        table_sql = result['_sql']
        if result['method'] == 'reload' and self.psql:
            return self.pipe_table(writer, result)
        with writer.transaction():
            run(writer, 'SET LOCAL session_replication_role = replica', action='disable triggers')
            if result['method'] == 'reload':
                self.empty(writer, table_sql)
                self.copy(writer, table_sql, result, None)
            else:
                missing, extra, changed = result['_keys']
                if extra or changed:
                    run(writer, table_sql.delete(extra + changed), action='delete rows of %s' % result['table'])
                if missing or changed:
                    self.copy(writer, table_sql, result, missing + changed)
            self.verify(writer, result)

    def pipe_table(self, writer, result):
        """Whole table through psql | psql, checked after its transaction committed."""
        table_sql = result['_sql']
        truncate = not d.referenced_by_foreign_keys(writer, table_sql.table)
        rows, size = d.pipe_table(self.psql, (self.src_node, self.source['userdb']),
                                  (self.tgt_node, self.target['userdb']), self.snapshot, table_sql, truncate, writer)
        result.update(rows_copied=rows, bytes_copied=size, method='reload (psql)')
        try:
            self.verify(writer, result)
        except d.DbsyncError as exc:
            raise d.DbsyncError('%s; the copy had committed, so run the sync again' % exc)

    def empty(self, writer, table_sql):
        # TRUNCATE refuses tables that other tables reference, even with FK checks off.
        if d.referenced_by_foreign_keys(writer, table_sql.table):
            run(writer, table_sql.delete(), action='delete %s' % d.quoted(table_sql.table))
        else:
            run(writer, table_sql.truncate(), action='truncate %s' % d.quoted(table_sql.table))

    def copy(self, writer, table_sql, result, keys):
        rows, size = d.copy_rows(self.src_peer, writer, table_sql, keys)
        result['rows_copied'] += rows
        result['bytes_copied'] += size

    def verify(self, writer, result):
        """Inside the repair's transaction: the target must now hash like the source."""
        if '_src_buckets' not in result and result['method'] == 'reload (psql)':
            return  # scope=all through psql: COPY loaded every row it was sent, or nothing
        if '_src_buckets' not in result:  # scope=all: the source was not hashed, compare counts
            count = run(writer, d.sql.SQL('SELECT count(*) AS n FROM {}').format(result['_sql'].relation))[0]['n']
            if count != result['rows_copied']:
                raise d.DbsyncError('%s: %d rows after the copy, %d copied' % (result['table'], count,
                                                                               result['rows_copied']))
            return
        table_sql = result['_sql']
        if result['method'] == 'keys':  # only the repaired buckets can have changed
            wanted = result['_differing']
            expected = dict((b, result['_src_buckets'][b]) for b in wanted if b in result['_src_buckets'])
            ok = d.bucket_hashes(writer, table_sql, wanted) == expected
        else:
            ok = d.bucket_hashes(writer, table_sql) == result['_src_buckets']
        if not ok:
            raise d.DbsyncError('%s still differs from the source after the repair (was it written meanwhile?)'
                                % result['table'])

    def failed(self):
        return any(result['status'] == 'failed' for result in self.results)

    def close(self):
        for conn in self.conns:
            try:
                conn.close()
            except Exception:  # closing a broken connection must not hide the real error
                pass


def _seq_state(seq):
    return None if seq is None else [seq['last_value'], seq['is_called']]


def report(sync, failed=False):
    tables = [dict((k, v) for k, v in result.items() if not k.startswith('_')) for result in sync.results]
    counts = {}
    for table in tables:
        counts[table['status']] = counts.get(table['status'], 0) + 1
    sequences = [dict((k, v) for k, v in seq.items() if k != 'seq') for seq in sync.sequences]
    settled = ('equal', 'repaired')
    equal = not failed and all(t['status'] in settled for t in tables) and all(s['status'] == 'set' for s in sequences)
    return dict(equal=equal, report=report_lines(tables, sequences), source=sync.source and sync.source['serverid'],
                target=sync.target and sync.target['serverid'], tables=tables,
                sequences=sequences, freeze_window=sync.freeze_window, phases=sync.timer.phases,
                progress=sync.progress,
                summary=dict(tables=counts, rows_copied=sum(t['rows_copied'] for t in tables),
                             bytes_copied=sum(t['bytes_copied'] for t in tables),
                             seconds=round(time.monotonic() - sync.started, 3)))


def report_lines(tables, sequences):
    """One readable line per table (and differing sequence)."""
    lines = []
    for t in tables:
        line = '%-40s %-15s' % (t['table'], t['status'])
        if 'rows_source' in t:
            line += ' rows %s/%s' % (t['rows_source'], t['rows_target'])
        if t['missing'] or t['extra'] or t['changed']:
            line += ' missing %d extra %d changed %d' % (t['missing'], t['extra'], t['changed'])
        if t['rows_copied']:
            line += ' copied %d rows %d bytes (%s)' % (t['rows_copied'], t['bytes_copied'], t.get('method'))
        for kind, keys in sorted(t['keys'].items()):
            line += ' %s: %s' % (kind, ', '.join(','.join('%s=%s' % kv for kv in sorted(k.items())) for k in keys[:5]))
        if t.get('detail') and t['status'] != 'repaired':
            line += ' -- %s' % t['detail']
        lines.append(line)
    for seq in sequences:
        lines.append('%-40s %-15s source %s target %s' % (seq['sequence'], 'sequence ' + seq['status'],
                                                          seq['source'], seq['target']))
    return lines


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
        idle_wait_timeout=dict(type='float', default=20),
        copy_with=dict(type='str', choices=['auto', 'psql', 'python'], default='auto'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if PSYCOPG_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib('psycopg (version 3)'), exception=PSYCOPG_IMPORT_ERROR)
    if module.params['online'] and module.params['mode'] == 'sync':
        module.fail_json(msg='online=true is for mode=compare: a sync needs the applications stopped. To bring a '
                             'node back while they run, use pgforest.cluster.forest_recover mode=online')
    if not 0 < module.params['reload_fraction'] <= 1:
        module.fail_json(msg='reload_fraction must be above 0 and at most 1 (got %s)' % module.params['reload_fraction'])
    sync = None
    try:
        sync = Sync(module)
        sync.pair()
        source, target = sync.source, sync.target
        sync.say('source serverid %d (%s), target serverid %d (%s)' % (
            source['serverid'], source['url'], target['serverid'], target['url']))
        with sync.timer('snapshot'):
            sync.open_snapshots(source, target)
        sync.compare()
        if module.params['mode'] == 'sync':
            sync.repair(Node.from_params(module.params).sibling(target['host'], target['port']))
        result = report(sync)
        changed = any(t['status'] in ('repaired', 'would_repair') for t in result['tables']) or \
            any(s['status'] in ('set', 'would_set') for s in result['sequences'])
        if sync.failed():
            failure = [t['detail'] for t in result['tables'] if t['status'] == 'failed'][0]
            module.fail_json(msg='sync failed: %s; tables repaired before it stay repaired, the failed one '
                                 'and those after it are untouched' % failure, changed=changed, **result)
        module.exit_json(changed=changed, **result)
    except (d.DbsyncError, QuiesceError, MngdbError, ForestPgError) as exc:
        extra = report(sync, failed=True) if sync else {}
        module.fail_json(msg=str(exc), **extra)
    finally:
        if sync:
            sync.close()


if __name__ == '__main__':
    main()
