# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One compare (and repair) of a target's user database against a source's: consistent
snapshots (offline, or inside a write freeze), compare, repair, report.  Sync.run is used
alike by forest_dbsync and by the offline recovery that repairs a node by diff; no Ansible here."""

from __future__ import annotations

import threading
import time
from typing import List, NamedTuple, Optional

from . import dbsync
from .forest_pg import ForestPgError, psycopg, run
from .job import Job
from .mngdb import refuse_if_applications
from .poll_interval import PollInterval, freeze_notice
from .quiesce import FreezeAgain, Quiesce
from .shapes import StatusNode, TableResult


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

    @classmethod
    def from_params(cls, params, **overrides):
        """The options a module was given (those it has), with overrides."""
        given = dict((name, params[name]) for name in cls._fields if params.get(name) is not None)
        given.update(overrides)
        return cls(**given)


# Below this many blocks (8 MB) a table is hashed by one session per node whatever `jobs` says.
SLICE_MIN_BLOCKS = 1024
# What one try of the snapshots takes at most (milliseconds here): a try begins only if the freeze has it.
SNAPSHOT_SECONDS = 0.1


class Sync(Job):
    """One compare (and repair) of the target's user database against the source's: run()."""

    def __init__(self, params, options, check_mode=False, log=None):
        super(Sync, self).__init__(params, check_mode, log)
        self.options = options
        self.source = self.target = None        # status node dicts
        self.src_node = self.tgt_node = None     # their Nodes
        self.src = self.src_peer = self.tgt = None  # snapshot connections (two on the source)
        self.hashers = dict(source=[], target=[])   # sessions in the snapshots that hash (jobs per node)
        self.snapshot = None
        self.freeze_window = None
        self.freeze_report = None
        self.frozen_sequences = None  # (source's, target's) read inside an online compare's freeze
        self.snapshot_retries = 0
        self.poll = None  # PollInterval of an online compare without notice_wait
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

    # --- snapshots -------------------------------------------------------------
    def open_snapshots(self):
        self.src_node, self.src = self.connect(self.source, self.source['userdb'], bulk=True)
        self.tgt_node, self.tgt = self.connect(self.target, self.target['userdb'], bulk=True)
        _node, self.src_peer = self.connect(self.source, self.source['userdb'], bulk=True)  # hashes beside src
        for conn in (self.src, self.tgt, self.src_peer):
            dbsync.pin_settings(conn)
        if self.options.online:
            self.snapshot_in_freeze()
        else:
            self.refuse_if_applications()
            self.begin_snapshots()
        self.open_hashers()

    def open_hashers(self):
        """jobs sessions per node in the compare's snapshots (the first ones are src_peer and tgt)."""
        self.hashers = dict(source=[self.src_peer], target=[self.tgt])
        if self.options.jobs <= 1:
            return
        snapshots = dict(source=self.snapshot, target=run(self.tgt, 'SELECT pg_export_snapshot() AS id')[0]['id'])
        for side, node in (('source', self.source), ('target', self.target)):
            for _job in range(self.options.jobs - 1):
                _node, conn = self.connect(node, node['userdb'], bulk=True)
                dbsync.pin_settings(conn)
                run(conn, 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY')
                run(conn, dbsync.sql.SQL('SET TRANSACTION SNAPSHOT {}').format(dbsync.sql.Literal(snapshots[side])))
                self.hashers[side].append(conn)
        self.say('%d sessions per node hash tables of %d MB and more in slices'
                 % (self.options.jobs, SLICE_MIN_BLOCKS * 8 >> 10))

    def refuse_if_applications(self):
        conns = [('serverid %d' % self.source['serverid'], self.src), ('serverid %d' % self.target['serverid'], self.tgt)]
        refuse_if_applications(conns, [self.userdb], dbsync.DbsyncError,
                               'an offline compare needs the applications of %s stopped' % self.userdb,
                               'Stop them, or compare with online=true (a short write freeze)')

    def begin_snapshots(self):
        for conn in (self.src, self.tgt):
            run(conn, 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY')
            run(conn, 'SELECT 1')  # takes the snapshot now
        # The second source connection shares the first one's snapshot.
        snapshot = self.snapshot = run(self.src, 'SELECT pg_export_snapshot() AS id')[0]['id']
        run(self.src_peer, 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY')
        run(self.src_peer, dbsync.sql.SQL('SET TRANSACTION SNAPSHOT {}').format(dbsync.sql.Literal(snapshot)))

    def snapshot_in_freeze(self):
        mngdbs = {}
        for node_dict in (self.source, self.target):
            _node, conn = self.connect(node_dict, self.mngdb)
            mngdbs['serverid %d %s' % (node_dict['serverid'], self.mngdb)] = conn
        target_sid = self.target['serverid']
        if self.options.notice_wait is not None:
            self.freeze(mngdbs, self.options.notice_wait)
            return
        self.poll = PollInterval(self.options.freeze_read_duration, 'online compare of serverid %d' % target_sid,
                                 self.say)
        try:
            self.poll.lower(mngdbs)
            self.poll.wait_for_drivers(mngdbs)
            self.freeze(mngdbs, freeze_notice(mngdbs.values()))
        finally:  # success, failure or SIGINT: the DBA's interval back (a killed run's: the next run)
            failures = self.poll.put_back(mngdbs, strict=False)
            if failures:
                self.say('mngdb_read_duration could not be put back on every node: %s; the next online compare '
                         'or recovery of the pair puts it back, or set it with playbooks/config.yml'
                         % '; '.join(failures))

    def freeze(self, mngdbs, notice):
        target_sid = self.target['serverid']
        self.say('write freeze: serverid %d to 0, waiting %.1fs for drivers to notice' % (target_sid, notice))
        watch = mngdbs['serverid %d %s' % (self.source['serverid'], self.mngdb)]
        freeze = Quiesce(mngdbs, [self.src, self.tgt], target_sid, notice, self.options.idle_wait_timeout,
                         watch=watch, say=self.say, own=[self.src_peer])
        try:
            freeze.run(self.snapshots_with_no_write_between)
        finally:
            self.freeze_window = freeze.window
            self.freeze_report = dict(window=freeze.window, notice_seconds=notice,
                                      waited_before_seconds=round(freeze.waited_before, 3),
                                      undone=freeze.undone, snapshot_retries=self.snapshot_retries)
        self.say('write freeze released after %.3fs (snapshots open on both nodes)' % freeze.window)

    def snapshots_with_no_write_between(self, freeze):
        """Snapshots no write straddles (Quiesce.wrote_since_idle): a late driver's write on one
        node and not yet on the other would show as a difference that is not there.  Taken again
        while this freeze's bound allows; then the freeze is undone and tried again later."""
        while True:
            self.begin_snapshots()
            # Sequences are no part of a snapshot: read them now, while the drivers are held, and prove it.
            sequences = tuple(dbsync.read_sequences(conn, self.options.include, self.options.exclude)
                              for conn in (self.src, self.tgt))
            if freeze.still_quiet():
                self.frozen_sequences = sequences
                return
            for conn in (self.src, self.src_peer, self.tgt):
                run(conn, 'ROLLBACK')
            self.snapshot_retries += 1
            self.say('write freeze: a transaction took an id on serverid %d while the snapshots were taken; taking '
                     'them again' % self.source['serverid'])
            busy = freeze.idle_again(max(0.0, freeze.time_left() - SNAPSHOT_SECONDS))
            if busy or freeze.time_left() < SNAPSHOT_SECONDS:
                raise FreezeAgain('transactions kept writing serverid %d while the snapshots were taken (a driver '
                                  'that ignores udb_validity 0, another application writing %s, or a busy other '
                                  'database of that server: every database\'s writes count)'
                                  % (self.source['serverid'], self.source['userdb']), busy)

    # --- comparing ---------------------------------------------------------------
    def compare(self):
        with self.timer('catalog'):
            src_tables = dbsync.read_catalog(self.src, self.options.include, self.options.exclude)
            tgt_tables = dbsync.read_catalog(self.tgt, self.options.include, self.options.exclude)
            if self.frozen_sequences is not None:  # an online compare's, read inside the freeze
                src_seqs, tgt_seqs = self.frozen_sequences
            else:
                src_seqs = dbsync.read_sequences(self.src, self.options.include, self.options.exclude)
                tgt_seqs = dbsync.read_sequences(self.tgt, self.options.include, self.options.exclude)
        self.say('catalog: %d tables and %d sequences on the source' % (len(src_tables), len(src_seqs)))
        names = set((row['schema'], row['name']) for found in (src_tables, tgt_tables, src_seqs, tgt_seqs)
                    for row in found.values()) | set([dbsync.LARGE_OBJECTS])
        unmatched = [pattern for pattern in self.options.include or [] if not any(
            dbsync.selected(name, [pattern], None) for name in names)]
        if unmatched:
            raise dbsync.DbsyncError('include %s matches no table or sequence on either node (give schema.table, '
                                     'e.g. public.orders, or a pattern like public.order*); nothing was compared or '
                                     'changed' % ', '.join(repr(pattern) for pattern in unmatched))
        self.results = []
        for name in sorted(set(src_tables) | set(tgt_tables)):
            self.results.append(self.compare_table(name, src_tables.get(name), tgt_tables.get(name)))
        self.unlogged = [dbsync.table_name(table) for table in dbsync.unlogged_tables(self.src)]
        if self.unlogged:
            self.say('unlogged tables (emptied by a crash of either server, not streamed to a standby): %s'
                     % ', '.join(self.unlogged))
        if dbsync.selected(dbsync.LARGE_OBJECTS, self.options.include, self.options.exclude):
            with self.timer('hash'):
                self.results.append(self.compare_large_objects())
        self.sequences = [dict(sequence=name, source=_seq_state(src_seqs.get(name)),
                               target=_seq_state(tgt_seqs.get(name)), status='different', seq=src_seqs.get(name))
                          for name in sorted(set(src_seqs) | set(tgt_seqs))
                          if _seq_state(src_seqs.get(name)) != _seq_state(tgt_seqs.get(name))]

    def compare_large_objects(self) -> TableResult:
        """Large objects as one entry of the report, keyed by oid."""
        result = dict(table=dbsync.shown_name(*dbsync.LARGE_OBJECTS), status='equal', missing=0, extra=0, changed=0, keys={},
                      rows_copied=0, bytes_copied=0, method='keys')
        src, tgt = self.both(dbsync.large_objects)
        missing, extra, changed = dbsync.localize(src, tgt)  # changed: content, owner or permissions
        result.update(rows_source=len(src), rows_target=len(tgt), _catalog=src, _keys=(missing, extra, changed))
        if missing or extra or changed:
            sample = self.options.sample_size
            result.update(status='different', missing=len(missing), extra=len(extra), changed=len(changed),
                          keys=dict((kind, [dict(oid=str(oid)) for oid in oids[:sample]])
                                    for kind, oids in (('missing', missing), ('extra', extra), ('changed', changed))
                                    if oids),
                          detail='; '.join('large object %d: %s' % (oid, dbsync.describe_large_object_change(
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
        problem = dbsync.schema_difference(src, tgt)
        if problem:
            result.update(status='schema_differs', detail=problem)
            return result
        table_sql = dbsync.table_sql_for(self.src_peer, self.tgt, src, tgt)
        result['_sql'] = table_sql
        if self.options.scope == 'all' and self.options.mode == 'sync':
            result.update(status='different', method='reload', detail='scope=all: copied without comparing')
            return result
        with self.timer('hash'):
            src_buckets, tgt_buckets = self.hash_buckets(table_sql, src)
        result['rows_source'] = sum(n for n, _h in src_buckets.values())
        result['rows_target'] = sum(n for n, _h in tgt_buckets.values())
        differing = dbsync.compare_buckets(src_buckets, tgt_buckets)
        result['_src_buckets'] = src_buckets
        result['_differing'] = differing
        if not differing:
            return result
        result['status'] = 'different'
        if not table_sql.key:
            result.update(method='reload', detail='no primary key or unique NOT NULL key: compared and repaired whole')
            return result
        with self.timer('localize'):
            if table_sql.strategy == 'range' and table_sql.shift > dbsync.FINE_BITS:
                fine = table_sql.narrowed(dbsync.FINE_BITS)
                differing = dbsync.compare_buckets(*self.both(dbsync.fine_buckets, table_sql, fine, differing))
                table_sql = fine
            src_rows, tgt_rows = self.both(dbsync.row_hashes, table_sql, differing)
        missing, extra, changed = (dbsync.key_texts(keys) for keys in dbsync.localize(src_rows, tgt_rows))
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
            return self.both(dbsync.bucket_hashes, table_sql)
        sizes = self.both(dbsync.table_blocks, table)
        if max(sizes) < SLICE_MIN_BLOCKS:
            return self.both(dbsync.bucket_hashes, table_sql)
        parts = dict(source=[], target=[])
        failures = []

        def work(side, conn, blocks):
            try:
                parts[side].append(dbsync.bucket_hashes(conn, table_sql, blocks=blocks))
            except Exception as exc:  # re-raised below in the module's thread
                failures.append(exc)
        threads = [threading.Thread(target=work, args=(side, conn, blocks))
                   for side, size in zip(('source', 'target'), sizes)
                   for conn, blocks in zip(self.hashers[side], dbsync.block_slices(size, jobs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        keyed = bool(table_sql.key)
        return dbsync.merge_buckets(parts['source'], keyed), dbsync.merge_buckets(parts['target'], keyed)

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
    def repair(self):
        run(self.tgt, 'COMMIT')  # the compare snapshot's locks would block TRUNCATE
        for conn in self.hashers['target'][1:]:  # and so would those of the other hashing sessions
            run(conn, 'ROLLBACK')
        self.psql = dbsync.find_psql(self.options.copy_with)
        _node, writer = self.connect(self.target, self.userdb, bulk=True)
        dbsync.pin_settings(writer)
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
            except (ForestPgError, dbsync.DbsyncError, psycopg.Error) as exc:
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
                        dbsync.set_sequence(writer, seq['seq'])
                        seq['status'] = 'set'

    def repair_table(self, writer, result):
        if '_catalog' in result:
            return self.repair_large_objects(writer, result)
        table_sql = result['_sql']
        if result['method'] == 'reload' and self.psql:
            return self.pipe_table(writer, result)
        truncate = result['method'] == 'reload' and not dbsync.referenced_by_foreign_keys(writer, table_sql.table)
        with dbsync.lock_waits_named(writer, table_sql.table, 'AccessExclusiveLock' if truncate else 'RowExclusiveLock',
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
            dbsync.unlink_large_objects(writer, extra + changed)
            result['bytes_copied'] = dbsync.copy_large_objects(self.src_peer, writer, missing + changed, result['_catalog'])
            result['rows_copied'] = len(missing + changed)
            after = dbsync.large_objects(writer)
            wrong = [oid for oid in set(missing + changed + extra) if after.get(oid) != result['_catalog'].get(oid)]
            if wrong:
                raise dbsync.DbsyncError('large objects %s still differ from the source after the repair'
                                         % ', '.join(str(oid) for oid in sorted(wrong)[:10]))

    def pipe_table(self, writer, result):
        """Whole table through psql | psql, checked after its transaction committed."""
        table_sql = result['_sql']
        truncate = not dbsync.referenced_by_foreign_keys(writer, table_sql.table)
        rows, size = dbsync.pipe_table(self.psql, (self.src_node, self.source['userdb']),
                                       (self.tgt_node, self.target['userdb']), self.snapshot, table_sql, truncate, writer,
                                       names=tuple('serverid %d' % node['serverid'] for node in (self.source, self.target)))
        result.update(rows_copied=rows, bytes_copied=size, method='reload (psql)')
        try:
            self.verify(writer, result)
        except dbsync.DbsyncError as exc:
            raise dbsync.DbsyncError('%s; the copy had committed, so run the sync again' % exc)

    def empty(self, writer, table_sql, truncate):
        # TRUNCATE refuses tables that other tables reference, even with FK checks off.
        if truncate:
            run(writer, table_sql.truncate(), action='truncate %s' % dbsync.table_name(table_sql.table))
        else:
            run(writer, table_sql.delete(), action='delete %s' % dbsync.table_name(table_sql.table))

    def copy(self, writer, table_sql, result, keys):
        rows, size = dbsync.copy_rows(self.src_peer, writer, table_sql, keys)
        result['rows_copied'] += rows
        result['bytes_copied'] += size

    def verify(self, writer, result):
        """Inside the repair's transaction: the target must now hash like the source."""
        if '_src_buckets' not in result and result['method'] == 'reload (psql)':
            return  # scope=all through psql: COPY loaded every row it was sent, or nothing
        if '_src_buckets' not in result:  # scope=all: the source was not hashed, compare counts
            count = run(writer, dbsync.sql.SQL('SELECT count(*) AS n FROM {}').format(result['_sql'].relation))[0]['n']
            if count != result['rows_copied']:
                raise dbsync.DbsyncError('%s: %d rows after the copy, %d copied' % (result['table'], count,
                                                                                    result['rows_copied']))
            return
        table_sql = result['_sql']
        if result['method'] == 'keys':  # only the repaired buckets can have changed
            wanted = result['_differing']
            expected = dict((b, result['_src_buckets'][b]) for b in wanted if b in result['_src_buckets'])
            ok = dbsync.bucket_hashes(writer, table_sql, wanted) == expected
        else:
            ok = dbsync.bucket_hashes(writer, table_sql) == result['_src_buckets']
        if not ok:
            raise dbsync.DbsyncError('%s still differs from the source after the repair (was it written meanwhile?)'
                                     % result['table'])

    def failure_result(self):
        """What a failed run reports: the tables compared or repaired so far."""
        return report(self, failed=True)

    def failed(self):
        return any(result['status'] == 'failed' for result in self.results)


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
                sequences=sequences, freeze_window=sync.freeze_window, freeze=sync.freeze_report,
                phases=sync.timer.phases,
                read_duration=sync.poll.report if sync.poll is not None else None,
                unlogged_tables=sync.unlogged,
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
            more = t[kind] - min(len(keys), 5)
            if more > 0:
                line += ' (and %d more)' % more
        if t.get('detail') and t['status'] != 'repaired':
            line += ' -- %s' % t['detail']
        lines.append(line)
    for seq in sequences:
        lines.append('%-40s %-15s source %s target %s' % (seq['sequence'], 'sequence ' + seq['status'],
                                                          seq['source'], seq['target']))
    return lines
