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

from .errors import ForestError
from . import dbsync as d
from .cluster_status import merge, read_pair
from .dbsync_job import Sync, report
from .forest_pg import Node, close_all, run
from .mngdb import (
    create_database, refuse_if_applications, mngdb_name, set_validity)

# One recovery of a pair at a time: a session-level advisory lock on the source's mngdb.
LOCK_SQL = "SELECT pg_try_advisory_lock(hashtext('pgforest.cluster recovery')) AS locked"

# What to do instead, by cluster state.
RIGHT_TOOL = {
    'healthy': 'Nothing to recover.',
    'down': 'There is no valid node to recover from: restore both nodes from a backup, or bring the valid '
            'node back first.',
    'recovering': 'A recovery or sync is running, or was interrupted: let it finish or cancel it, then retry.',
    'split_brain': 'Decide which node keeps its writes (see the reason), mark the other broken on both nodes, '
                   'then recover it.',
    'misconfigured': 'Make server_info identical on both nodes first (forest_mngdb servers=... overwrite=true).',
}


class RecoveryError(ForestError):
    pass


class NothingToRecover(Exception):
    """The pair is healthy: a recovery has nothing to do (ok, not a failure, so CI can run it idempotently)."""


class Recovery(object):
    """What offline and online recovery share: preconditions, lock, connections, progress."""

    def __init__(self, params, check_mode=False, log=None):
        self.p = params
        self.check_mode = check_mode
        self.log_line = log
        self.userdb = params['userdb']
        self.mngdb = mngdb_name(self.userdb)
        self.started = time.monotonic()
        self.phases = {}
        self.progress = []
        self.conns = []
        self.bytes_copied = 0
        self.source = self.target = None
        self.sync_result = None

    def say(self, text):
        line = '%7.2fs %s' % (time.monotonic() - self.started, text)
        self.progress.append(line)
        if self.log_line:
            self.log_line(line)

    def phase(self, name, function, *args):
        started = time.monotonic()
        try:
            return function(*args)
        finally:
            self.phases[name] = round(time.monotonic() - started, 3)

    # --- preconditions -------------------------------------------------------------
    def choose(self, online=False):
        """(source, target) node dicts from the merged status, or a clear refusal.

        Offline recovery repairs the target over SQL, so it must answer; online
        recovery replaces its data directory, so it may be down, but the source
        must be a primary that can stream to it."""
        status = merge(list(read_pair(self.p, self.mngdb).values()))
        state = status['cluster_state']
        if state == 'healthy':
            raise NothingToRecover('Nothing to recover: the pair is healthy (%s). Whether the user databases hold '
                                   'the same data is another question: forest_dbsync mode=compare answers it'
                                   % status['recommended_action']['reason'])
        if state != 'degraded':
            detail = '; '.join(status['problems']) or status['recommended_action']['reason']
            raise RecoveryError('cannot recover: the pair is %s (%s). %s Nothing was changed.'
                                % (state, detail, RIGHT_TOOL[state]))
        by_sid = dict((node['serverid'], node) for node in status['nodes'])
        broken = [sid for sid, node in by_sid.items() if node['validity'] == -1]
        if len(broken) != 1:
            action = status['recommended_action']
            raise RecoveryError('cannot recover yet: serverid %s does not answer but is not marked broken. Mark it '
                                'once you know it is the broken one (%s), then run the recovery again. Nothing was '
                                'changed' % (action.get('target'), action.get('command')))
        target, source = by_sid[broken[0]], by_sid[1 - broken[0]]
        if self.p['target'] is not None and self.p['target'] != target['serverid']:
            raise RecoveryError('serverid %d is valid and serverid %d is broken: recovering serverid %d from the '
                                'broken node would copy the wrong data; nothing was changed'
                                % (source['serverid'], target['serverid'], self.p['target']))
        if online and source['in_recovery']:
            raise RecoveryError('serverid %d is a standby: online recovery copies from a primary. Recover offline, '
                                'or promote serverid %d first' % (source['serverid'], source['serverid']))
        if not target['reachable'] and not online:
            raise RecoveryError('serverid %d (the broken node) does not answer: start its PostgreSQL first, then '
                                'recover it (its data will be replaced)' % target['serverid'])
        self.source, self.target = source, target
        return source, target

    def connect(self, node_dict, dbname, bulk=False):
        node = self.node(node_dict)
        conn = node.connect(dbname, bulk=bulk)
        self.conns.append(conn)
        return node, conn

    def node(self, node_dict):
        return Node.from_params(self.p).sibling(node_dict['host'], node_dict['port'])

    def lock_pair(self):
        _node, conn = self.connect(self.source, self.mngdb)
        if not run(conn, LOCK_SQL)[0]['locked']:
            raise RecoveryError('another recovery of this pair is running (advisory lock held on serverid %d); '
                                'nothing was changed' % self.source['serverid'])

    def lock_and_choose_again(self, online=False):
        """Take the pair's lock, then read the state again: a recovery that held the lock
        a moment ago may have finished, and this one must not run a second time."""
        self.lock_pair()
        target = self.target['serverid']
        self.choose(online)
        if self.target['serverid'] != target:
            raise RecoveryError('the pair changed while this recovery waited for its lock (serverid %d is now the '
                                'broken one); nothing was changed, run it again' % self.target['serverid'])

    def failure_result(self):
        """What a failed run reports (backups inherit this): the steps done and their seconds."""
        return dict(progress=self.progress, phases=self.phases)

    def close(self):
        close_all(self.conns)


class OfflineRecovery(Recovery):
    """One offline recovery of the broken node from the valid one, applications stopped."""

    def refuse_if_applications(self):
        conns = [('serverid %d' % node['serverid'], self.connect(node, 'postgres')[1])
                 for node in (self.source, self.target)]
        refuse_if_applications(conns, [self.userdb, self.mngdb], RecoveryError,
                               'offline recovery needs the applications stopped', 'Stop them (or recover online)')

    # --- repair ------------------------------------------------------------------------
    def repair_by_diff(self):
        params = dict(self.p, mode='sync', scope='diff', online=False, source=self.source['serverid'],
                      target=self.target['serverid'], include=None, exclude=None)
        sync = Sync(params, self.check_mode, self.log_line)
        try:
            sync.pair()
            sync.open_snapshots(sync.source, sync.target)
            sync.compare()
            sync.repair(self.node(self.target))
            self.sync_result = report(sync)
        finally:
            sync.close()
        self.bytes_copied = self.sync_result['summary']['bytes_copied']
        if sync.failed() or (not self.check_mode and not self.sync_result['equal']):
            raise RecoveryError('the repair did not make serverid %d equal to serverid %d (%s); it stays marked '
                                'broken' % (self.target['serverid'], self.source['serverid'],
                                            '; '.join(self.sync_result['report'])))
        self.say('repaired by diff: %s' % self.sync_result['summary'])

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
            run(admin, d.sql.SQL('DROP DATABASE IF EXISTS {}').format(d.ident(dbname)), action='drop ' + dbname)
            create_database(admin, dbname)
            reader = [pg_dump, '--no-password', '--dbname=' + src_node.conninfo_string(dbname, bulk=True)]
            writer = [psql, '--no-psqlrc', '--quiet', '--set=ON_ERROR_STOP=1', '--single-transaction',
                      '--dbname=' + tgt_node.conninfo_string(dbname, bulk=True)]
            pipe = d.Pipe(reader, src_node.child_env(os.environ), writer, tgt_node.child_env(os.environ)).run(
                'pg_dump | psql of %s (serverid %d now has it empty or partial; it stays marked broken: run the '
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
        self.say('serverid %d marked valid (1) on both nodes' % self.target['serverid'])

    def run(self):
        self.choose()
        self.say('offline recovery of serverid %d from serverid %d by %s'
                 % (self.target['serverid'], self.source['serverid'], self.p['method']))
        self.lock_and_choose_again()
        self.refuse_if_applications()
        if self.p['method'] == 'dump':
            self.phase('copy', self.repair_by_dump)
        else:
            self.phase('copy', self.repair_by_diff)
        self.phase('validity', self.mark_valid)
        return self.result()

    def result(self):
        return dict(mode='offline', method=self.p['method'],
                    source=self.source and self.source['serverid'], target=self.target and self.target['serverid'],
                    phases=self.phases, bytes_copied=self.bytes_copied, progress=self.progress,
                    dbsync=self.sync_result, seconds=round(time.monotonic() - self.started, 3))
