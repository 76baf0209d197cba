# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An online recovery's cut: inside the write freeze (quiesce) the standby replays the source's
last position and is promoted; what else took a transaction id on the source meanwhile is looked
up in the WAL (freeze_writes) and refused if it changed user data of a forest database; the
sequences and the unlogged tables' contents are copied; the target is made valid on both nodes."""

from __future__ import annotations

import time

from . import freeze_writes
from .errors import RecoveryError
from .forest_pg import ForestPgError, ident, run, sql
from .mngdb import mngdb_name, set_validity
from .node_identity import accept_node
from .poll_interval import freeze_notice
from .quiesce import OWN_XID_SQL, Quiesce
from .standby import Standby
from .sync_catalog import table_name, unlogged_tables
from .sync_copy import copy_relation
from .sync_sequences import read_sequences, set_sequence

WAL_POSITION_SQL = "SELECT pg_current_wal_lsn()::text AS lsn"


def copy_sequences(source, target):
    """WAL logs sequences ahead: a promoted copy would hand out other ids than the source."""
    sequences = read_sequences(source)
    for seq in sequences.values():
        set_sequence(target, seq)
    return len(sequences)


class Cut(object):
    """The cut of one online recovery.  `job` is the OnlineRecovery it works for: its connections
    (connect), progress lines (say), the pair (source, target: status node dicts), the scope
    (userdbs, replaced), options, local server and poll interval; `report` gets the cut's figures
    as they come, so a failure reports them too."""

    def __init__(self, job, report):
        self.job = job
        self.report = report
        self.source, self.target = job.source, job.target
        self.window = None      # seconds from validity 0 to 1, once the freeze ended

    def label(self, userdb):
        return 'serverid %d %s' % (self.source['serverid'], mngdb_name(userdb))

    def run(self):
        job, options = self.job, self.job.options
        _s, src_admin = job.connect(self.source, 'postgres')
        src_users = dict((userdb, job.connect(self.source, userdb)[1]) for userdb in job.userdbs)
        src_mngdbs = dict((userdb, job.connect(self.source, mngdb_name(userdb))[1]) for userdb in job.userdbs)
        _t, tgt_admin = job.connect(self.target, 'postgres')
        standby = Standby(self.source['serverid'], self.target['serverid'], src_admin, tgt_admin)
        if not standby.is_standby():
            raise RecoveryError('serverid %d is not a standby any more: someone promoted it outside the recovery'
                                % self.target['serverid'])
        if job.poll is not None:  # lowered by the base phase (or again now, if someone put it back)
            labelled = dict((self.label(userdb), conn) for userdb, conn in src_mngdbs.items())
            job.poll.lower(labelled)
            job.poll.wait_for_drivers(labelled)
        self.report['lag_before_freeze'] = standby.lag()
        standby.catch_up(options.catch_up_timeout, self.report['lag_before_freeze'])
        unlogged = self.unlogged(src_users)
        notice = options.notice_wait
        if notice is None:  # every database's drivers must notice: the longest poll interval
            notice = freeze_notice(src_mngdbs.values())
        self.report['notice_seconds'] = notice
        job.say('write freeze: serverid %d to 0 in %s, waiting %.1fs for drivers to notice'
                % (self.target['serverid'], ', '.join(mngdb_name(userdb) for userdb in job.userdbs), notice))
        freeze = Quiesce(dict((self.label(userdb), conn) for userdb, conn in src_mngdbs.items()),
                         list(src_users.values()), self.target['serverid'],
                         notice, options.idle_wait_timeout, final_validity=1, watch=src_admin, say=job.say)
        try:
            freeze.run(lambda frozen: self.promote_in_freeze(frozen, standby, src_users, src_mngdbs, unlogged))
        finally:
            self.window = self.report['freeze_window'] = freeze.window
            self.report.update(waited_before_freeze=round(freeze.waited_before, 3),
                               freezes_undone=[undone['window'] for undone in freeze.undone])

    def unlogged(self, src_users):
        """[(userdb, its unlogged tables, a bulk connection to it on the source)] where it has some."""
        found = []
        for userdb, src_user in src_users.items():
            tables = unlogged_tables(src_user)
            if tables:
                found.append((userdb, tables, self.job.connect(self.source, userdb, bulk=True)[1]))
                self.job.say('%s: %d unlogged table(s), %d MB: a physical copy leaves them empty, so they are copied '
                             'inside the write freeze: %s' % (userdb, len(tables), sum(t['bytes'] for t in tables) >> 20,
                                                              ', '.join(table_name(t) for t in tables)))
        return found

    def promote_in_freeze(self, freeze, standby, src_users, src_mngdbs, unlogged=()):
        job, src_admin = self.job, standby.src_admin
        before = freeze.own_xid  # taken by the idle check, just before its last look
        position = run(src_admin, WAL_POSITION_SQL)[0]
        self.report['lag_at_cut'] = standby.lag()
        waited = time.monotonic()
        standby.wait_replayed(position['lsn'], job.options.replay_wait_timeout)
        self.report['replay_wait_seconds'] = round(time.monotonic() - waited, 3)
        promoted = time.monotonic()
        start_timeout = job.server.start_timeout
        if not run(standby.tgt_admin, 'SELECT pg_promote(true, %s) AS done', [start_timeout])[0]['done']:
            raise RecoveryError('serverid %d did not finish promotion within %ss (see %s)'
                                % (self.target['serverid'], start_timeout, job.server.log_file))
        self.report['promote_seconds'] = round(time.monotonic() - promoted, 3)
        after = run(src_admin, OWN_XID_SQL, action='take a transaction id')[0]['xid']
        self.check_no_forest_write(src_admin, src_users, src_mngdbs, before, after, position['lsn'])
        copied = 0
        tgt_mngdbs = []
        for userdb, src_user in src_users.items():
            _t, tgt_user = job.connect(self.target, userdb)
            _t, tgt_mngdb = job.connect(self.target, mngdb_name(userdb))
            copied += copy_sequences(src_user, tgt_user) + copy_sequences(src_mngdbs[userdb], tgt_mngdb)
            tgt_mngdbs.append(tgt_mngdb)
        self.report['sequences_copied'] = copied
        for userdb, tables, src_bulk in unlogged:
            self.copy_unlogged(userdb, src_bulk, tables)
        for tgt_mngdb in tgt_mngdbs:
            set_validity(tgt_mngdb, self.target['serverid'], 1)
        for src_mngdb, tgt_mngdb in zip(src_mngdbs.values(), tgt_mngdbs):  # the pair accepts the copy as this node
            accept_node(self.target['serverid'], tgt_mngdb, [src_mngdb, tgt_mngdb])

    def check_no_forest_write(self, src_admin, src_users, src_mngdbs, before, after, position):
        """Other transactions than ours may have taken ids on the source between the idle check and
        the promotion (freeze_writes): a write of user data into a forest database after the
        position the target was promoted at is lost on the target (refused, rolled back); statistics,
        vacuum and writes elsewhere (postgres, or a database the copy replaces as asked) are not."""
        if after == before + 1:
            return
        lost = 'a transaction wrote to serverid %d during the write freeze (transaction ids %d to %d), after the ' \
               'position serverid %d had replayed' % (self.source['serverid'], before + 1, after - 1,
                                                      self.target['serverid'])
        cause = ': a client ignores udb_validity=0 (not a PostgresForest driver, or its notice time is longer ' \
                'than notice_wait)'
        conns = dict(src_users)
        conns.update((mngdb_name(userdb), conn) for userdb, conn in src_mngdbs.items())
        try:
            oids = dict((row['datname'], row['oid']) for row in run(
                src_admin, 'SELECT oid::int8 AS oid, datname FROM pg_database WHERE datname = ANY(%s)', [list(conns)]))
            written, harmless, still_open = freeze_writes.look(
                src_admin, before, after, position, dict((oids[name], (name, conn)) for name, conn in conns.items()))
        except (ForestPgError, freeze_writes.FreezeWritesError) as exc:
            raise RecoveryError('%s%s (could not read the WAL to tell what they wrote: %s)' % (lost, cause, exc))
        if written:
            raise RecoveryError('%s, into %s%s' % (lost, freeze_writes.describe_lost(written), cause))
        if still_open:
            raise RecoveryError('%s: a transaction is still open in a forest database and may write there yet: %s%s'
                                % (lost, freeze_writes.describe_open(still_open), cause))
        self.report['other_writes_in_freeze'] = True
        self.report['writes_not_lost'] = harmless
        self.job.say('%d other transaction(s) took an id on serverid %d during the freeze; none changed user data '
                     'of a forest database (statistics, vacuum, or postgres%s, which the copy replaces)'
                     % (after - before - 1, self.source['serverid'], ''.join(' or ' + name for name in self.job.replaced)))

    def copy_unlogged(self, userdb, src_bulk, tables):
        """Inside the freeze (the source is not written): the contents of the unlogged
        tables, which the promoted copy has empty, in one transaction."""
        started = time.monotonic()
        rows = 0
        _t, tgt_user = self.job.connect(self.target, userdb, bulk=True)
        with tgt_user.transaction():
            run(tgt_user, 'SET LOCAL session_replication_role = replica', action='disable triggers')
            for table in tables:
                run(tgt_user, sql.SQL('DELETE FROM {}').format(ident(table['schema'], table['name'])),
                    action='empty unlogged table %s' % table_name(table))
                rows += copy_relation(src_bulk, tgt_user, table)[0]
        report = self.report
        report.update(unlogged_tables=report.get('unlogged_tables', 0) + len(tables),
                      unlogged_rows=report.get('unlogged_rows', 0) + rows,
                      unlogged_seconds=round(report.get('unlogged_seconds', 0) + time.monotonic() - started, 3))
        self.job.say('%s: copied %d rows of %d unlogged table(s) in %.3fs'
                     % (userdb, rows, len(tables), time.monotonic() - started))
