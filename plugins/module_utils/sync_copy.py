# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copying rows from a source to a target: the one binary COPY loop between two connections
(some rows or a whole table), and whole tables piped `psql | psql` in the source's snapshot."""

from __future__ import annotations

import os
import shutil

from .child_pipe import Pipe, PipeError
from .forest_pg import error_from, ident, psycopg, run, sql
from .lock_waits import LOCK_NOT_AVAILABLE, lock_wait_error
from .sync_catalog import DbsyncError, table_name


def copy_between(source, target, copy_out, copy_in, table):
    """The copy loop: the output of the statement copy_out on source streamed into copy_in on
    target (binary COPY, both), chunk by chunk; table names the table in messages.
    Returns (rows, bytes)."""
    moved = 0
    try:
        with source.cursor() as out_cur, target.cursor() as in_cur:
            with out_cur.copy(copy_out) as out, in_cur.copy(copy_in) as into:
                for chunk in out:
                    into.write(chunk)
                    moved += len(chunk)
            return max(in_cur.rowcount, 0), moved
    except psycopg.Error as exc:
        raise error_from(exc, getattr(target, 'forest_where', '?'), 'copy rows of %s' % table_name(table))


def copy_rows(source, target, table_sql, keys=None):
    """The rows of a compared table (all, or those with the given keys), its columns listed as
    its TableSql has them; returns (rows, bytes)."""
    return copy_between(source, target, table_sql.copy_out(keys), table_sql.copy_in(), table_sql.table)


def copy_relation(source, target, table):
    """The whole of a table known by its name only ({schema, name}): every column but generated
    ones, as COPY does without a column list; returns (rows, bytes)."""
    relation = ident(table['schema'], table['name'])
    return copy_between(source, target, sql.SQL('COPY {} TO STDOUT (FORMAT binary)').format(relation),
                        sql.SQL('COPY {} FROM STDIN (FORMAT binary)').format(relation), table)


def find_psql(copy_with):
    """psql's path when whole tables should be piped psql to psql, else None (Python copies)."""
    if copy_with == 'python':
        return None
    found = shutil.which('psql')
    if copy_with == 'psql' and not found:
        raise DbsyncError('copy_with=psql, but psql is not on PATH: install the PostgreSQL client or use '
                          'copy_with=python')
    return found


def referenced_by_foreign_keys(conn, table):
    return bool(run(conn, "SELECT 1 FROM pg_constraint WHERE contype = 'f' AND confrelid = "
                          "format('%%I.%%I', %s::text, %s::text)::regclass LIMIT 1",
                    [table['schema'], table['name']], action='look for foreign keys to %s' % table_name(table)))


def pipe_table(psql, source, target, snapshot, table_sql, truncate, context, names=('source', 'target')):
    """Copy a whole table as `psql COPY TO STDOUT | psql -1 COPY FROM STDIN`: the
    source side reads the exported snapshot; the target side empties and fills
    the table in one transaction (triggers and FK checks off), so it is fully
    replaced or untouched.  source/target: (Node, dbname); context: a connection to the
    target's database (quoting, and who holds a lock the copy waited for in vain); names: how
    messages name the two nodes.  Returns (rows, bytes)."""
    def as_text(query):
        return query.as_string(context)

    script = 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\n%s;\n%s;\nCOMMIT;\n' % (
        as_text(sql.SQL('SET TRANSACTION SNAPSHOT {}').format(sql.Literal(snapshot))), as_text(table_sql.copy_out()))
    empty = table_sql.truncate() if truncate else table_sql.delete()
    freeze = truncate and table_sql.table['kind'] == 'r'
    # VERBOSITY=verbose: errors carry their SQLSTATE, whatever the server's lc_messages.
    options = ['--no-psqlrc', '--set=ON_ERROR_STOP=1', '--set=VERBOSITY=verbose']
    reader = [psql, '--quiet'] + options + ['--dbname=' + source[0].conninfo_string(source[1], bulk=True)]
    # Not --quiet: the writer's last line is COPY's tag, "COPY <rows>".
    writer = [psql] + options + ['--single-transaction', '--dbname=' + target[0].conninfo_string(target[1], bulk=True),
                                 '--command=SET LOCAL session_replication_role = replica',
                                 '--command=' + as_text(empty), '--command=' + as_text(table_sql.copy_in(freeze))]
    name = table_name(table_sql.table)
    sides = ('the source side (%s, COPY TO STDOUT)' % names[0], 'the target side (%s, COPY FROM STDIN)' % names[1])
    try:
        pipe = Pipe(reader, source[0].child_env(os.environ), writer, target[0].child_env(os.environ),
                    script.encode('utf-8'), sides).run('copy of %s (the target table was left as it was)' % name)
    except PipeError as exc:
        if exc.first == 1 and LOCK_NOT_AVAILABLE in exc.stderr[1]:
            raise lock_wait_error(context, table_sql.table, 'AccessExclusiveLock' if truncate else 'RowExclusiveLock',
                                  'copy of %s: %s' % (name, names[1])) from None
        raise DbsyncError(str(exc)) from None
    tags = [line.split() for line in pipe.writer_output.splitlines()]
    rows = [int(tag[1]) for tag in tags if len(tag) == 2 and tag[0] == 'COPY' and tag[1].isdigit()]
    if not rows:
        raise DbsyncError('copy of %s: psql reported no row count' % name)
    return rows[-1], pipe.moved
