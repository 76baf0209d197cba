# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The consistent snapshots a compare reads both nodes in: offline (applications stopped), or
online inside a short write freeze with the drivers' poll interval shortened, no write
straddling them; the sessions that hash in them (`jobs` per node), and running one call on
both nodes' sessions at once."""

from __future__ import annotations

from .fan_out import all_of
from .forest_pg import run, sql
from .mngdb import refuse_if_applications
from .poll_interval import PollInterval, freeze_notice
from .quiesce import FreezeAgain, Quiesce
from .sync_catalog import DbsyncError
from .sync_hash import pin_settings
from .sync_sequences import read_sequences

# Below this many blocks (8 MB) a table is hashed by one session per node whatever `jobs` says.
SLICE_MIN_BLOCKS = 1024
# What one try of the snapshots takes at most (milliseconds here): a try begins only if the freeze has it.
SNAPSHOT_SECONDS = 0.1


class SnapshotJob(object):
    """Reading both nodes' user databases in snapshots of the same moment, for a job.Job it is mixed
    into (its connect, say, userdb and mngdb; class Sync(SnapshotJob, Job)), so this layer needs no Job:
    open_snapshots() once self.source and self.target (status node dicts) are set; self.options is
    a SyncOptions."""

    def __init__(self, params, options, check_mode=False, log=None):
        super(SnapshotJob, self).__init__(params, check_mode, log)
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

    def open_snapshots(self):
        self.src_node, self.src = self.connect(self.source, self.source['userdb'], bulk=True)
        self.tgt_node, self.tgt = self.connect(self.target, self.target['userdb'], bulk=True)
        _node, self.src_peer = self.connect(self.source, self.source['userdb'], bulk=True)  # hashes beside src
        for conn in (self.src, self.tgt, self.src_peer):
            pin_settings(conn)
        if self.options.source_snapshot:
            self.begin_snapshots(self.options.source_snapshot)
        elif self.options.online:
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
                pin_settings(conn)
                run(conn, 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY')
                run(conn, sql.SQL('SET TRANSACTION SNAPSHOT {}').format(sql.Literal(snapshots[side])))
                self.hashers[side].append(conn)
        self.say('%d sessions per node hash tables of %d MB and more in slices'
                 % (self.options.jobs, SLICE_MIN_BLOCKS * 8 >> 10))

    def refuse_if_applications(self):
        conns = [('serverid %d' % self.source['serverid'], self.src), ('serverid %d' % self.target['serverid'], self.tgt)]
        refuse_if_applications(conns, [self.userdb], DbsyncError,
                               'an offline compare needs the applications of %s stopped' % self.userdb,
                               'Stop them, or compare with online=true (a short write freeze)')

    def begin_snapshots(self, source_snapshot=None):
        """source_snapshot: a snapshot another session exported (a resync's logical slot), which the
        source's sessions read in instead of one of their own; the target, which nobody writes, takes its own."""
        for conn in (self.src, self.tgt):
            run(conn, 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY')
            if conn is self.src and source_snapshot:
                run(conn, sql.SQL('SET TRANSACTION SNAPSHOT {}').format(sql.Literal(source_snapshot)))
            run(conn, 'SELECT 1')  # takes the snapshot now
        # The second source connection shares the first one's snapshot.
        snapshot = self.snapshot = run(self.src, 'SELECT pg_export_snapshot() AS id')[0]['id']
        run(self.src_peer, 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY')
        run(self.src_peer, sql.SQL('SET TRANSACTION SNAPSHOT {}').format(sql.Literal(snapshot)))

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
            sequences = tuple(read_sequences(conn, self.options.include, self.options.exclude)
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

    def both(self, function, *args):
        """function(conn, *args) on the source's and the target's snapshot sessions at the same time:
        (source's value, target's value)."""
        values = all_of(dict(source=lambda: function(self.src_peer, *args),
                             target=lambda: function(self.tgt, *args)))
        return values['source'], values['target']
