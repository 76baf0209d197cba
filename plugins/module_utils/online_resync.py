# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Online recovery by resync (forest_recover method=resync; docs/recovery.md): the broken node keeps its
own data directory, and only what changed while it was out moves.  The phases of online_phases
(base, cut, cleanup; cancel), each with the state file of recovery_workspace:

base     refusals first (wal_level, tables without a replica identity); then per forest user database:
         on the source a publication and a logical slot whose exported snapshot is the reference point,
         the target compared against that snapshot and repaired with dbsync's engine (the applications
         keep writing to the source; the target is -1, so nobody writes to it), then a subscription on
         the target that applies everything committed since the snapshot (stage `standby`: it follows);
cut      the subscriptions within 1 MB, then inside the usual write freeze (quiesce): every subscription
         has applied the source's position, the subscriptions go, nothing else wrote to the source
         (online_cut's check), sequences, large objects, unlogged tables and the management databases
         copied, the schemas still alike (DDL meanwhile fails the cut), the target 1 on both nodes;
cleanup  the slots and publications dropped on the source, the workspace removed;
rollback the source untouched (no slot, publication; the freeze undone), the target -1 with no
         subscription or replication origin, stopped again if it was stopped before.
"""

from __future__ import annotations

import os
import time

from .errors import RecoveryError
from .dbsync_job import Sync, SyncOptions
from .forest_pg import ForestPgError, close_all, run
from .mngdb import mngdb_name, set_validity
from .node_identity import accept_node
from .online_cut import WAL_POSITION_SQL, copy_sequences
from .online_finish import ROLLBACK_RETRY_SECONDS, Finish, views_of_target
from .online_phases import CANCELLED, STARTED, phase_named
from .online_recovery import OnlineRecovery
from .poll_interval import freeze_notice
from .quiesce import OWN_XID_SQL, Quiesce
from .recovery_workspace import Workspace, ignore_interrupts
from .local_server import LocalServer
from . import resync_logical as logical
from .resync_steps import (copy_large_objects_now, copy_whole_database, create_new_tables, drop_tables_gone,
                           refresh_matviews, schema_changes)
from .wait import WaitTimeout, wait_until


class ResyncRecovery(OnlineRecovery):
    """The phases of one resync of the broken node, run on its host."""

    method = 'resync'
    COPIES_SERVER = False  # every forest user database of the source; the target's other databases stay
    ROLLED_BACK = ('serverid %d keeps its own data directory and stays marked broken (-1), serverid %d is untouched '
                   'and valid; no replication slot, publication, subscription or replication origin is left')

    def __init__(self, params, options, check_mode=False, log=None):
        super().__init__(params, options, check_mode, log)
        self.resync_report = {}   # per user database: what the compare repaired

    def local_server(self, source):
        """This host's server, kept: its own binaries (the data directory's major), no copy to check."""
        self.server = LocalServer.from_params(self.p)
        self.workspace = Workspace(self.server)
        if source is None:
            return
        if not self.server.initialized():
            raise RecoveryError('%s is not an initialized data directory: method=resync keeps the node\'s own data '
                                'directory, so it needs one; recover with method=basebackup. Nothing was changed'
                                % self.server.data_dir)
        _node, admin = self.connect(source, 'postgres')
        source_dir = run(admin, 'SHOW data_directory')[0]['data_directory']
        if os.path.realpath(source_dir) == os.path.realpath(self.server.data_dir):
            raise RecoveryError('%s is the data directory of serverid %d, the valid source: run the recovery on the '
                                'broken node\'s host with its data_dir. Nothing was changed'
                                % (self.server.data_dir, source['serverid']))

    # --- base: publication, slot, compare and repair, subscription ------------------------------------
    def refusals(self, src_admin):
        """What would make the resync fail or hurt the source, before anything changes."""
        self.refuse_wal_level(dict(source=src_admin))
        try:
            tgt_admin = self.node(self.target).connect('postgres')
        except ForestPgError:  # stopped: checked once the resync has started it
            pass
        else:
            with tgt_admin:
                self.refuse_wal_level(dict(target=tgt_admin))
        missing = {}
        for userdb in self.userdbs:
            _s, conn = self.connect(self.source, userdb)
            missing[userdb] = logical.publishable(conn)[1]
        refusal = logical.identity_refusal(missing)
        if refusal:
            raise RecoveryError(refusal)

    def refuse_wal_level(self, admins):
        """{'source' or 'target': an admin connection}: each node's wal_level must be logical (the target's
        too: it is a source itself one day)."""
        refusal = logical.wal_level_refusal(dict(
            ('serverid %d' % getattr(self, side)['serverid'], run(conn, 'SHOW wal_level')[0]['wal_level'])
            for side, conn in admins.items()))
        if refusal:
            raise RecoveryError(refusal)

    def base(self):
        src_node, src_admin = self.connect(self.source, 'postgres')
        self.refusals(src_admin)
        if self.check_mode:
            self.say('would resync serverid %d from serverid %d (user databases %s): publication, slot, compare and '
                     'repair, subscription' % (self.target['serverid'], self.source['serverid'], ', '.join(self.userdbs)))
            return
        polled = self.checked_poll_conns()
        self.state = dict(stage=STARTED, method=self.method, source=self.source, target=self.target, slots={},
                          slot='pgforest_recovery_%d' % self.target['serverid'], userdbs=self.userdbs,
                          replaced_databases=[], data_dir=self.server.data_dir, was_running=self.server.running(),
                          moved_aside=False, source_view_of_target=views_of_target(self))
        self.workspace.create()
        self.workspace.save(self.state)
        if self.poll is not None:
            self.poll.lower(polled)
        if not self.state['was_running']:
            self.server.start()
            self.say('started the server of %s (it keeps its data directory)' % self.server.data_dir)
        self.refuse_wal_level(dict(target=self.connect(self.target, 'postgres')[1]))
        self.workspace.write_passfile(src_node)
        for userdb in self.userdbs:
            self.resync_database(src_node, userdb)
        self.state['stage'] = phase_named('base').leaves
        self.workspace.save(self.state)

    def resync_database(self, src_node, userdb):
        _s, src = self.connect(self.source, userdb)
        _t, tgt = self.connect(self.target, userdb)
        dboid = run(src, 'SELECT oid::int8 AS oid FROM pg_database WHERE datname = current_database()')[0]['oid']
        slot = logical.slot_name(self.target['serverid'], dboid)
        self.state['slots'][userdb] = slot
        self.workspace.save(self.state)  # before the slot exists: a rollback drops whatever of it was made
        if logical.drop_subscription(tgt, slot) | logical.drop_slot(src, slot):
            self.say('%s: dropped a subscription or slot %s an earlier run left' % (userdb, slot))
        self.copy_new_tables(src_node, userdb, src, tgt)
        tables = logical.publishable(src)[0]
        logical.create_publication(src, tables)
        replication = src_node.connect(userdb, replication=True)
        try:
            lsn, snapshot = logical.create_slot(replication, slot)
            self.say('%s: publication of %d tables, slot %s at %s; comparing serverid %d against its snapshot'
                     % (userdb, len(tables), slot, lsn, self.target['serverid']))
            self.compare_and_repair(userdb, snapshot)
        finally:
            replication.close()  # the snapshot is needed no more; the slot stays
        refreshed = refresh_matviews(src, tgt)
        if refreshed:
            self.say('%s: refreshed %d materialized view(s) populated on serverid %d: %s'
                     % (userdb, len(refreshed), self.source['serverid'], ', '.join(refreshed)))
        logical.create_subscription(tgt, slot, logical.subscription_conninfo(src_node, userdb, self.workspace.passfile))
        self.say('%s: subscription %s on serverid %d applies what serverid %d commits from %s on'
                 % (userdb, slot, self.target['serverid'], self.source['serverid'], lsn))

    def copy_new_tables(self, src_node, userdb, src, tgt):
        """Tables dropped on the source while the target was out go, tables created there get their
        definitions (resync_steps), before the publication and the compare."""
        gone = drop_tables_gone(src, tgt)
        if gone:
            self.say('%s: dropped %d table(s) serverid %d no longer has: %s' % (
                userdb, len(gone), self.source['serverid'], ', '.join(gone)))
        new = create_new_tables(self.server.bindir, (src_node, src, self.source['serverid']),
                                (self.node(self.target), tgt, self.target['serverid']), userdb)
        if new:
            self.say('%s: created %d table(s) new on serverid %d: %s' % (
                userdb, len(new), self.source['serverid'], ', '.join(new)))

    def compare_and_repair(self, userdb, snapshot):
        """dbsync's engine, the source read in the slot's exported snapshot."""
        options = SyncOptions(mode='sync', scope='diff', source_snapshot=snapshot, copy_with=self.options.copy_with,
                              sample_size=self.options.sample_size, reload_fraction=self.options.reload_fraction)
        sync = Sync(dict(self.p, userdb=userdb), options, False, self.log_line)
        try:
            result = sync.run(dict(self.source, userdb=userdb), dict(self.target, userdb=userdb))
        finally:
            sync.close()
        self.bytes_copied += result['summary']['bytes_copied']
        self.resync_report[userdb] = dict(summary=result['summary'], report=result['report'])
        if sync.failed() or not result['equal']:
            raise RecoveryError('%s: the repair did not make serverid %d equal to serverid %d\'s snapshot (%s)'
                                % (userdb, self.target['serverid'], self.source['serverid'],
                                   '; '.join(line for line in result['report'] if 'equal' not in line.split())))
        self.say('%s: repaired against the snapshot: %d rows, %d bytes copied'
                 % (userdb, result['summary']['rows_copied'], result['summary']['bytes_copied']))

    # --- cut: the write freeze ------------------------------------------------------------------------
    def run_cut(self, cut):
        """The resync's freeze (OnlineRecovery.cut does what comes before and after it)."""
        options = self.options
        _s, src_admin = self.connect(self.source, 'postgres')
        src_users = dict((userdb, self.connect(self.source, userdb)[1]) for userdb in self.userdbs)
        src_mngdbs = dict((userdb, self.connect(self.source, mngdb_name(userdb))[1]) for userdb in self.userdbs)
        slots = dict((self.state['slots'][userdb], src_users[userdb]) for userdb in self.userdbs)
        if self.poll is not None:
            labelled = dict((cut.label(userdb), conn) for userdb, conn in src_mngdbs.items())
            self.poll.lower(labelled)
            self.poll.wait_for_drivers(labelled)
        self.cut_report['lag_before_freeze'] = logical.catch_up(slots, options.catch_up_timeout)
        unlogged = cut.unlogged(src_users)
        notice = options.notice_wait
        if notice is None:
            notice = freeze_notice(src_mngdbs.values())
        self.cut_report['notice_seconds'] = notice
        self.say('write freeze: serverid %d to 0 in %s, waiting %.1fs for drivers to notice'
                 % (self.target['serverid'], ', '.join(mngdb_name(userdb) for userdb in self.userdbs), notice))
        # Drivers read both nodes' views, and a -1 in either outweighs a 0: the target's own management
        # databases, which still say -1, must say 0 too, or a driver reading them writes to the source
        # through the freeze.  A basebackup's standby gets the 0 by streaming; the resync's target does not.
        views = dict((cut.label(userdb), conn) for userdb, conn in src_mngdbs.items())
        views.update(('serverid %d %s' % (self.target['serverid'], mngdb_name(userdb)),
                      self.connect(self.target, mngdb_name(userdb))[1]) for userdb in self.userdbs)
        freeze = Quiesce(views, list(src_users.values()), self.target['serverid'], notice, options.idle_wait_timeout,
                         final_validity=1, watch=src_admin, say=self.say)
        try:
            freeze.run(lambda frozen: self.in_freeze(frozen, cut, src_admin, src_users, src_mngdbs, slots, unlogged))
        finally:
            cut.window = self.cut_report['freeze_window'] = freeze.window
            self.cut_report.update(waited_before_freeze=round(freeze.waited_before, 3),
                                   freezes_undone=[undone['window'] for undone in freeze.undone])

    def in_freeze(self, frozen, cut, src_admin, src_users, src_mngdbs, slots, unlogged):
        before = frozen.own_xid
        position = run(src_admin, WAL_POSITION_SQL)[0]['lsn']
        self.cut_report['lag_at_cut'] = max(logical.slot_state(conn, slot)['lag'] or 0 for slot, conn in slots.items())
        waited = time.monotonic()
        self.cut_report['apply_wait_by_slot'] = logical.wait_applied(slots, position, self.options.replay_wait_timeout)
        self.cut_report['apply_wait_seconds'] = round(time.monotonic() - waited, 3)
        tgt_users = dict((userdb, self.connect(self.target, userdb)[1]) for userdb in self.userdbs)
        for userdb, tgt in tgt_users.items():  # from here on the target takes the drivers' writes only
            logical.drop_subscription(tgt, self.state['slots'][userdb])
        after = run(src_admin, OWN_XID_SQL, action='take a transaction id')[0]['xid']
        cut.check_no_forest_write(src_admin, src_users, src_mngdbs, before, after, position)
        self.check_schemas(src_users, tgt_users)
        copied = 0
        tgt_mngdbs = {}
        for userdb, src in src_users.items():
            tgt_mngdbs[userdb] = self.connect(self.target, mngdb_name(userdb))[1]
            copied += copy_sequences(src, tgt_users[userdb])
            self.copy_large_objects(userdb, src, tgt_users[userdb])
            self.copy_mngdb(userdb, tgt_mngdbs[userdb])
        self.cut_report['sequences_copied'] = copied
        for userdb, tables, src_bulk in unlogged:
            cut.copy_unlogged(userdb, src_bulk, tables)
        for tgt_mngdb in tgt_mngdbs.values():
            set_validity(tgt_mngdb, self.target['serverid'], 1)
        for userdb, tgt_mngdb in tgt_mngdbs.items():
            accept_node(self.target['serverid'], tgt_mngdb, [src_mngdbs[userdb], tgt_mngdb])

    def check_schemas(self, src_users, tgt_users):
        """DDL on the source during the resync reached no subscription: the cut fails (rolled back)."""
        for userdb, src in src_users.items():
            wrong = schema_changes(src, tgt_users[userdb], self.source['serverid'], self.target['serverid'])
            if wrong:
                raise RecoveryError('%s: the schema changed during the resync (DDL is not replicated): %s. Run the '
                                    'recovery again' % (userdb, '; '.join(wrong)))

    def copy_large_objects(self, userdb, src, tgt):
        copied, removed = copy_large_objects_now(src, tgt)
        if copied or removed:
            self.cut_report['large_objects_copied'] = self.cut_report.get('large_objects_copied', 0) + copied + removed
            self.say('%s: large objects %d copied, %d removed' % (userdb, copied, removed))

    def copy_mngdb(self, userdb, tgt_mngdb):
        copy_whole_database(self.connect(self.source, mngdb_name(userdb), bulk=True)[1], tgt_mngdb)

    # --- cleanup and rollback -------------------------------------------------------------------------
    def cleanup_phase(self):
        try:
            self.drop_machinery(strict=True)
            self.put_back_poll_interval(strict=True)
            ignore_interrupts()
            self.workspace.remove()
            self.state['stage'] = phase_named('cleanup').leaves
            self.say('cleanup done: slots and publications dropped on serverid %d' % self.source['serverid'])
        except Exception as exc:  # the node serves already: never roll back now
            raise RecoveryError('serverid %d is recovered and valid, but the cleanup did not finish: %s. Run '
                                'phase=cleanup again' % (self.target['serverid'], exc))

    def drop_machinery(self, strict):
        """Subscriptions (and their origins) on the target, then slots and publications on the source;
        each may be absent.  Not strict: a target that does not answer keeps nothing that runs
        (its subscriptions' slots are gone, so they cannot apply anything)."""
        slots = self.state.get('slots', {})
        for userdb, slot in sorted(slots.items()):
            try:
                tgt = self.connect(self.target, userdb)[1]
            except ForestPgError:
                if strict:
                    raise
                self.say('serverid %d does not answer: its subscription %s is dropped by the next run'
                         % (self.target['serverid'], slot))
                continue
            if logical.drop_subscription(tgt, slot):
                self.say('%s: dropped the subscription %s on serverid %d' % (userdb, slot, self.target['serverid']))
        for userdb, slot in sorted(slots.items()):
            src = self.connect(self.source, userdb)[1]
            if logical.drop_slot(src, slot):
                self.say('%s: dropped the replication slot %s on serverid %d' % (userdb, slot, self.source['serverid']))
            logical.drop_publication(src)

    def rollback(self):
        state = self.state
        Finish(self).refuse_after_the_cut()  # valid already: cleanup finishes it, nothing is undone
        failed = [None]

        def dropped():
            try:
                self.drop_machinery(strict=False)
                return True
            except (ForestPgError, RecoveryError) as exc:
                close_all(self.conns)
                self.conns = []
                failed[0] = exc
                return False
        try:
            wait_until('serverid %d to answer' % self.source['serverid'], dropped, ROLLBACK_RETRY_SECONDS, 1)
        except WaitTimeout:
            raise RecoveryError('serverid %d did not answer for %ss, so its replication slots and publication may '
                                'remain (%s). When it answers, run phase=cancel method=resync again'
                                % (self.source['serverid'], ROLLBACK_RETRY_SECONDS, failed[0]))
        Finish(self).reset_source()
        if self.poll is not None:
            self.poll.put_back(self.answering_mngdb_conns(self.target), strict=False)
        if not state.get('was_running') and self.server.stop():
            self.say('stopped the server of %s again, as before' % self.server.data_dir)
        self.workspace.remove()
        state['stage'] = CANCELLED
        self.say('cancelled: serverid %d marked broken (-1) on its own data directory, nothing left on serverid %d'
                 % (self.target['serverid'], self.source['serverid']))

    def result(self, changed=None):
        return dict(super().result(changed), resync=self.resync_report)
