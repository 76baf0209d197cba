# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The two ways an online recovery ends and takes its leftovers away: the cleanup after the cut
(the node serves already) and the rollback instead of it (a failed or cancelled recovery, back to
the state before).  Both drop the replication slot, put the drivers' poll interval back and remove
the workspace; each step may be repeated."""

from __future__ import annotations

from .errors import RecoveryError
from .forest_pg import ForestPgError, close_all, run
from .mngdb import mngdb_name, set_validity
from .online_phases import CANCEL_PENDING, CANCELLED, phase_named
from .poll_interval import PollIntervalError
from .recovery_workspace import ignore_interrupts
from .standby import Standby, remove_signal_files
from .wait import WaitTimeout, wait_until

ROLLBACK_RETRY_SECONDS = 30
# What the node's configuration files say (our own session overrides lock_timeout).
OWN_SETTINGS_SQL = """
SELECT name, setting FROM pg_file_settings
WHERE applied AND name IN ('lock_timeout', 'listen_addresses', 'primary_conninfo', 'primary_slot_name')
"""


class CutDone(RecoveryError):
    """A rollback refused: the target is valid already (Finish.refuse_after_the_cut)."""


def views_of_target(job):
    """{management database: udb_validity of the target there}, on the source: recorded in the state
    file before anything changes, what a rollback puts back (views_before)."""
    seen = {}
    for userdb in job.userdbs:
        _node, mngdb = job.connect(job.source, mngdb_name(userdb))
        rows = run(mngdb, 'SELECT udb_validity FROM server_info WHERE serverid = %s', [job.target['serverid']])
        seen[mngdb_name(userdb)] = rows[0]['udb_validity'] if rows else None
    return seen


class Finish(object):
    """The end of the online recovery `job` (an OnlineRecovery: its connections, progress lines,
    state and workspace, local server, base copy and poll interval)."""

    def __init__(self, job):
        self.job = job
        self.source, self.target = job.source['serverid'], job.target['serverid']

    def standby(self, src_admin, tgt_admin=None):
        return Standby(self.source, self.target, src_admin, tgt_admin)

    # --- after the cut ----------------------------------------------------------------------------
    def cleanup(self):
        """Slot dropped, standby settings out, the node its own primary, workspace removed; the node's
        own settings afterwards (the cleanup's report)."""
        job = self.job
        _s, src_admin = job.connect(job.source, 'postgres')
        self.standby(src_admin).drop_slot(job.state['slot'], job.say)
        job.workspace.put_back_own_config()
        remove_signal_files(job.server)
        if not job.server.running():  # it crashed or was stopped after the cut: it is a primary now
            job.server.start()
            job.say('started the server of %s (it was not running)' % job.server.data_dir)
        job.put_back_poll_interval(strict=True)
        _t, tgt_admin = job.connect(job.target, 'postgres')
        run(tgt_admin, 'SELECT pg_reload_conf()')
        self.standby(src_admin, tgt_admin).wait_settings_gone()
        ignore_interrupts()
        job.workspace.remove()  # the old data directory with it
        job.state['stage'] = phase_named('cleanup').leaves
        settings = dict((row['name'], row['setting']) for row in run(tgt_admin, OWN_SETTINGS_SQL))
        job.say('cleanup done: slot dropped, standby settings and old data directory removed; serverid %d runs '
                'with its own configuration (lock_timeout %s)' % (self.target, settings.get('lock_timeout')))
        return dict(target_settings=settings)

    # --- instead of the cut ---------------------------------------------------------------------------
    def rollback(self):
        """Back to the state before the recovery; every step may be repeated.  The source is reset
        even when the target cannot be put back: it is the node the applications write to, and a
        freeze, a slot or a short poll interval left there costs them more than a broken target."""
        job = self.job
        state = job.state
        if not state.get('target_restored'):
            self.refuse_after_the_cut()
            target_failure = None
            try:
                self.restore_target()
            except Exception as exc:  # the source first, then this failure
                target_failure = exc
            if target_failure is not None:
                self.reset_source()
                raise RecoveryError('serverid %d is reset (no slot, no freeze, the poll interval back), but putting '
                                    'serverid %d back on its old data directory failed: %s. Fix that, then run '
                                    'phase=cancel again' % (self.source, self.target, target_failure))
        self.reset_source()
        if job.poll is not None:  # the target's own (old) management databases, if it lowered them
            job.poll.put_back(job.answering_mngdb_conns(job.target), strict=False)
        job.workspace.remove()
        state['stage'] = CANCELLED
        job.say('cancelled: serverid %d as before the recovery, no slot on serverid %d' % (self.target, self.source))

    def restore_target(self):
        """The target stopped, its old data directory back, started again if it ran before."""
        job = self.job
        state = job.state
        if job.basebackup is not None:
            job.basebackup.kill()
        if job.server.stop():
            job.say('stopped the server of %s' % job.server.data_dir)
        if job.workspace.put_back_old_data(state):
            job.say('the old data directory is back in %s' % job.server.data_dir)
        if state.get('was_running'):
            job.server.start()
            job.say('started the server of %s again, as before' % job.server.data_dir)
        state['target_restored'] = True
        state['stage'] = CANCEL_PENDING
        job.workspace.save(state)

    def refuse_after_the_cut(self):
        """No rollback once the freeze has made the target valid on the source, even if the state file
        does not say so yet (a run interrupted or killed between the two): the applications write to it
        from then on, and its old data directory would lose their writes.  The stage is recorded, so
        phase=cleanup finishes the recovery.  A source that does not answer cannot tell: the rollback
        goes on, and its source reset says what is left."""
        job = self.job
        valid = []
        try:
            for name, before in self.views_before().items():
                _s, mngdb = job.connect(job.source, name)
                rows = run(mngdb, 'SELECT udb_validity FROM server_info WHERE serverid = %s', [self.target])
                if before != 1 and rows and rows[0]['udb_validity'] == 1:
                    valid.append(name)
        except ForestPgError:
            return
        if valid:
            job.state['stage'] = phase_named('cut').leaves
            job.workspace.save(job.state)
            raise CutDone('serverid %d is valid (1) in %s on serverid %d: the cut is done and the applications write '
                          'to it, so it is not rolled back. Finish with phase=cleanup'
                          % (self.target, ', '.join(valid), self.source))

    def views_before(self):
        """{management database: the target's validity there before the recovery} from the state file
        (a state file of an earlier version holds one value, for the module's own database)."""
        before = self.job.state.get('source_view_of_target')
        return before if isinstance(before, dict) else {self.job.mngdb: before}

    def reset_source(self):
        """Slot dropped and the freeze's 0 undone on the source; retried while it does not answer."""
        job = self.job
        failed = [None]  # the last attempt's error

        def reset():
            try:
                self.reset_source_once()
                return True
            except (ForestPgError, RecoveryError, PollIntervalError) as exc:
                close_all(job.conns)
                job.conns = []
                failed[0] = exc
                return False
        try:
            wait_until('serverid %d to answer' % self.source, reset, ROLLBACK_RETRY_SECONDS, 1)
        except WaitTimeout:
            raise RecoveryError('serverid %d is back on its old data directory, but serverid %d did not '
                                'answer for %ss, so its replication slot %s, the write freeze and a lowered '
                                'mngdb_read_duration may remain (%s). When it answers, run phase=cancel again'
                                % (self.target, self.source, ROLLBACK_RETRY_SECONDS, job.state['slot'], failed[0]))

    def reset_source_once(self):
        job = self.job
        _s, admin = job.connect(job.source, 'postgres')
        self.standby(admin).drop_slot(job.state['slot'], job.say)
        for name, before in self.views_before().items():
            _s, mngdb = job.connect(job.source, name)
            current = run(mngdb, 'SELECT udb_validity FROM server_info WHERE serverid = %s', [self.target])
            if current and current[0]['udb_validity'] == 0 and before is not None:
                set_validity(mngdb, self.target, before)
                job.say('udb_validity of serverid %d set back to %s in %s on serverid %d'
                        % (self.target, before, name, self.source))
        if job.poll is not None:
            job.poll.put_back(job.mngdb_conns(job.source))
