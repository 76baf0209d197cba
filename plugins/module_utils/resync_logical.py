# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The logical replication a resync recovery (method=resync) sets up and takes down, per forest user
database: on the source a publication of the tables that may be published and a logical slot whose
exported snapshot is the reference point; on the target a subscription that starts at that slot.
Its names, what refuses a resync before anything changes (wal_level, tables without a replica
identity), the waits for the subscription to follow, and dropping every piece again (each drop may
be repeated: a rollback, a cleanup or the next run after a killed one)."""

from __future__ import annotations

import time

from .errors import RecoveryError
from .forest_pg import ident, run, sql
from .sync_catalog import USER_SCHEMA
from .wait import WaitTimeout, wait_until

PUBLICATION = 'pgforest_resync'
# The subscription's lag (bytes of the source's WAL it has not confirmed) below which the freeze begins.
CLOSE_ENOUGH = 1 << 20

# The user's permanent tables (partitions included: a partitioned parent has no rows of its own),
# with whether UPDATE and DELETE on the source could still work once the table is in a publication:
# a primary key (the default identity), a replica identity index, or REPLICA IDENTITY FULL the user set.
# Publishing a table without one makes its UPDATEs and DELETEs fail on the source: never done.
PUBLISHABLE_SQL = r"""
SELECT format('%I.%I', n.nspname, c.relname) AS name, n.nspname AS schema, c.relname AS relname,
       c.relreplident = 'f'
       OR (c.relreplident = 'd' AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary))
       OR (c.relreplident = 'i' AND EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident))
       AS identity
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence = 'p' AND """ + USER_SCHEMA + r"""
ORDER BY 2, 3
"""

SLOT_SQL = """
SELECT slot_name, database, active, active_pid, confirmed_flush_lsn::text AS confirmed, wal_status,
       pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::int8 AS lag
FROM pg_replication_slots WHERE slot_name = %s
"""


def slot_name(target, dboid):
    """The slot (and the subscription) of one database's resync: the target's serverid and the source's
    database oid, so two databases never share one and a leftover is found by its name alone."""
    return 'pgforest_resync_%d_%d' % (target, dboid)


def wal_level_refusal(levels):
    """{label: wal_level} of the pair's servers -> None, or why a resync cannot run (pure)."""
    wrong = ['%s has wal_level = %s' % (label, level) for label, level in sorted(levels.items()) if level != 'logical']
    if not wrong:
        return None
    return ('method=resync needs wal_level = logical on both nodes, but %s (a pair provisioned before the '
            'forest_node role set it). Run playbooks/provision.yml (it sets wal_level = logical and restarts the '
            'server), or recover with method=basebackup. Nothing was changed' % ' and '.join(wrong))


def identity_refusal(missing):
    """{userdb: [table names without a replica identity]} -> None, or the refusal (pure)."""
    named = ['%s: %s' % (userdb, ', '.join(tables)) for userdb, tables in sorted(missing.items()) if tables]
    if not named:
        return None
    return ('method=resync publishes only tables with a primary key or a replica identity index (in a publication, '
            'any other table would make UPDATE and DELETE fail on the source), and these have none: %s. Add a '
            'primary key (or ALTER TABLE ... REPLICA IDENTITY USING INDEX / FULL, your choice), or recover with '
            'method=basebackup. Nothing was changed' % '; '.join(named))


def publishable(conn):
    """([tables to publish], [tables without a replica identity]) of one database, names as SQL shows them."""
    rows = run(conn, PUBLISHABLE_SQL, action='list the tables with a replica identity')
    return [row for row in rows if row['identity']], [row['name'] for row in rows if not row['identity']]


def create_publication(conn, tables):
    """The publication of `tables` (rows of publishable()): any of ours left over is replaced first."""
    run(conn, sql.SQL('DROP PUBLICATION IF EXISTS {}').format(ident(PUBLICATION)), action='drop the old publication')
    if tables:
        names = sql.SQL(', ').join(ident(row['schema'], row['relname']) for row in tables)
        query = sql.SQL('CREATE PUBLICATION {} FOR TABLE {}').format(ident(PUBLICATION), names)
    else:
        query = sql.SQL('CREATE PUBLICATION {}').format(ident(PUBLICATION))
    run(conn, query, action='create the publication')


def create_slot(replication_conn, slot):
    """(consistent LSN, exported snapshot) of a new logical slot; the snapshot can be imported (SET
    TRANSACTION SNAPSHOT) only while `replication_conn` is open and runs no other command."""
    result = replication_conn.pgconn.exec_(
        ("CREATE_REPLICATION_SLOT %s LOGICAL pgoutput (SNAPSHOT 'export')" % slot).encode())
    if result.status != 2:  # PGRES_TUPLES_OK
        raise RecoveryError('creating the logical replication slot %s failed: %s'
                            % (slot, (result.error_message or b'').decode(errors='replace').strip()))
    return result.get_value(0, 1).decode(), result.get_value(0, 2).decode()


def subscription_conninfo(node, dbname, passfile):
    """How the target's apply worker reaches the source: the password in the workspace's 0600
    passfile (the server's OS user reads it), never in the target's catalog.  No session options: the
    module's statement_timeout must not end the walsender that streams to the apply worker."""
    return node.conninfo_string(dbname, passfile=passfile, application_name='pgforest_resync', options='')


def create_subscription(conn, name, conninfo):
    """synchronous_commit = on: each applied transaction is flushed when it commits, so the apply worker
    confirms it to the source at once (off, the default, confirms only after the target's WAL writer has
    flushed it, and the cut's wait for the source's position would take seconds of the freeze)."""
    run(conn, sql.SQL("CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH (create_slot = false, slot_name = {}, "
                      "copy_data = false, enabled = true, synchronous_commit = 'on')").format(
        ident(name), sql.Literal(conninfo), ident(PUBLICATION), sql.Literal(name)),
        action='create the subscription %s' % name)


def drop_subscription(conn, name):
    """The subscription gone, its replication origin with it; the source's slot is left to drop_slot (it
    is detached first, so this works with the source down too).  Absent: nothing to do."""
    if not run(conn, 'SELECT 1 FROM pg_subscription WHERE subname = %s AND subdbid = '
                     '(SELECT oid FROM pg_database WHERE datname = current_database())', [name]):
        return False
    for statement in ('ALTER SUBSCRIPTION {} DISABLE', 'ALTER SUBSCRIPTION {} SET (slot_name = NONE)',
                      'DROP SUBSCRIPTION {}'):
        run(conn, sql.SQL(statement).format(ident(name)), action='drop the subscription %s' % name)
    return True


def drop_slot(conn, slot, timeout=10):
    """The logical slot gone (`conn` on the database it was created in); the walsender of a
    subscription just dropped may still hold it for a moment.  Absent: nothing to do."""
    def dropped():
        rows = run(conn, 'SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s', [slot])
        if rows and rows[0]['active_pid'] is not None:
            run(conn, 'SELECT pg_terminate_backend(%s)', [rows[0]['active_pid']])
            return False
        if rows:
            run(conn, 'SELECT pg_drop_replication_slot(%s)', [slot])
        return True
    existed = bool(run(conn, 'SELECT 1 FROM pg_replication_slots WHERE slot_name = %s', [slot]))
    try:
        wait_until('replication slot %s to be released' % slot, dropped, timeout, 0.1)
    except WaitTimeout as exc:
        raise RecoveryError('%s: a walsender keeps using it; run phase=cancel (or cleanup) again' % exc)
    return existed


def drop_publication(conn):
    run(conn, sql.SQL('DROP PUBLICATION IF EXISTS {}').format(ident(PUBLICATION)), action='drop the publication')


def slot_state(conn, slot):
    """The slot's row (SLOT_SQL) on the source, or a RecoveryError when it is gone or invalidated:
    past max_slot_wal_keep_size the source dropped the WAL the subscription still needed."""
    rows = run(conn, SLOT_SQL, [slot])
    if not rows:
        raise RecoveryError('the replication slot %s is gone from the source: someone dropped it' % slot)
    if rows[0]['wal_status'] == 'lost':
        raise RecoveryError('the replication slot %s was invalidated: the subscription fell more than '
                            'max_slot_wal_keep_size behind and the source removed the WAL it needed. Run the '
                            'recovery again when the load is lower, or raise forest_node_max_slot_wal_keep_size'
                            % slot)
    return rows[0]


def catch_up(conns, timeout):
    """Before the freeze: every slot ({slot: connection to its database on the source}) in use by its
    subscription's apply worker and confirmed within CLOSE_ENOUGH of the source's position.  In use
    first: the target's launcher starts one subscription's worker at a time, the next one up to
    wal_retrieve_retry_interval (5 s) later, and a slot nobody reads from lags by nothing yet."""
    lags = {}

    def close():
        rows = dict((slot, slot_state(conn, slot)) for slot, conn in conns.items())
        lags.update((slot, row['lag'] if row['active'] else 'not yet read by its subscription')
                    for slot, row in rows.items())
        return all(row['active'] and row['lag'] is not None and row['lag'] <= CLOSE_ENOUGH for row in rows.values())
    try:
        wait_until('the subscriptions to come within 1 MB of the source', close, timeout, 0.2,
                   state=lambda: 'behind: %s' % ', '.join('%s %s' % item for item in sorted(lags.items())))
    except WaitTimeout as exc:
        raise RecoveryError('%s: the source writes faster than the target applies; retry when the load is lower '
                            'or raise catch_up_timeout' % exc)
    return max(list(lags.values()) or [0])


def wait_applied(conns, lsn, timeout):
    """Inside the freeze: every slot's subscription has applied (and confirmed) the source up to `lsn`.
    {slot: seconds it took}."""
    behind = {}
    took = {}
    started = time.monotonic()

    def applied():
        for slot, conn in conns.items():
            if slot in took:
                continue
            row = slot_state(conn, slot)
            done = run(conn, 'SELECT %s::pg_lsn >= %s::pg_lsn AS done', [row['confirmed'] or '0/0', lsn])[0]['done']
            if done:
                behind.pop(slot, None)
                took[slot] = round(time.monotonic() - started, 3)
            else:
                behind[slot] = row['lag']
        return not behind
    try:
        wait_until('the subscriptions to apply the source up to %s inside the write freeze' % lsn, applied,
                   timeout, 0.01, state=lambda: 'behind: %s' % ', '.join('%s %s bytes' % i for i in sorted(behind.items())))
    except WaitTimeout as exc:
        raise RecoveryError('%s: the target applies too slowly; retry when the load is lower or raise '
                            'replay_wait_timeout' % exc)
    return took
