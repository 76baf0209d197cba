# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Online recovery (the modern form of guide §8.2; step by step in docs/recovery.md): the
applications keep writing to the valid node S while the broken node T, on the
host this runs on, is rebuilt from it.

base     stop T, move its data directory aside (its own configuration files
         saved), pg_basebackup -X stream from S through a replication slot, put
         T's files back, start T as a streaming standby of S;
cut      inside the write freeze (quiesce): wait until T has replayed S's WAL,
         promote T, check that nothing wrote to S meanwhile, copy every
         sequence and the contents of the unlogged tables (a physical copy
         leaves them empty), udb_validity of T := 1 on both nodes;
cleanup  drop the slot, take the standby settings out, remove the old data
         directory and the private password file;
cancel   from any failed step back to the state before: T on its old data
         directory, -1, S untouched and valid, no slot, nothing left behind.

Each phase can run on its own (the guide's PGHARecovery.sh -base/-cleanup/...):
what a later phase needs is kept in a state file in the workspace next to the
data directory (never a password; that is in a 0600 passfile removed at the end).

This file drives the phases; the parts are the phase table (online_phases), the workspace and
its state file (recovery_workspace), the copy (base_copy), the standby (standby), the cut
(online_cut), and the cleanup or rollback that ends it (online_finish).
"""

from __future__ import annotations

import signal
import time

from .base_copy import BaseCopy, check_base
from .cluster_status import read_databases
from .forest_pg import ForestPgError, run
from .local_server import LocalServer, ProgramsMissing
from .mngdb import SYSTEM_DATABASES, database_names, forest_userdbs, mngdb_name
from .online_cut import Cut
from .online_finish import CutDone, Finish, views_of_target
from .online_phases import PHASES, STARTED, next_phase, phase_named
from .pair_choice import online_scope
from .pg_platform import data_dir_major, online_copy_refusal
from .poll_interval import PollInterval
from .recovery import Recovery, RecoveryError
from .recovery_workspace import Workspace, recorded_scope
from .standby import Standby, write_settings


def _interrupted(signum, _frame):
    """The first SIGINT or SIGTERM interrupts; the next ones are ignored from here on, so that none
    lands in the rollback before it starts (Ctrl-C under load reaches the module more than once)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt('interrupted (%s)' % signal.Signals(signum).name)


class OnlineRecovery(Recovery):
    """The phases of one online recovery of the broken node, run on its host (method=resync: online_resync)."""

    method = 'basebackup'
    COPIES_SERVER = True  # the physical copy replaces every database of the target's server
    ROLLED_BACK = ('serverid %d is on its old data directory again and marked broken (-1), serverid %d is untouched '
                   'and valid, the replication slot and the standby settings are gone')

    def __init__(self, params, options, check_mode=False, log=None):
        super().__init__(params, options, check_mode, log)
        self.server = None
        self.workspace = None
        self.state = None
        self.freeze_window = None
        self.cut_report = {}
        self.cleanup_report = {}
        self.basebackup = None  # the BaseCopy under way, killed by a rollback
        # Every forest user database of the server goes through the recovery (pair_choice.online_scope),
        # and the other databases the DBA allowed to be replaced (replace_databases).
        self.userdbs = [self.userdb]
        self.replaced = []
        self._poll = None
        self.method_choice = None  # what method=auto chose and why (online_method), for the result

    # --- the drivers' poll interval, shortened for the recovery (poll_interval) ------------------
    @property
    def poll(self):
        """None when notice_wait is given: the DBA says how long the drivers take, nothing is lowered."""
        if self._poll is None and self.options.notice_wait is None:
            self._poll = PollInterval(self.options.freeze_read_duration or 1,
                                      'online recovery of serverid %d' % self.target['serverid'], self.say)
        return self._poll

    def mngdb_conns(self, node):
        """{label: connection} to each covered management database on `node` (a status node dict)."""
        return dict(('serverid %d %s' % (node['serverid'], mngdb_name(userdb)),
                     self.connect(node, mngdb_name(userdb))[1]) for userdb in self.userdbs)

    def answering_mngdb_conns(self, node):
        try:
            return self.mngdb_conns(node)
        except ForestPgError as exc:
            self.say('serverid %d does not answer (%s): its management databases are left as they are'
                     % (node['serverid'], exc.detail.strip()))
            return {}

    def checked_poll_conns(self):
        """{label: connection} to the management databases whose interval the run lowers (the source's, the
        target's that answer), refused before anything changes where drivers cannot be told; {} with notice_wait."""
        if self.poll is None:
            return {}
        polled = self.mngdb_conns(self.source)
        polled.update(self.answering_mngdb_conns(self.target))
        self.poll.check(polled)
        return polled

    def put_back_poll_interval(self, strict):
        """The DBA's mngdb_read_duration back on both nodes (those answering, unless strict)."""
        if self.poll is None:
            return []
        conns = self.mngdb_conns(self.source) if strict else self.answering_mngdb_conns(self.source)
        conns.update(self.mngdb_conns(self.target) if strict else self.answering_mngdb_conns(self.target))
        return self.poll.put_back(conns, strict=strict)

    # --- driving the phases --------------------------------------------------------------
    def run(self):
        wanted = self.options.phase
        if wanted == 'cancel':
            return self.cancel()
        steps = PHASES if wanted == 'all' else (phase_named(wanted),)
        if steps[0].needs is None:
            self.start_new()
        else:
            self.resume(steps[0])
        work = dict(base=self.base, cut=self.cut, cleanup=self.cleanup_phase)
        for step in steps:
            if self.check_mode and step.needs is not None:  # needs what an earlier phase would have done
                self.say('would run phase %s of the recovery of serverid %d' % (step.name, self.target['serverid']))
                return self.result(changed=True)
            if step.rolls_back:
                self.guarded(step.name, work[step.name])
            else:
                self.timed(step.name, work[step.name])
            if self.check_mode:  # a recovery that would run changes the node: "would change"
                return self.result(changed=True)
        return self.result()

    def guarded(self, name, function):
        """Run a phase; on failure roll everything back and say what happened and what was undone.
        SIGTERM counts as an interruption too; during the rollback both are ignored: Ctrl-C on
        ansible-playbook sends the module SIGINT and, a moment later, SIGTERM, which would otherwise
        kill it half-way through putting things back."""
        previous = signal.signal(signal.SIGTERM, _interrupted)
        signal.signal(signal.SIGINT, _interrupted)
        try:
            self.timed(name, function)
        except (Exception, KeyboardInterrupt) as exc:  # any failure, or Ctrl-C: undo, then report the cause
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if self.check_mode or self.state is None:
                raise
            # _interrupted names its signal; a KeyboardInterrupt raised elsewhere has no words of its own.
            cause = '%s failed: %s' % (name, str(exc) or ('interrupted (SIGINT)' if isinstance(exc, KeyboardInterrupt)
                                                          else exc.__class__.__name__))
            self.say(cause)
            try:
                self.rollback()
            except CutDone as done:
                raise RecoveryError('%s. %s' % (cause, done))
            except Exception as undo:  # the cause first, then what is left to undo
                raise RecoveryError('%s. The rollback did not finish: %s' % (cause, undo))
            raise RecoveryError('%s. Rolled back: %s. Fix the cause and run the recovery again'
                                % (cause, self.ROLLED_BACK % (self.state['target']['serverid'],
                                                              self.state['source']['serverid'])))
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def start_new(self):
        self.choose(online=True)
        self.lock_and_choose_again(online=True)
        source, target = self.source, self.target
        self.userdbs = self.choose_scope()
        self.lock_pair()
        self.local_server(source)
        state = self.workspace.load()
        if state:
            raise RecoveryError('an online recovery of serverid %d is in progress here (stage %s, method=%s, last '
                                'step %s): continue with phase=%s or undo it with phase=cancel'
                                % (state['target']['serverid'], state['stage'], state.get('method', 'basebackup'),
                                   state['updated'], next_phase(state['stage'])))
        self.workspace.refuse_if_left_over()
        self.say('online recovery of serverid %d from serverid %d; data directory %s; user database%s %s'
                 % (target['serverid'], source['serverid'], self.server.data_dir,
                    '' if len(self.userdbs) == 1 else 's', ', '.join(self.userdbs)))

    def choose_scope(self):
        """The forest user databases of the source server, each checked (pair_choice.online_scope):
        the physical copy replaces all of them on the target, and every other database too."""
        _s, src_admin = self.connect(self.source, 'postgres')
        source_names = database_names(src_admin)
        userdbs = forest_userdbs(source_names)
        target_names = []
        try:
            tgt_admin = self.node(self.target).connect('postgres')
        except ForestPgError as exc:
            self.say('serverid %d does not answer (%s): its databases are taken to be those of serverid %d'
                     % (self.target['serverid'], exc.detail.strip(), self.source['serverid']))
        else:
            with tgt_admin:
                target_names = database_names(tgt_admin)
        forest_names = set(userdbs) | set(mngdb_name(userdb) for userdb in userdbs)
        others = sorted((set(source_names) | set(target_names)) - forest_names - set(SYSTEM_DATABASES)) \
            if self.COPIES_SERVER else []  # a resync leaves the target's other databases as they are
        statuses = read_databases(self.p, userdbs)
        scope = online_scope(statuses, self.source['serverid'], self.target['serverid'],
                             self.options.include_valid or (), others, self.options.replace_databases or ())
        self.replaced = others
        if others:
            self.say('databases replaced with serverid %d\'s copy, as asked (replace_databases): %s'
                     % (self.source['serverid'], ', '.join(others)))
        return sorted(scope, key=lambda userdb: (userdb != self.userdb, userdb))

    def locked_mngdbs(self):
        return [mngdb_name(userdb) for userdb in self.userdbs]

    def resume(self, phase):
        """A phase after the first: the state the earlier phase left."""
        self.local_server(None)
        state = self.workspace.load()
        if not state or state['stage'] != phase.needs:
            raise RecoveryError('phase=%s needs an online recovery at stage %s, but %s: run %s. Nothing was changed'
                                % (phase.name, phase.needs, 'none is in progress here' if not state else
                                   'it is at stage %s' % state['stage'],
                                   'phase=%s first' % PHASES[0].name if not state
                                   else 'phase=%s' % next_phase(state['stage'])))
        self.adopt(state)
        self.lock_pair()

    def adopt(self, state):
        """Go on with the recovery a state file records (a later phase, or a cancel)."""
        recorded = state.get('method', 'basebackup')  # a state file of an earlier version: a physical copy
        if recorded != self.method:
            raise RecoveryError('the online recovery in progress here is method=%s: run this phase with method=%s. '
                                'Nothing was changed' % (recorded, recorded))
        self.state = state
        self.source, self.target, self.userdbs, self.replaced = recorded_scope(state, self.userdb)

    def local_server(self, source):
        """This host's server; the binaries and its data directory must be of the source's major version."""
        if source is None:
            self.server = LocalServer.from_params(self.p)  # its options, start_timeout among them
            self.workspace = Workspace(self.server)
            return
        _node, admin = self.connect(source, 'postgres')
        major = int(run(admin, 'SHOW server_version_num')[0]['server_version_num']) // 10000
        try:
            self.server = LocalServer.from_params(self.p, major)
            programs, found = self.server.bindir, self.server.major_version()
        except ProgramsMissing:  # said below, with the major it needs
            programs, found = self.p.get('pg_bindir'), None
        refusal = online_copy_refusal(source['serverid'], major, self.target['serverid'],
                                      data_dir_major(self.p['data_dir']) if self.p.get('data_dir') else None,
                                      programs, found)
        if refusal:
            raise RecoveryError(refusal)
        self.workspace = Workspace(self.server)

    # --- the phases ------------------------------------------------------------------------------
    def base(self):
        src_node, admin = self.connect(self.source, 'postgres')
        needed = check_base(admin, self.server, self.source['serverid'])
        slot = 'pgforest_recovery_%d' % self.target['serverid']
        if self.check_mode:
            self.say('would stop the server of %s, copy serverid %d (about %d MB, user databases %s) into it and '
                     'start it as a standby' % (self.server.data_dir, self.source['serverid'], needed >> 20,
                                                ', '.join(self.userdbs)))
            return
        polled = self.checked_poll_conns()
        standby = Standby(self.source['serverid'], self.target['serverid'], admin)
        standby.drop_slot(slot, self.say, leftover=True)
        state = dict(stage=STARTED, source=self.source, target=self.target, slot=slot, userdbs=self.userdbs,
                     replaced_databases=self.replaced,
                     data_dir=self.server.data_dir, was_running=self.server.running(), moved_aside=False,
                     source_view_of_target=views_of_target(self))
        self.workspace.create()
        # Only a workspace of this run's own is rolled back: until it exists, a failure changes nothing.
        self.state = state
        self.workspace.save(self.state)
        if self.poll is not None:  # drivers take the short interval while the copy runs
            self.poll.lower(polled)
        if self.server.stop():
            self.say('stopped the server of %s' % self.server.data_dir)
        self.workspace.move_aside(self.state)
        self.say('moved the old data directory aside to %s (its configuration files saved)' % self.workspace.old_data)
        self.workspace.write_passfile(src_node)
        self.say('pg_basebackup from serverid %d (slot %s)' % (self.source['serverid'], slot))
        self.basebackup = BaseCopy(self.server, src_node, slot, self.workspace.passfile, self.options.max_rate,
                                   self.say)
        self.bytes_copied = self.basebackup.run(self.source['serverid'])
        self.workspace.put_back_own_config()
        write_settings(self.server, src_node, self.workspace.passfile, slot)
        self.say('own configuration files back in place; starting as a standby of serverid %d'
                 % self.source['serverid'])
        self.server.start()
        standby.wait_streaming(self.server.start_timeout, self.server.log_file)
        self.say('serverid %d streams from serverid %d' % (self.target['serverid'], self.source['serverid']))
        self.state['stage'] = phase_named('base').leaves
        self.workspace.save(self.state)

    def cut(self):
        cut = Cut(self, self.cut_report)
        try:
            self.run_cut(cut)
        finally:
            self.freeze_window = cut.window
        self.state['stage'] = phase_named('cut').leaves
        self.workspace.save(self.state)
        self.say('write freeze released after %ss: serverid %d is valid (1) on both nodes'
                 % (self.freeze_window, self.target['serverid']))
        failures = self.put_back_poll_interval(strict=False)  # the cleanup tries again
        if failures:
            self.cut_report['read_duration_not_put_back'] = failures

    def run_cut(self, cut):
        """The freeze and what happens inside it (a physical copy's: online_cut.Cut.run)."""
        cut.run()

    def cleanup_phase(self):
        try:
            self.cleanup_report = Finish(self).cleanup()
        except Exception as exc:  # the node serves already: never roll back now
            raise RecoveryError('serverid %d is recovered and valid, but the cleanup did not finish: %s. Run '
                                'phase=cleanup again' % (self.target['serverid'], exc))

    # --- cancel and rollback --------------------------------------------------------------
    def cancel(self):
        self.local_server(None)
        state = self.workspace.load()
        if not state:
            self.say('no online recovery in progress for %s: nothing to cancel' % self.server.data_dir)
            return self.result(changed=False)
        if state['stage'] == phase_named('cut').leaves:
            raise RecoveryError('the cut is done: serverid %d is valid and the applications write to it, so '
                                'cancelling would lose their writes; finish with phase=cleanup'
                                % state['target']['serverid'])
        self.adopt(state)
        try:
            self.lock_pair()
        except ForestPgError as exc:
            self.say('serverid %d does not answer (%s): cancelling here without the pair lock'
                     % (self.source['serverid'], exc))
        if not self.check_mode:
            self.timed('cancel', self.rollback)
        return self.result()

    def rollback(self):
        Finish(self).rollback()

    # --- result ------------------------------------------------------------------------------
    def failure_result(self):
        """What a failed run reports: its steps, and the cut's figures so far (freezes undone, waits)."""
        return dict(super().failure_result(), cut=self.cut_report, method_choice=self.method_choice)

    def result(self, changed=None):
        state = self.state or {}
        return dict(mode='online', method=self.method, phase=self.options.phase, changed=bool(state) if changed is None else changed,
                    stage=state.get('stage', 'none'),
                    source=self.source and self.source['serverid'], target=self.target and self.target['serverid'],
                    userdbs=state.get('userdbs', self.userdbs),
                    phases=self.phases, bytes_copied=self.bytes_copied, freeze_window=self.freeze_window,
                    read_duration=self._poll.report if self._poll is not None else None,
                    cut=self.cut_report, cleanup=self.cleanup_report, method_choice=self.method_choice, progress=self.progress,
                    seconds=round(time.monotonic() - self.started, 3))
