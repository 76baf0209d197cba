# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The quiesce protocol (docs/recovery.md, "The write freeze: wait, then freeze"): freeze the
applications' writes around a short critical step, and never for longer than notice + 1 s.

0. Before the freeze, with writes still flowing: wait until no transaction older than the notice
   time is open on the user databases, and none of a session that made an earlier try give up.
   A batch job delays the operation, never the applications. Progress names each blocker.
1. udb_validity of the target := 0 in every reachable management database, with NOTIFY, so
   drivers start no new transaction;
2. wait `notice_wait` seconds (polling drivers notice within mngdb_read_duration), then at most
   MARGIN seconds more until no other session has a transaction open. If one still is, undo 1 at
   once and go back to 0. `idle_wait_timeout` bounds the time spent outside the freezes (step 0);
   when it runs out, fail naming the sessions that blocked;
3. the caller's critical step, which may ask for a new try (FreezeAgain): undo 1, back to 0;
4. validity := its final value (the value before, unless told otherwise), NOTIFY.

A driver too slow to see the freeze can still start a write after step 2. A caller that needs a
moment with no write at all (consistent snapshots on both nodes) passes `watch`, an autocommit
connection to any database of one node, and after its step asks `wrote_since_idle()`: every
transaction that writes takes a transaction id, and `watch` takes one of its own (a commit of
nothing) just before the idle check and again after the step, so consecutive ids prove that no
other transaction took one in between -- committed or still open. (The snapshot's xmax would not:
it moves only when a transaction ends, so a write still open at the second look went unseen.)
The freeze window (1 to 4) is measured and does not depend on the data size.
"""

from __future__ import annotations

import time

from .errors import ForestError
from .forest_pg import ForestPgError, run
from .freeze_writes import MAINTENANCE_COMMAND
from .mngdb import set_validity
from .wait import pause, ready_within
from .wording import shown

# Every open transaction but our own (one that has not written yet may still write), except a VACUUM or
# ANALYZE running as its own command: they change no user data (freeze_writes), and a DBA's maintenance
# loop would otherwise hold every freeze off.
OPEN_TRANSACTIONS_SQL = """
SELECT pid, usename, application_name, host(client_addr) AS client_addr, state,
       round(extract(epoch FROM now() - xact_start)::numeric, 1)::float8 AS open_seconds, left(query, 80) AS query
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend'
  AND xact_start IS NOT NULL AND pid <> ALL(%s)
  AND NOT """ + MAINTENANCE_COMMAND + """
ORDER BY xact_start
"""
# A transaction id of our own, committed at once: the exact next id of the server at that moment.
OWN_XID_SQL = 'SELECT pg_current_xact_id()::text::int8 AS xid'
# After notice_wait, how long a freeze waits for the transactions still open before it gives up.
MARGIN = 0.3
# The freeze's bound beyond the notice (docs/recovery.md): the margin and the critical step.
BOUND_BEYOND_NOTICE = 1.0
PROGRESS_EVERY = 5.0
# Freezes begun and undone before the operation gives up: each costs the applications up to the bound,
# and between two of them they write freely for at least REST_SECONDS (or the notice, if longer).
MAX_FREEZES = 8
REST_SECONDS = 1.0


class QuiesceError(ForestError):
    pass


class FreezeAgain(Exception):
    """Raised by a critical step that cannot finish in this freeze: undo it, try again later."""

    def __init__(self, reason, sessions=()):
        super().__init__(reason)
        self.reason = reason
        self.sessions = list(sessions)


def describe_blockers(sessions):
    """Sessions (OPEN_TRANSACTIONS_SQL rows) in words, for progress and errors."""
    return '; '.join('pid %(pid)s %(usename)s (%(application_name)s) from %(client_addr)s, %(state)s, transaction '
                     'open %(open_seconds)ss: %(query)s' % dict(s, client_addr=s['client_addr'] or 'local socket',
                                                                application_name=s['application_name'] or 'no name')
                     for s in sessions)


def blocking_before_freeze(sessions, notice, blocked_before):
    """The sessions step 0 waits for: a transaction open longer than the notice (it would not end
    inside a freeze), or any open transaction of a session that made an earlier freeze give up."""
    return [s for s in sessions if s['open_seconds'] >= notice or s['pid'] in blocked_before]


class Quiesce(object):
    """`Quiesce(...).run(step)`: step(freeze) runs inside the freeze; freeze.window after."""

    def __init__(self, mngdb_conns, userdb_conns, serverid, notice_wait, idle_wait_timeout,
                 final_validity=None, poll=0.05, watch=None, say=None, margin=MARGIN, own=()):
        self.mngdb_conns = mngdb_conns      # {label: connection to a management database}
        self.userdb_conns = userdb_conns    # connections whose databases must be idle
        self.own = list(own)                # more connections of ours, whose transactions are not looked for
        self.serverid = serverid
        self.notice_wait = notice_wait
        self.idle_wait_timeout = idle_wait_timeout
        self.final_validity = final_validity
        self.poll = poll
        self.margin = margin
        self.watch = watch                  # autocommit connection to one node (wrote_since_idle)
        self.say = say or (lambda message: None)
        self.own_xid = None
        self.previous = {}
        self.started = None
        self.window = None
        self.waited_before = 0.0            # seconds waited outside the freezes (step 0)
        self.undone = []                    # [{window, reason}]: freezes given up and tried again
        self._blocked_before = {}           # pid: session, of the sessions that made a freeze give up

    # --- the whole protocol --------------------------------------------------------------
    def run(self, step):
        """Steps 0 to 4 with step(self) as 3; returns what step returned."""
        for label, conn in self.mngdb_conns.items():
            rows = run(conn, 'SELECT udb_validity FROM server_info WHERE serverid = %s', [self.serverid])
            self.previous[label] = rows[0]['udb_validity'] if rows else None
        while True:
            if self.undone:
                self._rest_between_freezes()
            self._wait_before_freeze()
            self.started = time.monotonic()
            self.window = None
            try:
                for conn in self.mngdb_conns.values():
                    set_validity(conn, self.serverid, 0)
                pause(self.notice_wait, self.notice_wait)  # the notice: the time itself is what drivers need
                busy = self._wait_until_idle(self.margin)
                if busy:
                    raise FreezeAgain('%d session(s) still had a transaction open %.1fs after the freeze began'
                                      % (len(busy), time.monotonic() - self.started), busy)
                result = step(self)
            except FreezeAgain as again:
                window = self._restore(self.previous)
                self._blocked_before.update((s['pid'], s) for s in again.sessions)
                self.undone.append(dict(window=window, reason=again.reason))
                self.say('write freeze undone after %.3fs and tried again later: %s%s'
                         % (window, again.reason,
                            ' (%s)' % describe_blockers(again.sessions) if again.sessions else ''))
                self.window = None  # the window of the freeze that holds; undone ones are in self.undone
                continue
            except BaseException:
                self._restore(self.previous)
                raise
            if self.final_validity is not None:
                self._restore(dict((label, self.final_validity) for label in self.mngdb_conns))
            else:
                self._restore(self.previous)
            return result

    def time_left(self):
        """Seconds left of this freeze's bound (notice + BOUND_BEYOND_NOTICE), for a step's own retries."""
        return self.started + self.notice_wait + BOUND_BEYOND_NOTICE - time.monotonic()

    def idle_again(self, within):
        """Inside the freeze, after wrote_since_idle() said yes: wait at most `within` seconds for the
        writer to finish; the sessions still open ([] when idle)."""
        return self._wait_until_idle(within)

    def wrote_since_idle(self):
        """Whether any other transaction took an id on the watched node since the last idle check began."""
        return self._own_xid() != self.own_xid + 1

    def still_quiet(self):
        """No other transaction took an id on the watched node since the last idle check, and none is open
        now on any node: what the step read meanwhile holds the same committed writes on both nodes --
        its snapshots, and sequences too, which nextval changes outside any snapshot and without an id (a
        driver that ran nextval on one node has its transaction open there until it commits on all)."""
        return not self.wrote_since_idle() and not self._open_transactions()

    # --- step 0: outside the freeze --------------------------------------------------------
    def _rest_between_freezes(self):
        if len(self.undone) >= MAX_FREEZES:
            raise QuiesceError(
                'gave up after %d write freezes of at most %.2fs each were undone (the applications wrote freely '
                'between them); serverid %d stays as it was (%s). The last one: %s. Find what writes during the '
                'freeze, or wait for a quieter moment, then retry'
                % (len(self.undone), max(u['window'] for u in self.undone), self.serverid,
                   shown(set(v for v in self.previous.values() if v is not None)),
                   self.undone[-1]['reason']))
        rest = max(REST_SECONDS, self.notice_wait)
        pause(rest, rest)
        self.waited_before += rest

    def _open_transactions(self):
        own = [conn.info.backend_pid for conn in self.userdb_conns + self.own]
        sessions = []
        for conn in self.userdb_conns:
            sessions += run(conn, OPEN_TRANSACTIONS_SQL, [own], action='look for open transactions')
        return sessions

    def _wait_before_freeze(self):
        began = time.monotonic()
        budget = self.idle_wait_timeout - self.waited_before
        said = {'at': None, 'pids': None}
        blocking = []

        def ready():
            blocking[:] = blocking_before_freeze(self._open_transactions(), self.notice_wait, self._blocked_before)
            pids = sorted(s['pid'] for s in blocking)
            now = time.monotonic()
            if blocking and (pids != said['pids'] or now - said['at'] >= PROGRESS_EVERY):
                said.update(at=now, pids=pids)
                self.say('waiting before the write freeze (the applications keep writing) for %d session(s) to end '
                         'a transaction, %.0fs of idle_wait_timeout %ss left: %s'
                         % (len(blocking), max(0.0, budget - (now - began)), self.idle_wait_timeout,
                            describe_blockers(blocking)))
            return not blocking

        done = ready_within(ready, max(0.0, budget), self.poll)
        self.waited_before += time.monotonic() - began
        if not done:
            undone = (' %d write freeze(s) were begun and undone at once (%s s each);'
                      % (len(self.undone), ', '.join('%.2f' % u['window'] for u in self.undone))) if self.undone else ''
            raise QuiesceError(
                'quiesce timed out: for %ss these sessions kept a transaction open that would not end within a write '
                'freeze of about %.1fs, so none was held;%s serverid %d stays as it was (%s): %s. Let the batch finish '
                'or cancel it (pg_cancel_backend), or raise idle_wait_timeout (the time waited before the freeze, '
                'while the applications keep writing), then retry'
                % (self.idle_wait_timeout, self.notice_wait + BOUND_BEYOND_NOTICE, undone, self.serverid,
                   shown(set(v for v in self.previous.values() if v is not None)),
                   describe_blockers(blocking)))
        self._blocked_before.clear()

    # --- step 2: inside the freeze ---------------------------------------------------------
    def _own_xid(self):
        if self.watch is None:
            return None
        return run(self.watch, OWN_XID_SQL, action='take a transaction id')[0]['xid']

    def _wait_until_idle(self, within):
        """Inside the freeze: wait at most `within` seconds until no other session has a transaction
        open; the sessions still open then ([] when idle)."""
        busy = []

        def idle():
            self.own_xid = self._own_xid()  # before the look: a write that starts during it shows
            busy[:] = self._open_transactions()
            return not busy

        ready_within(idle, within, self.poll)
        return busy

    # --- step 4 ----------------------------------------------------------------------------
    def _restore(self, values):
        failures = []
        for label, conn in self.mngdb_conns.items():
            if values.get(label) is None:
                continue
            try:
                set_validity(conn, self.serverid, values[label])
            except ForestPgError as exc:
                failures.append(str(exc))
        self.window = round(time.monotonic() - self.started, 3)
        if failures:
            wanted = shown(set(v for v in values.values() if v is not None))
            raise QuiesceError('could not end the write freeze on every node: serverid %d may still be 0 '
                               '(write-suppressed) there; set it with forest_mngdb serverid=%d validity=%s. %s'
                               % (self.serverid, self.serverid, wanted, '; '.join(failures)))
        return self.window
