# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who holds a lock a step waited for in vain: a lock wait past lock_timeout becomes a
DbsyncError naming the sessions in the way and what to do about them."""

from __future__ import annotations

import contextlib

from .forest_pg import ForestPgError, run
from .sync_catalog import DbsyncError, table_name

# SQLSTATE lock_not_available: a lock wait ran past lock_timeout.
LOCK_NOT_AVAILABLE = '55P03'
# PostgreSQL's table-level lock modes, weakest first, and which held modes each requested one
# waits for (the manual's "Conflicting Lock Modes").
LOCK_MODES = ('AccessShareLock', 'RowShareLock', 'RowExclusiveLock', 'ShareUpdateExclusiveLock', 'ShareLock',
              'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
LOCK_CONFLICTS = {  # requested mode: the held modes it waits for
    'AccessShareLock': LOCK_MODES[7:],
    'RowShareLock': LOCK_MODES[6:],
    'RowExclusiveLock': LOCK_MODES[4:],
    'ShareUpdateExclusiveLock': LOCK_MODES[3:],
    'ShareLock': LOCK_MODES[2:4] + LOCK_MODES[5:],  # not itself
    'ShareRowExclusiveLock': LOCK_MODES[2:],
    'ExclusiveLock': LOCK_MODES[1:],
    'AccessExclusiveLock': LOCK_MODES,
}
# Who holds a lock on a table (or any of its partitions) in this database; the holder's session.
LOCK_HOLDERS_SQL = r"""
SELECT l.pid, l.mode, a.backend_type, a.application_name, host(a.client_addr) AS client_addr, a.usename, a.state,
       to_char(a.query_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC' AS query_start,
       round(extract(epoch FROM now() - a.xact_start)::numeric, 1)::float8 AS xact_seconds,
       left(regexp_replace(a.query, '\s+', ' ', 'g'), 100) AS query
FROM (SELECT format('%%I.%%I', %s::text, %s::text)::regclass::oid AS oid) AS t,
     pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.granted AND l.pid IS DISTINCT FROM pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.relation IN (SELECT t.oid UNION ALL SELECT relid FROM pg_partition_tree(t.oid))  -- its partitions too
ORDER BY a.xact_start NULLS FIRST, l.pid, l.mode
"""


def lock_wait_error(conn, table, wanted, where):
    """The DbsyncError of a step on `table` whose lock wait (for mode `wanted`) ran past lock_timeout:
    the sessions holding the table then and there (looked up on conn, a session to the same
    database), and what to do.  where: 'copy of t: serverid 1'."""
    try:
        holders = run(conn, LOCK_HOLDERS_SQL, [table['schema'], table['name']], action='look up who holds %s'
                      % table_name(table))
        waited = run(conn, "SELECT current_setting('lock_timeout') AS setting", action='read lock_timeout')[0]['setting']
    except ForestPgError as exc:  # the lookup is a courtesy: the wait's error is the one to report
        holders, waited = None, None
        where += ' (who held the lock could not be looked up: %s)' % exc
    return DbsyncError(lock_wait_message(table_name(table), where, waited, wanted, holders))


def lock_wait_message(name, where, waited, wanted, holders):
    """The message of a lock wait past lock_timeout (pure): holders are LOCK_HOLDERS_SQL rows
    (None: unknown).  Names the sessions whose locks conflict with `wanted`; when none does (a
    wait for a row, or a holder gone meanwhile), every session holding the table."""
    text = ('%s waited %s (lock_timeout) for %s on %s and gave up; the target table was left as it was'
            % (where, waited or 'lock_timeout', wanted, name))
    if holders is None:
        return text + '. What to do: find the session holding %s (pg_locks) and end it, then run the sync again' % name
    sessions = {}
    for row in holders:
        sessions.setdefault(row['pid'], dict(row, modes=[]))['modes'].append(row['mode'])
    blocking = [s for s in sessions.values() if any(mode in LOCK_CONFLICTS[wanted] for mode in s['modes'])]
    if not sessions:
        return text + ('. No session holds it now (the one that did has ended): run the sync again')
    if blocking:
        text += '. Held by: '
    else:
        blocking = list(sessions.values())
        text += '. No lock on the table itself stood in the way (a row lock may have); sessions holding it: '
    text += '; '.join(describe_lock_holder(s) for s in blocking)
    return text + '. What to do: ' + lock_wait_remedy(blocking)


def describe_lock_holder(session):
    """One session holding a lock, for people (pure)."""
    modes = ', '.join(session['modes'])
    if session['pid'] is None:
        return 'a prepared transaction (pg_prepared_xacts) holding %s' % modes
    if session.get('backend_type') == 'autovacuum worker':
        return 'autovacuum worker pid %s (%s) holding %s' % (session['pid'], session['query'], modes)
    name = session.get('application_name')
    facts = ['application_name %s' % ('"%s"' % name if name else 'unset'),
             'client %s' % (session.get('client_addr') or 'local socket'),
             'user %s' % session.get('usename'),
             session.get('state') or 'state unknown']
    if session.get('xact_seconds') is not None:
        facts.append('transaction open %.1f s' % session['xact_seconds'])
    if session.get('query_start'):
        facts.append('query started %s: %s' % (session['query_start'], session.get('query') or ''))
    return 'pid %s (%s) holding %s' % (session['pid'], ', '.join(facts), modes)


def lock_wait_remedy(sessions):
    """What to do about the sessions in the way (pure)."""
    remedies = []
    if any(s['pid'] is None for s in sessions):
        remedies.append('COMMIT PREPARED or ROLLBACK PREPARED the prepared transaction')
    vacuums = [s for s in sessions if s.get('backend_type') == 'autovacuum worker']
    if any('wraparound' in (s.get('query') or '') for s in vacuums):
        remedies.append('an anti-wraparound autovacuum never gives way to other locks: wait until it ends '
                        '(pg_stat_progress_vacuum)')
    elif vacuums:
        remedies.append('autovacuum gives way to a lock request after deadlock_timeout, so it came back meanwhile')
    clients = [s for s in sessions if s['pid'] is not None and s.get('backend_type') != 'autovacuum worker']
    if clients:
        pids = ', '.join('pid %s' % s['pid'] for s in clients)
        remedies.append('end the transaction of %s where it runs (COMMIT or ROLLBACK), wait for it, or end %s '
                        'with pg_terminate_backend' % (pids, 'it' if len(clients) == 1 else 'them'))
    return '; '.join(remedies) + '; then run the sync again'


@contextlib.contextmanager
def lock_waits_named(conn, table, wanted, where):
    """Around a step that takes a lock on table (mode `wanted`) in its own transaction: a lock wait
    past lock_timeout becomes lock_wait_error, looked up on conn once that transaction is over."""
    try:
        yield
    except ForestPgError as exc:
        if exc.sqlstate != LOCK_NOT_AVAILABLE:
            raise
        raise lock_wait_error(conn, table, wanted, where) from None
