# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The quiesce protocol (docs/recovery.md, "Online recovery"): freeze the applications' writes
around a short critical step.

1. udb_validity of the target := 0 in every reachable management database, with
   NOTIFY, so drivers start no new transaction;
2. wait `notice_wait` seconds (polling drivers notice within
   mngdb_read_duration), then until no other session has a transaction open on
   the user databases, at most `idle_wait_timeout` seconds -- on timeout undo 1
   and fail naming the sessions;
3. the caller's critical step;
4. validity := its final value (the value before, unless told otherwise), NOTIFY.

A driver too slow to see the freeze can still start a write after step 2. A caller that
needs a moment with no write at all (consistent snapshots on both nodes) passes `watch`, a
connection to any database of one node, and after its step asks `wrote_since_idle()`:
PostgreSQL hands out a transaction id to every writing transaction, so an unchanged next id
from before the idle check to after the step proves nothing wrote there meanwhile -- and a
driver writes every node before it commits any, so a write that straddles the step must
take an id on each node. `wait_until_idle_again()` lets the caller retry.
The freeze window (1 to 4) is measured and does not depend on the data size.
"""

from __future__ import annotations

import time

from .errors import ForestError
from .forest_pg import ForestPgError, run
from .mngdb import set_validity

OPEN_TRANSACTIONS_SQL = """
SELECT pid, usename, application_name, host(client_addr) AS client_addr, state,
       round(extract(epoch FROM now() - xact_start)::numeric, 1)::float8 AS open_seconds, left(query, 80) AS query
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend'
  AND xact_start IS NOT NULL AND pid <> ALL(%s)
ORDER BY xact_start
"""


class QuiesceError(ForestError):
    pass


class Quiesce(object):
    """Context manager: `with Quiesce(...) as freeze: critical step`; freeze.window after."""

    def __init__(self, mngdb_conns, userdb_conns, serverid, notice_wait, idle_wait_timeout,
                 final_validity=None, poll=0.05, watch=None):
        self.mngdb_conns = mngdb_conns      # {label: connection to a management database}
        self.userdb_conns = userdb_conns    # connections whose databases must be idle
        self.serverid = serverid
        self.notice_wait = notice_wait
        self.idle_wait_timeout = idle_wait_timeout
        self.final_validity = final_validity
        self.poll = poll
        self.watch = watch                  # autocommit connection to one node (wrote_since_idle)
        self.next_xid = None
        self.previous = {}
        self.started = None
        self.window = None
        self.waited_for_idle = None

    def __enter__(self):
        for label, conn in self.mngdb_conns.items():
            rows = run(conn, 'SELECT udb_validity FROM server_info WHERE serverid = %s', [self.serverid])
            self.previous[label] = rows[0]['udb_validity'] if rows else None
        self.started = time.monotonic()
        try:
            for conn in self.mngdb_conns.values():
                set_validity(conn, self.serverid, 0)
            time.sleep(self.notice_wait)
            self._wait_until_idle()
        except BaseException:
            self._restore(self.previous)
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None and self.final_validity is not None:
            final = dict((label, self.final_validity) for label in self.mngdb_conns)
        else:
            final = self.previous
        self._restore(final)
        return False

    def wait_until_idle_again(self):
        """After wrote_since_idle() said yes: wait for the writer to finish, for a new try."""
        self._wait_until_idle()

    def wrote_since_idle(self):
        """Whether any transaction took an id on the watched node since the last idle check began."""
        return self._next_xid() != self.next_xid

    def _next_xid(self):
        if self.watch is None:
            return None
        return run(self.watch, 'SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS xid',
                   action='read the next transaction id')[0]['xid']

    def _wait_until_idle(self):
        own = [conn.info.backend_pid for conn in self.userdb_conns]
        waited = time.monotonic()
        deadline = waited + self.idle_wait_timeout
        while True:
            self.next_xid = self._next_xid()  # before the look: a write that starts during it shows
            busy = []
            for conn in self.userdb_conns:
                busy += run(conn, OPEN_TRANSACTIONS_SQL, [own], action='look for open transactions')
            if not busy:
                self.waited_for_idle = round(time.monotonic() - waited, 3)
                return
            if time.monotonic() >= deadline:
                raise QuiesceError(
                    'quiesce timed out: after %ss these sessions still had a transaction open, so the write '
                    'freeze was undone (udb_validity of serverid %d set back to %s): %s. End or cancel them '
                    '(pg_cancel_backend), or raise idle_wait_timeout, then retry'
                    % (self.idle_wait_timeout, self.serverid, sorted(set(self.previous.values())),
                       '; '.join('pid %(pid)s %(usename)s (%(application_name)s) from %(client_addr)s, '
                                 '%(state)s for %(open_seconds)ss: %(query)s' % s for s in busy)))
            time.sleep(self.poll)

    def _restore(self, values):
        failures = []
        for label, conn in self.mngdb_conns.items():
            if values.get(label) is None:
                continue
            try:
                set_validity(conn, self.serverid, values[label])
            except ForestPgError as exc:
                failures.append(str(exc))
        self.window = round(time.monotonic() - self.started, 3) if self.started else None
        if failures:
            raise QuiesceError('could not end the write freeze on every node: serverid %d may still be 0 '
                               '(write-suppressed) there; set it with forest_mngdb serverid=%d validity=%s. %s'
                               % (self.serverid, self.serverid, sorted(set(values.values())), '; '.join(failures)))
