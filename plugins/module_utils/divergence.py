# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cheap split-brain check: exact row counts of every user table on both nodes.

A driver commits each transaction on one node, then the other, so under load the
counts of the two nodes differ for an instant.  Only a difference that is the
same in every round is reported; forest_dbsync mode=compare gives the exact
rows (it compares content in snapshots taken in one short freeze)."""

from __future__ import annotations

import time

from .forest_pg import (
    Node, close_all, ident, run, shown_name, sql)
from .sync_catalog import USER_TABLES_SQL, unlogged_tables
from .wording import shown


def row_counts(conn):
    """{schema.table: rows} of every user table (sync_catalog.USER_TABLES_SQL) of conn's database (exact counts)."""
    return dict((row['name'], run(conn, sql.SQL('SELECT count(*) AS n FROM {}').format(
        ident(row['schema'], row['relname'])), action='count rows of ' + row['name'])[0]['n'])
        for row in run(conn, USER_TABLES_SQL, action='list tables'))


def differences(counts):
    """{table: {serverid: rows}} for the tables whose counts differ ({} when equal); counts = {sid: {table: n}}."""
    tables = sorted(set().union(*[set(found) for found in counts.values()]))
    found = dict((table, dict((str(sid), counts[sid].get(table)) for sid in sorted(counts))) for table in tables)
    return dict((table, rows) for table, rows in found.items() if len(set(rows.values())) > 1)


def stable(rounds):
    """The differences seen, with the same counts, in every round."""
    first = rounds[0]
    return dict((table, rows) for table, rows in first.items() if all(other.get(table) == rows for other in rounds[1:]))


def compare_row_counts(params, status, rounds=3, pause=0.5):
    """Count the rows of every table on both nodes `rounds` times; stop at the first equal round."""
    nodes = dict((node['serverid'], Node.from_params(params).sibling(node['host'], node['port']))
                 for node in status['nodes'] if node['reachable'])
    if len(nodes) != 2:
        return dict(compared='counts', equal=None, rounds=0, differences={}, tables_compared=0,
                    reason='both nodes must answer to be compared')
    conns = dict((sid, node.connect(params['userdb'])) for sid, node in nodes.items())
    seen, tables = [], set()
    try:
        # A crash of either server empties them; a physical copy leaves them empty.
        unlogged = sorted(set(shown_name(table['schema'], table['name']) for conn in conns.values()
                              for table in unlogged_tables(conn)))
        for number in range(rounds):
            if number:
                time.sleep(pause)
            counts = dict((sid, row_counts(conn)) for sid, conn in conns.items())
            tables.update(*[set(found) for found in counts.values()])
            seen.append(differences(counts))
            if not seen[-1]:
                break
    finally:
        close_all(conns.values())
    lasting = stable(seen)
    return dict(compared='counts', equal=not lasting, rounds=len(seen), differences=lasting,
                tables_compared=len(tables), unlogged_tables=unlogged)


def _rows_on(sid, count):
    return 'serverid %s has %s rows' % (sid, shown(count)) if count is not None else 'serverid %s lacks it' % sid


def flag_divergence(status, comparison):
    """A healthy pair whose user databases differ is diverged (guide §11.1.2, 11.2)."""
    status['user_databases'] = comparison
    if status['cluster_state'] != 'healthy' or comparison['equal'] is not False:
        return status
    tables = '; '.join('%s: %s' % (table, ', '.join(_rows_on(sid, count) for sid, count in rows.items()))
                       for table, rows in sorted(comparison['differences'].items())[:5])
    status.update(cluster_state='diverged', healthy=False, recommended_action=dict(
        action='compare_and_repair',
        reason='both nodes are valid but their user databases differ in %d table(s), the same in %d reads '
               '(%s): applications wrote to one node only (split brain, guide §11.1.2/11.2) or around the driver. '
               'Find the rows with forest_dbsync mode=compare, decide which node is right, then repair the other '
               '(forest_dbsync mode=sync source=N)' % (len(comparison['differences']), comparison['rounds'], tables)))
    return status
