# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bringing a broken node back (guide §8).

What both modes share (Recovery): the preconditions from the merged status, the
per-pair lock, progress lines.  Offline recovery (8.1, OfflineRecovery): the
applications are stopped; the broken node (-1) is repaired from the valid one,
by forest_dbsync (`diff`, only what differs) or the guide's way (`dump`: drop and
`pg_dump | psql` both databases), then marked valid in both management
databases.  Online recovery is in online_recovery.py.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import NamedTuple, Optional

from .child_pipe import Pipe
from .errors import RecoveryError
from .dbsync_job import Sync, SyncOptions
from .forest_pg import ident, run, run_without_monitors, sql
from .job import Job
from .options import options_from
from .pair_choice import recovery_pair
from .wording import pairs
from .mngdb import create_database, refuse_if_applications, set_validity
from .node_identity import accept_node

# One recovery of a pair at a time: a session-level advisory lock on the source's mngdb.
LOCK_SQL = "SELECT pg_try_advisory_lock(hashtext('pgforest.cluster recovery')) AS locked"


class RecoveryOptions(NamedTuple):
    """What a recovery does, apart from where (the connection options, and for online the local
    server's: LocalServer) -- forest_recover's options, typed, built once by the module.  No
    defaults here: each option has one, in the module's argument spec."""
    mode: str                           # offline: applications stopped; online: they keep writing
    phase: str                          # online: all, a phase of online_phases.PHASES, or cancel
    method: str                         # offline: diff or dump; online: basebackup or resync
    target: Optional[int]               # the serverid the DBA expects to recover
    max_rate: Optional[str]             # online: pg_basebackup --max-rate
    include_valid: list                 # online: forest databases still valid on the target, replaced anyway
    replace_databases: list             # online: other databases the copy may replace
    notice_wait: Optional[float]        # online: the freeze's notice time (None: mngdb_read_duration, lowered)
    freeze_read_duration: int           # online, without notice_wait: mngdb_read_duration meanwhile
    idle_wait_timeout: float
    catch_up_timeout: float
    replay_wait_timeout: float
    copy_with: str                      # offline by diff: the forest_dbsync options
    sample_size: int
    reload_fraction: float

    from_params = classmethod(options_from)


class Recovery(Job):
    """What offline and online recovery share: the pair's choice and lock."""

    def __init__(self, params, options, check_mode=False, log=None):
        super(Recovery, self).__init__(params, check_mode, log)
        self.options = options
        self.bytes_copied = 0
        self.source = self.target = None
        self.sync_result = None
        self.lock_sessions = {}  # management database: the session holding the pair's lock there

    # --- preconditions -------------------------------------------------------------
    def choose(self, online=False):
        """(source, target) node dicts: pair_choice.recovery_pair of the pair as it is now."""
        self.source, self.target = recovery_pair(self.read_status(), online, self.options.target)
        return self.source, self.target

    def locked_mngdbs(self):
        """The management databases whose lock this recovery holds (an advisory lock is per database)."""
        return [self.mngdb]

    def lock_pair(self):
        """The lock in each of locked_mngdbs(), each held by a session of its own for the job's life
        (taking it again in a live session is a no-op: an advisory lock is re-entrant per session)."""
        for mngdb in self.locked_mngdbs():
            held = self.lock_sessions.get(mngdb)
            if held is not None and not held.closed:
                continue
            _node, conn = self.connect(self.source, mngdb)
            if not run(conn, LOCK_SQL)[0]['locked']:
                raise RecoveryError('another recovery of this pair is running (advisory lock held in %s on serverid '
                                    '%d); nothing was changed' % (mngdb, self.source['serverid']))
            self.lock_sessions[mngdb] = conn

    def lock_and_choose_again(self, online=False):
        """Take the pair's lock, then read the state again: a recovery that held the lock
        a moment ago may have finished, and this one must not run a second time."""
        self.lock_pair()
        target = self.target['serverid']
        self.choose(online)
        if self.target['serverid'] != target:
            raise RecoveryError('the pair changed while this recovery waited for its lock (serverid %d is now the '
                                'broken one); nothing was changed, run it again' % self.target['serverid'])


class OfflineRecovery(Recovery):
    """One offline recovery of the broken node from the valid one, applications stopped."""

    def refuse_if_applications(self):
        conns = [('serverid %d' % node['serverid'], self.connect(node, 'postgres')[1])
                 for node in (self.source, self.target)]
        refuse_if_applications(conns, [self.userdb, self.mngdb], RecoveryError,
                               'offline recovery needs the applications stopped', 'Stop them (or recover online)')

    # --- repair ------------------------------------------------------------------------
    def repair_by_diff(self):
        options = SyncOptions(mode='sync', scope='diff', online=False, copy_with=self.options.copy_with,
                              sample_size=self.options.sample_size, reload_fraction=self.options.reload_fraction)
        sync = Sync(self.p, options, self.check_mode, self.log_line)
        try:
            self.sync_result = sync.run(self.source, self.target)
        finally:
            sync.close()
        self.bytes_copied = self.sync_result['summary']['bytes_copied']
        if sync.failed() or (not self.check_mode and not self.sync_result['equal']):
            raise RecoveryError('the repair did not make serverid %d equal to serverid %d (%s); it stays marked '
                                'broken' % (self.target['serverid'], self.source['serverid'],
                                            '; '.join(self.sync_result['report'])))
        summary = self.sync_result['summary']
        self.say('repaired by diff: tables %s; %d rows, %d bytes copied in %s s' % (
            pairs(summary['tables']), summary['rows_copied'], summary['bytes_copied'], summary['seconds']))

    def repair_by_dump(self):
        """The guide's way: drop both databases on the target, pg_dump | psql them from the source."""
        pg_dump, psql = shutil.which('pg_dump'), shutil.which('psql')
        if not pg_dump or not psql:
            raise RecoveryError('method=dump needs pg_dump and psql on PATH; install the PostgreSQL client, or use '
                                'method=diff')
        if self.check_mode:
            self.say('would drop %s and %s on serverid %d and restore them from serverid %d'
                     % (self.userdb, self.mngdb, self.target['serverid'], self.source['serverid']))
            return
        for conn in self.conns:  # our own sessions on the databases about to be dropped
            conn.close()
        self.conns = []
        src_node, _c = self.connect(self.source, 'postgres')
        tgt_node, admin = self.connect(self.target, 'postgres')
        for dbname in (self.userdb, self.mngdb):
            run_without_monitors(admin, dbname, sql.SQL('DROP DATABASE IF EXISTS {}').format(ident(dbname)),
                                 action='drop ' + dbname)
            create_database(admin, dbname)
            reader = [pg_dump, '--no-password', '--dbname=' + src_node.conninfo_string(dbname, bulk=True)]
            writer = [psql, '--no-psqlrc', '--quiet', '--set=ON_ERROR_STOP=1', '--single-transaction',
                      '--dbname=' + tgt_node.conninfo_string(dbname, bulk=True)]
            # psql restores in one transaction, and the pipe kills it when pg_dump fails: never a partial copy.
            pipe = Pipe(reader, src_node.child_env(os.environ), writer, tgt_node.child_env(os.environ),
                        sides=('pg_dump on serverid %d' % self.source['serverid'],
                               'psql on serverid %d' % self.target['serverid'])).run(
                'pg_dump | psql of %s (serverid %d now has it empty; it stays marked broken: run the '
                'recovery again)' % (dbname, self.target['serverid']))
            self.bytes_copied += pipe.moved
            self.say('%s: %d bytes dumped from serverid %d and restored'
                     % (dbname, pipe.moved, self.source['serverid']))
        self.lock_pair()  # the source's lock went with the closed session

    def mark_valid(self):
        if self.check_mode:
            self.say('would set udb_validity of serverid %d to 1 on both nodes' % self.target['serverid'])
            return
        for node in (self.source, self.target):
            _n, conn = self.connect(node, self.mngdb)
            set_validity(conn, self.target['serverid'], 1)
        views = [self.connect(node, self.mngdb)[1] for node in (self.source, self.target)]
        accept_node(self.target['serverid'], views[1], views)  # the pair accepts the repaired node as it is
        self.say('serverid %d marked valid (1) on both nodes' % self.target['serverid'])

    def run(self):
        self.choose()
        self.say('offline recovery of serverid %d from serverid %d by %s'
                 % (self.target['serverid'], self.source['serverid'], self.options.method))
        self.lock_and_choose_again()
        self.refuse_if_applications()
        if self.options.method == 'dump':
            self.timed('copy', self.repair_by_dump)
        else:
            self.timed('copy', self.repair_by_diff)
        self.timed('validity', self.mark_valid)
        return self.result()

    def result(self):
        return dict(mode='offline', method=self.options.method,
                    source=self.source and self.source['serverid'], target=self.target and self.target['serverid'],
                    phases=self.phases, bytes_copied=self.bytes_copied, progress=self.progress,
                    dbsync=self.sync_result, seconds=round(time.monotonic() - self.started, 3))
