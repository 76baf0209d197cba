# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What counts as a write in a freeze (docs/recovery.md, "What counts as a write in the freeze").

An online recovery promotes the target at a WAL position of the source, inside the write freeze.
A write the source takes after that position is lost on the target -- if it changes user data of a
forest database. Busy servers write all the time without changing any: autovacuum and ANALYZE
(pg_statistic, pg_class's counters updated in place), vacuum's own records, hint bits, and the
tool's own sessions. So the cut does not ask "did a transaction id move?" but:

1. which transaction ids were taken on the source between the idle check and the promotion: the
   cut takes an id of its own before and after (quiesce.OWN_XID_SQL), so the ids in between are
   exactly the others';
2. for each, its status: aborted ones wrote nothing that stays; one still in progress may still
   write -- it counts when its session is on a forest database (pg_stat_activity names it);
3. for the committed ones, their WAL records since the position (pg_walinspect), classified by
   record type (a row inserted, updated or deleted, or a new relation file) and by relation
   (pg_statistic and pg_statistic_ext_data, and their TOAST, are ANALYZE's).
"""

from __future__ import annotations

import re

from .errors import ForestError
from .forest_pg import run

# More ids than this in a freeze of about a second is no stray driver: refuse without reading them.
MOST_XIDS = 100000
XID_WRAP = 1 << 32

XIDS_SQL = """
SELECT x AS xid, pg_xact_status(x::text::xid8) AS status
FROM generate_series(%s::int8 + 1, %s::int8 - 1) AS x
"""
# A VACUUM or ANALYZE running as its own command (a DBA's maintenance loop): it changes no user data.
MAINTENANCE_COMMAND = "(state = 'active' AND xact_start = query_start AND query ~* '^\\s*(vacuum|analyze|analyse)\\y')"
# Sessions whose transaction holds one of the ids (pg_stat_activity shows the 32-bit id); autovacuum
# and maintenance commands left out.
HOLDERS_SQL = """
SELECT backend_xid::text::int8 AS xid32, pid, datname, usename, application_name,
       host(client_addr) AS client_addr, left(query, 80) AS query
FROM pg_stat_activity
WHERE backend_xid IS NOT NULL AND backend_xid::text::int8 = ANY(%s)
  AND backend_type <> 'autovacuum worker' AND NOT """ + MAINTENANCE_COMMAND
WAL_RECORDS_SQL = """
SELECT xid::text::int8 AS xid32, resource_manager, record_type,
       coalesce(block_ref, '') || ' ' || coalesce(description, '') AS refs
FROM pg_get_wal_records_info(%s::pg_lsn, pg_current_wal_flush_lsn())
WHERE xid::text <> '0'
"""
# ANALYZE's tables in one database: their relation files, by name.
STATISTICS_FILES_SQL = """
SELECT pg_relation_filenode(c.oid)::int8 AS filenode, c.relname
FROM pg_class c
WHERE c.oid IN ('pg_catalog.pg_statistic'::regclass, 'pg_catalog.pg_statistic_ext_data'::regclass)
   OR c.oid IN (SELECT reltoastrelid FROM pg_class
                WHERE oid IN ('pg_catalog.pg_statistic'::regclass, 'pg_catalog.pg_statistic_ext_data'::regclass))
"""
RELATION_NAME_SQL = """
SELECT coalesce(pg_filenode_relation(0, %s::oid)::regclass::text, 'relation file ' || %s::text) AS name
"""

# The record types that change user data (or the schema): a row in, changed or out, or a new
# relation file (TRUNCATE, CREATE, a rewrite). Index records follow their heap record; vacuum's
# (PRUNE, VACUUM, FREEZE_PAGE, VISIBLE), in-place catalog updates (INPLACE), row locks (LOCK),
# sequence advances (copied after the check anyway) and smgr truncations by vacuum do not count.
DATA_RECORDS = {
    'Heap': ('INSERT', 'UPDATE', 'HOT_UPDATE', 'DELETE', 'TRUNCATE', 'CONFIRM'),
    'Heap2': ('MULTI_INSERT',),
    'Storage': ('CREATE',),
}
# "blkref #0: rel 1663/16384/16385 ..." (tablespace/database/relfilenode), "base/16384/16390" (smgr).
RELATION_IN_WAL = re.compile(r'\brel \d+/(\d+)/(\d+)|\bbase/(\d+)/(\d+)')


class FreezeWritesError(ForestError):
    pass


def changes_data(resource_manager, record_type):
    """Whether a WAL record of this kind changes rows or relation files (`+INIT` variants too)."""
    kind = (record_type or '').split('+')[0].strip()
    return kind in DATA_RECORDS.get(resource_manager, ())


def data_writes(records, database_oids, statistics_files):
    """{database oid: {relfilenode: records}} of the records (WAL_RECORDS_SQL rows) that change user
    data in one of `database_oids`; statistics_files: {database oid: set of ANALYZE's relfilenodes}."""
    wanted = set(int(oid) for oid in database_oids)
    found = {}
    for record in records:
        if not changes_data(record['resource_manager'], record['record_type']):
            continue
        for match in RELATION_IN_WAL.finditer(record['refs']):
            oid = int(match.group(1) or match.group(3))
            filenode = int(match.group(2) or match.group(4))
            if oid in wanted and filenode not in statistics_files.get(oid, ()):
                found.setdefault(oid, {})
                found[oid][filenode] = found[oid].get(filenode, 0) + 1
                break
    return found


def xid32(xid):
    return int(xid) % XID_WRAP


def look(admin, before, after, position, forest_dbs):
    """The writes a client made into a forest database between our own transaction ids `before` and
    `after` (WAL from `position` on).  admin: a connection to a non-forest database of the source;
    forest_dbs: {database oid: (name, connection to it)}.  Returns (lost, harmless, open):
    lost {name: [(relation, records)]}, harmless {transactions, committed, wal_records} (what was looked at),
    open [session] of transactions still in progress on a forest database."""
    others = after - before - 1
    if others <= 0:
        return {}, {}, []
    if others > MOST_XIDS:
        raise FreezeWritesError('%d transactions took an id on the source during the write freeze: not a driver '
                                'that missed it but an application or job writing through it' % others)
    statuses = run(admin, XIDS_SQL, [before, after], action='read the status of the transactions of the freeze')
    in_progress = [row['xid'] for row in statuses if row['status'] == 'in progress']
    committed = set(xid32(row['xid']) for row in statuses if row['status'] == 'committed')
    names = dict((oid, name) for oid, (name, _conn) in forest_dbs.items())
    still_open = []
    if in_progress:
        holders = run(admin, HOLDERS_SQL, [[xid32(x) for x in in_progress]], action='name the open transactions')
        still_open = [h for h in holders if h['datname'] in names.values()]
    lost, harmless = {}, {}
    if committed:
        # A transaction committed after `after` was taken has its records after our commit's flush:
        # one more id of our own, committed synchronously, flushes every record written before it.
        run(admin, 'SET synchronous_commit TO on', action='flush the WAL')
        run(admin, 'SELECT pg_current_xact_id()::text AS xid', action='flush the WAL')
        created = not run(admin, "SELECT 1 FROM pg_extension WHERE extname = 'pg_walinspect'")
        if created:
            run(admin, 'CREATE EXTENSION pg_walinspect', action='create pg_walinspect to read the WAL of the freeze')
        try:
            records = [r for r in run(admin, WAL_RECORDS_SQL, [position], action='read the WAL of the freeze')
                       if r['xid32'] in committed]
        finally:
            if created:
                run(admin, 'DROP EXTENSION IF EXISTS pg_walinspect')
        statistics = dict((oid, set(row['filenode'] for row in run(conn, STATISTICS_FILES_SQL,
                                                                   action='find the statistics tables')))
                          for oid, (_name, conn) in forest_dbs.items())
        written = data_writes(records, forest_dbs, statistics)
        for oid, files in sorted(written.items()):
            conn = forest_dbs[oid][1]
            lost[names[oid]] = [(run(conn, RELATION_NAME_SQL, [filenode, filenode])[0]['name'], count)
                                for filenode, count in sorted(files.items())]
        harmless = dict(transactions=others, committed=len(committed), wal_records=len(records))
    return lost, harmless, still_open


def describe_lost(lost):
    """`lost` of look() in words."""
    def relation(name, records):
        return '%s (%d WAL record%s)' % (name, records, '' if records == 1 else 's')
    return '; '.join('%s: %s' % (db, ', '.join(relation(name, n) for name, n in relations))
                     for db, relations in sorted(lost.items()))


def describe_open(sessions):
    return '; '.join('pid %(pid)s %(usename)s@%(datname)s (%(application_name)s) from %(client_addr)s: %(query)s'
                     % dict(s, client_addr=s['client_addr'] or 'local socket',
                            application_name=s['application_name'] or 'no name') for s in sessions)
