# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The user's tables as a compare sees them: which relations are the user's (the one definition,
for compares, row counts and unlogged tables alike), their columns and row keys, whether two
nodes define a table alike, and how messages name a table.  DbsyncError is the compare's error."""

from __future__ import annotations

import fnmatch

from .errors import ForestError
from .forest_pg import run, shown_name

# Which relations are the user's: the one definition, for dbsync, row counts (forest_status
# compare=counts, backup manifests) and the unlogged-table copy alike.  System schemas are not;
# a user table is an ordinary or partitioned table that is not itself a partition (its
# partitions are read through it); tables of extensions count like any other.
USER_SCHEMA = r"n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'"
USER_TABLE = r"c.relkind IN ('r', 'p') AND NOT c.relispartition AND " + USER_SCHEMA

USER_TABLES_SQL = r"""
SELECT format('%I.%I', n.nspname, c.relname) AS name, n.nspname AS schema, c.relname AS relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE """ + USER_TABLE + r"""
ORDER BY n.nspname, c.relname
"""

# The row key: the primary key; else the replica identity index; else the first
# (by name) unique index on plain NOT NULL columns (no expression, no predicate).
# Key columns only (not an index's INCLUDE columns); columns in table order.
# Roles that own or were granted something in the current database, its owner among them: what a copy of
# its definitions needs on the receiving server (a logical restore, a resync into a new cluster).
ROLES_SQL = """SELECT DISTINCT pg_get_userbyid(refobjid) AS name FROM pg_shdepend
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND refclassid = 'pg_authid'::regclass
UNION SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database() ORDER BY 1"""
# Whether the current database holds anything of its own beyond what a new database has (the schema public):
# a relation, function, type or schema in a user schema.
USER_OBJECTS_SQL = r"""
SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE """ + USER_SCHEMA + r""")
    OR EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE """ + USER_SCHEMA + r""")
    OR EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.typrelid = 0
               AND t.typelem = 0 AND """ + USER_SCHEMA + r""")
    OR EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname <> 'public' AND """ + USER_SCHEMA + r""") AS found"""


def roles_needed(conn):
    """[role names] the current database's objects need (ROLES_SQL)."""
    return [row['name'] for row in run(conn, ROLES_SQL, action='list the roles the database needs')]


def has_user_objects(conn):
    return run(conn, USER_OBJECTS_SQL, action='look for objects of the database')[0]['found']


CATALOG_SQL = r"""
SELECT n.nspname AS schema, c.relname AS name, c.relkind::text AS kind,
       coalesce((SELECT json_agg(json_build_object('name', a.attname,
                                                   'type', format_type(a.atttypid, a.atttypmod),
                                                   'generated', a.attgenerated <> '') ORDER BY a.attnum)
                 FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]') AS columns,
       (SELECT json_agg(a.attname ORDER BY k.ord)
          FROM pg_index i CROSS JOIN unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indexrelid = rowkey.indexrelid AND k.ord <= i.indnkeyatts) AS row_key,
       rowkey.via AS row_key_via,
       c.reltuples::bigint AS estimate
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL (
    SELECT i.indexrelid,
           CASE WHEN i.indisprimary THEN 'primary key'
                WHEN i.indisreplident THEN format('replica identity index %I', ic.relname)
                ELSE format('unique index %I', ic.relname) END AS via
    FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
    WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
      AND (i.indisprimary OR NOT EXISTS (
            SELECT 1 FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
            WHERE k.ord <= i.indnkeyatts AND NOT a.attnotnull))
    ORDER BY i.indisprimary DESC, i.indisreplident DESC, ic.relname
    LIMIT 1) AS rowkey ON true
WHERE """ + USER_TABLE + r"""
ORDER BY 1, 2
"""

# Unlogged tables, partitions included (a partition can be unlogged under a logged
# parent): a crash of a server empties them, a physical copy leaves them empty.
UNLOGGED_SQL = r"""
SELECT n.nspname AS schema, c.relname AS name, pg_total_relation_size(c.oid) AS bytes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND c.relpersistence = 'u' AND """ + USER_SCHEMA + r"""
ORDER BY 1, 2
"""


class DbsyncError(ForestError):
    pass


def selected(names, include, exclude):
    """include/exclude are fnmatch patterns on 'schema.table', written plain
    (Sales Ünïcode.Order Items) or quoted as in results ("Sales Ünïcode"."Order Items").
    names: (schema, table)."""
    forms = ('%s.%s' % tuple(names), shown_name(*names))

    def matches(pattern):
        return any(fnmatch.fnmatchcase(form, pattern) for form in forms)
    if include and not any(matches(pattern) for pattern in include):
        return False
    return not any(matches(pattern) for pattern in exclude or [])


def read_catalog(conn, include=None, exclude=None):
    """{'schema.table': {schema, name, kind, columns, row_key, row_key_via, estimate}} of the user tables."""
    tables = {}
    for row in run(conn, CATALOG_SQL, action='read the table catalog'):
        if selected((row['schema'], row['name']), include, exclude):
            tables[shown_name(row['schema'], row['name'])] = row
    return tables


def _column_text(column):
    return '%s %s%s' % (shown_name(column['name']), column['type'], ' generated' if column['generated'] else '')


def unlogged_tables(conn):
    """[{schema, name, bytes}] of the unlogged tables (partitions included)."""
    return run(conn, UNLOGGED_SQL, action='list unlogged tables')


def schema_difference(source, target):
    """None when both sides define the table alike, else what differs.

    Column order matters: a driver sends the same INSERT ... VALUES (...) without
    a column list to both nodes, and it must land in the same columns."""
    if source['columns'] != target['columns'] and \
            sorted(map(_column_text, source['columns'])) == sorted(map(_column_text, target['columns'])):
        return ('column order differs: (%s) on source, (%s) on target: an INSERT without a column list would put '
                'values in different columns on the two nodes. Recreate the table on one node with the other\'s '
                'column order; it is never synced as it is'
                % (', '.join(shown_name(c['name']) for c in source['columns']),
                   ', '.join(shown_name(c['name']) for c in target['columns'])))
    if source['columns'] != target['columns']:
        src = dict((c['name'], c['type'] + (' generated' if c['generated'] else '')) for c in source['columns'])
        tgt = dict((c['name'], c['type'] + (' generated' if c['generated'] else '')) for c in target['columns'])
        diffs = ['%s: %s on source, %s on target' % (name, src.get(name, 'absent'), tgt.get(name, 'absent'))
                 for name in sorted(set(src) | set(tgt)) if src.get(name) != tgt.get(name)]
        return 'columns differ: ' + '; '.join(diffs)
    if (source['row_key'] or [], source['row_key_via']) != (target['row_key'] or [], target['row_key_via']):
        return 'row keys differ: %s on source, %s on target' % (describe_key(source), describe_key(target))
    return None


def describe_key(table):
    """'primary key (id)', 'unique index "t_code_key" (code)' or 'no key'."""
    if not table['row_key']:
        return 'no primary key or unique NOT NULL key'
    return '%s (%s)' % (table['row_key_via'], ', '.join(shown_name(name) for name in table['row_key']))


def table_name(table):
    """schema.table as messages and results show it (quoted where SQL needs it)."""
    return shown_name(table['schema'], table['name'])
