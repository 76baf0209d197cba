# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One compare (and repair) of a target's user database against a source's: consistent
snapshots (sync_snapshots), compare, repair, report (sync_report).  Sync.run is used alike
by forest_dbsync and by the offline recovery that repairs a node by diff; no Ansible here."""

from __future__ import annotations

import time
from typing import List, NamedTuple, Optional

from .fan_out import all_of
from .forest_pg import ForestPgError, psycopg, run, shown_name, sql
from .job import Job
from .lock_waits import lock_waits_named
from .options import options_from
from .shapes import StatusNode, TableResult
from .sync_catalog import DbsyncError, read_catalog, schema_difference, selected, table_name, unlogged_tables
from .sync_copy import copy_rows, find_psql, pipe_table, referenced_by_foreign_keys
from .sync_hash import (
    FINE_BITS, block_slices, bucket_hashes, compare_buckets, fine_buckets, key_texts, localize, merge_buckets,
    pin_settings, row_hashes, table_blocks, table_sql_for)
from .sync_large_objects import (
    LARGE_OBJECTS, copy_large_objects, describe_large_object_change, large_objects, unlink_large_objects)
from .sync_report import report
from .sync_sequences import differing_sequences, read_sequences, set_sequence
from .sync_snapshots import SLICE_MIN_BLOCKS, SnapshotJob


class SyncOptions(NamedTuple):
    """What a compare or sync does, apart from where (the connection options) and between which
    nodes (Sync.run's source and target)."""
    mode: str = 'compare'            # compare, or sync (repair the target)
    scope: str = 'diff'              # diff: only what differs; all: every table copied
    online: bool = False             # snapshots inside a short write freeze, applications running
    include: Optional[list] = None   # table/sequence patterns
    exclude: Optional[list] = None
    copy_with: str = 'auto'          # psql pipes or python COPY for whole tables
    sample_size: int = 20            # keys listed per table
    reload_fraction: float = 0.5     # above this share of differing rows, a table is reloaded whole
    notice_wait: Optional[float] = None        # the freeze's notice time (None: mngdb_read_duration)
    freeze_read_duration: int = 1              # mngdb_read_duration meanwhile (poll_interval), without notice_wait
    idle_wait_timeout: float = 20
    jobs: int = 1                    # sessions per node hashing slices of a big table at once
    source_snapshot: Optional[str] = None  # the source read in this exported snapshot (a resync's slot)

    from_params = classmethod(options_from)


class Sync(SnapshotJob, Job):
    """One compare (and repair) of the target's user database against the source's: run()."""

    def __init__(self, params, options, check_mode=False, log=None):
        super(Sync, self).__init__(params, options, check_mode, log)
        self.psql = None
        self.results: List[TableResult] = []
        self.sequences = []
        self.unlogged = []

    def run(self, source: StatusNode, target: StatusNode) -> dict:
        """Compare target with source (status node dicts, from pair_choice) and, in mode=sync,
        repair it; the report (see report())."""
        self.source, self.target = source, target
        self.say('source serverid %d (%s), target serverid %d (%s)' % (
            source['serverid'], source['url'], target['serverid'], target['url']))
        with self.timer('snapshot'):
            self.open_snapshots()
        self.compare()
        if self.options.mode == 'sync':
            self.repair()
        return report(self)

    # --- comparing ---------------------------------------------------------------
    def compare(self):
        with self.timer('catalog'):
            src_tables = read_catalog(self.src, self.options.include, self.options.exclude)
            tgt_tables = read_catalog(self.tgt, self.options.include, self.options.exclude)
            if self.frozen_sequences is not None:  # an online compare's, read inside the freeze
                src_seqs, tgt_seqs = self.frozen_sequences
            else:
                src_seqs = read_sequences(self.src, self.options.include, self.options.exclude)
                tgt_seqs = read_sequences(self.tgt, self.options.include, self.options.exclude)
        self.say('catalog: %d tables and %d sequences on the source' % (len(src_tables), len(src_seqs)))
        names = set((row['schema'], row['name']) for found in (src_tables, tgt_tables, src_seqs, tgt_seqs)
                    for row in found.values()) | set([LARGE_OBJECTS])
        unmatched = [pattern for pattern in self.options.include or [] if not any(
            selected(name, [pattern], None) for name in names)]
        if unmatched:
            raise DbsyncError('include %s matches no table or sequence on either node (give schema.table, '
                              'e.g. public.orders, or a pattern like public.order*); nothing was compared or '
                              'changed' % ', '.join(repr(pattern) for pattern in unmatched))
        self.results = []
        for name in sorted(set(src_tables) | set(tgt_tables)):
            self.results.append(self.compare_table(name, src_tables.get(name), tgt_tables.get(name)))
        self.unlogged = [table_name(table) for table in unlogged_tables(self.src)]
        if self.unlogged:
            self.say('unlogged tables (emptied by a crash of either server, not streamed to a standby): %s'
                     % ', '.join(self.unlogged))
        if selected(LARGE_OBJECTS, self.options.include, self.options.exclude):
            with self.timer('hash'):
                self.results.append(self.compare_large_objects())
        self.sequences = differing_sequences(src_seqs, tgt_seqs)

    def compare_large_objects(self) -> TableResult:
        """Large objects as one entry of the report, keyed by oid."""
        result = dict(table=shown_name(*LARGE_OBJECTS), status='equal', missing=0, extra=0, changed=0, keys={},
                      rows_copied=0, bytes_copied=0, method='keys')
        src, tgt = self.both(large_objects)
        missing, extra, changed = localize(src, tgt)  # changed: content, owner or permissions
        result.update(rows_source=len(src), rows_target=len(tgt), _catalog=src, _keys=(missing, extra, changed))
        if missing or extra or changed:
            sample = self.options.sample_size
            result.update(status='different', missing=len(missing), extra=len(extra), changed=len(changed),
                          keys=dict((kind, [dict(oid=str(oid)) for oid in oids[:sample]])
                                    for kind, oids in (('missing', missing), ('extra', extra), ('changed', changed))
                                    if oids),
                          detail='; '.join('large object %d: %s' % (oid, describe_large_object_change(
                              src[oid], tgt[oid])) for oid in changed[:sample]) or None)
            self.say('large objects: %d missing, %d extra, %d changed of %d'
                     % (len(missing), len(extra), len(changed), len(src)))
        return result

    def compare_table(self, name, src, tgt) -> TableResult:
        result = dict(table=name, status='equal', missing=0, extra=0, changed=0, keys={},
                      rows_copied=0, bytes_copied=0)
        if src is None or tgt is None:
            result['status'] = 'only_on_target' if src is None else 'only_on_source'
            return result
        problem = schema_difference(src, tgt)
        if problem:
            result.update(status='schema_differs', detail=problem)
            return result
        table_sql = table_sql_for(self.src_peer, self.tgt, src, tgt)
        result['_sql'] = table_sql
        if self.options.scope == 'all' and self.options.mode == 'sync':
            result.update(status='different', method='reload', detail='scope=all: copied without comparing')
            return result
        with self.timer('hash'):
            src_buckets, tgt_buckets = self.hash_buckets(table_sql, src)
        result['rows_source'] = sum(n for n, _h in src_buckets.values())
        result['rows_target'] = sum(n for n, _h in tgt_buckets.values())
        differing = compare_buckets(src_buckets, tgt_buckets)
        result['_src_buckets'] = src_buckets
        result['_differing'] = differing
        if not differing:
            return result
        result['status'] = 'different'
        if not table_sql.key:
            result.update(method='reload', detail='no primary key or unique NOT NULL key: compared and repaired whole')
            return result
        with self.timer('localize'):
            if table_sql.strategy == 'range' and table_sql.shift > FINE_BITS:
                fine = table_sql.narrowed(FINE_BITS)
                differing = compare_buckets(*self.both(fine_buckets, table_sql, fine, differing))
                table_sql = fine
            src_rows, tgt_rows = self.both(row_hashes, table_sql, differing)
        missing, extra, changed = (key_texts(keys) for keys in localize(src_rows, tgt_rows))
        result.update(missing=len(missing), extra=len(extra), changed=len(changed), _keys=(missing, extra, changed),
                      keys=dict((kind, [dict(zip(table_sql.key, key)) for key in keys[:self.options.sample_size]])
                                for kind, keys in (('missing', missing), ('extra', extra), ('changed', changed))
                                if keys))
        wrong = len(missing) + len(extra) + len(changed)
        result['method'] = 'reload' if wrong > self.options.reload_fraction * max(result['rows_source'], 1) else 'keys'
        self.say('%s: %d missing, %d extra, %d changed of %d rows'
                 % (name, len(missing), len(extra), len(changed), result['rows_source']))
        return result

    def hash_buckets(self, table_sql, table):
        """Both nodes' {bucket: (rows, hash)} of a table: with jobs > 1 and a big table, each node's
        copy split in block ranges hashed by its sessions at once, then merged."""
        jobs = self.options.jobs
        if jobs <= 1:
            return self.both(bucket_hashes, table_sql)
        sizes = self.both(table_blocks, table)
        if max(sizes) < SLICE_MIN_BLOCKS:
            return self.both(bucket_hashes, table_sql)
        keyed = bool(table_sql.key)

        def hash_slice(conn, blocks):
            return lambda: bucket_hashes(conn, table_sql, blocks=blocks)
        slices = dict(((side, number), hash_slice(conn, blocks)) for side, size in zip(('source', 'target'), sizes)
                      for number, (conn, blocks) in enumerate(zip(self.hashers[side], block_slices(size, jobs))))
        parts = all_of(slices)
        return tuple(merge_buckets([parts[key] for key in slices if key[0] == side], keyed)
                     for side in ('source', 'target'))

    # --- repairing ---------------------------------------------------------------
    def repair(self):
        run(self.tgt, 'COMMIT')  # the compare snapshot's locks would block TRUNCATE
        for conn in self.hashers['target'][1:]:  # and so would those of the other hashing sessions
            run(conn, 'ROLLBACK')
        self.psql = find_psql(self.options.copy_with)
        _node, writer = self.connect(self.target, self.userdb, bulk=True)
        pin_settings(writer)
        for result in self.results:
            if result['status'] != 'different':
                continue
            if self.check_mode:
                result['status'] = 'would_repair'
                continue
            started = time.monotonic()
            try:
                with self.timer('repair'):
                    self.repair_table(writer, result)
                result['status'] = 'repaired'
            except (ForestPgError, DbsyncError, psycopg.Error) as exc:
                # psycopg.Error: the rollback itself failed because the connection is gone.
                result.update(status='failed', detail=str(exc) if not isinstance(exc, psycopg.Error) else
                              '%s: connection lost during the repair (%s); its transaction did not commit'
                              % (result['table'], exc))
                self.say('%s: repair failed and was rolled back: %s' % (result['table'], exc))
                break
            result['seconds'] = round(time.monotonic() - started, 3)
            self.say('%s: repaired (%s), %d rows / %d bytes copied' % (
                result['table'], result['method'], result['rows_copied'], result['bytes_copied']))
        if self.check_mode:
            for seq in self.sequences:
                seq['status'] = 'would_set'
        elif self.sequences and not self.failed():
            with writer.transaction():
                for seq in self.sequences:
                    if seq['seq'] is not None and seq['target'] is not None:
                        set_sequence(writer, seq['seq'])
                        seq['status'] = 'set'

    def repair_table(self, writer, result):
        if '_catalog' in result:
            return self.repair_large_objects(writer, result)
        table_sql = result['_sql']
        if result['method'] == 'reload' and self.psql:
            return self.reload_through_psql(writer, result)
        truncate = result['method'] == 'reload' and not referenced_by_foreign_keys(writer, table_sql.table)
        with lock_waits_named(writer, table_sql.table, 'AccessExclusiveLock' if truncate else 'RowExclusiveLock',
                              'repair of %s: serverid %d' % (result['table'], self.target['serverid'])):
            with writer.transaction():  # rolled back before lock_waits_named looks up who held the table
                run(writer, 'SET LOCAL session_replication_role = replica', action='disable triggers')
                if result['method'] == 'reload':
                    self.empty(writer, table_sql, truncate)
                    self.copy(writer, table_sql, result, None)
                else:
                    missing, extra, changed = result['_keys']
                    if extra or changed:
                        run(writer, table_sql.delete(extra + changed), action='delete rows of %s' % result['table'])
                    if missing or changed:
                        self.copy(writer, table_sql, result, missing + changed)
                self.verify(writer, result)

    def repair_large_objects(self, writer, result):
        """In one transaction: remove what the source lacks or has otherwise, create
        it again from the source, and check the result against the source's catalog."""
        missing, extra, changed = result['_keys']
        with writer.transaction():
            unlink_large_objects(writer, extra + changed)
            result['bytes_copied'] = copy_large_objects(self.src_peer, writer, missing + changed, result['_catalog'])
            result['rows_copied'] = len(missing + changed)
            after = large_objects(writer)
            wrong = [oid for oid in set(missing + changed + extra) if after.get(oid) != result['_catalog'].get(oid)]
            if wrong:
                raise DbsyncError('large objects %s still differ from the source after the repair'
                                  % ', '.join(str(oid) for oid in sorted(wrong)[:10]))

    def reload_through_psql(self, writer, result):
        """Whole table through psql | psql, checked after its transaction committed."""
        table_sql = result['_sql']
        truncate = not referenced_by_foreign_keys(writer, table_sql.table)
        rows, size = pipe_table(self.psql, (self.src_node, self.source['userdb']),
                                (self.tgt_node, self.target['userdb']), self.snapshot, table_sql, truncate, writer,
                                names=tuple('serverid %d' % node['serverid'] for node in (self.source, self.target)))
        result.update(rows_copied=rows, bytes_copied=size, method='reload (psql)')
        try:
            self.verify(writer, result)
        except DbsyncError as exc:
            raise DbsyncError('%s; the copy had committed, so run the sync again' % exc)

    def empty(self, writer, table_sql, truncate):
        # TRUNCATE refuses tables that other tables reference, even with FK checks off.
        if truncate:
            run(writer, table_sql.truncate(), action='truncate %s' % table_name(table_sql.table))
        else:
            run(writer, table_sql.delete(), action='delete %s' % table_name(table_sql.table))

    def copy(self, writer, table_sql, result, keys):
        rows, size = copy_rows(self.src_peer, writer, table_sql, keys)
        result['rows_copied'] += rows
        result['bytes_copied'] += size

    def verify(self, writer, result):
        """Inside the repair's transaction: the target must now hash like the source."""
        if '_src_buckets' not in result and result['method'] == 'reload (psql)':
            return  # scope=all through psql: COPY loaded every row it was sent, or nothing
        if '_src_buckets' not in result:  # scope=all: the source was not hashed, compare counts
            count = run(writer, sql.SQL('SELECT count(*) AS n FROM {}').format(result['_sql'].relation))[0]['n']
            if count != result['rows_copied']:
                raise DbsyncError('%s: %d rows after the copy, %d copied' % (result['table'], count,
                                                                             result['rows_copied']))
            return
        table_sql = result['_sql']
        if result['method'] == 'keys':  # only the repaired buckets can have changed
            wanted = result['_differing']
            expected = dict((b, result['_src_buckets'][b]) for b in wanted if b in result['_src_buckets'])
            ok = bucket_hashes(writer, table_sql, wanted) == expected
        else:
            ok = bucket_hashes(writer, table_sql) == result['_src_buckets']
        if not ok:
            raise DbsyncError('%s still differs from the source after the repair (was it written meanwhile?)'
                              % result['table'])

    def failure_result(self):
        """What a failed run reports: the tables compared or repaired so far."""
        return report(self, failed=True)

    def failed(self):
        return any(result['status'] == 'failed' for result in self.results)
