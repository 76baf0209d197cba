# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare two user databases by content and repair the target from the source.

Every table is hashed per bucket of primary keys on both nodes; only buckets
whose (row count, hash sum) differ are read row by row, so the differing keys
are found without moving the tables.  Row text is the type output of each
column with the session settings pinned (PINNED_SETTINGS), so the hashes do not
depend on either server's configuration; ROW(...)::text keeps NULL apart from
every string and column boundaries unambiguous.
"""

from __future__ import annotations

import array
import contextlib
import copy
import fnmatch
import os
import shutil
import sys

from .child_pipe import Pipe, PipeError
from .errors import ForestError
from .forest_pg import (
    ForestPgError, error_from, ident, psycopg, run, shown_name)

try:
    from psycopg import sql
except ImportError:  # reported by the module through PSYCOPG_IMPORT_ERROR
    sql = None

# Settings that change how values are written as text.
PINNED_SETTINGS = (
    ('DateStyle', 'ISO, YMD'),
    ('IntervalStyle', 'postgres'),
    ('TimeZone', 'UTC'),
    ('extra_float_digits', '3'),
    ('bytea_output', 'hex'),
    ('lc_monetary', 'C'),
)
# Buckets of 128 keys: grouping 2 M rows in 16-key buckets took 0.64 s where 128-key buckets took
# 0.46 s (the bare hash scan 0.39 s); with 0.1 % of the rows drifted, listing the rows of the
# differing buckets then costs about what 64-key buckets save in grouping (bench/dbsync_bench.py).
ROWS_PER_BUCKET = 128
MAX_BUCKETS = 1 << 18
PACKED_ROWS = 1 << 22  # rows per query when localizing a table with one integer key (64 MB)
# Our own sessions group many buckets in memory (HashAggregate).
SESSION_WORK_MEM = '128MB'

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

SEQUENCES_SQL = r"""
SELECT n.nspname AS schema, c.relname AS name
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S' AND """ + USER_SCHEMA + r"""
ORDER BY 1, 2
"""


class DbsyncError(ForestError):
    pass


def pin_settings(conn):
    # Timeouts come from the connection (Node.session_options(bulk=True)).
    for name, value in PINNED_SETTINGS + (('work_mem', SESSION_WORK_MEM), ('jit', 'off')):
        run(conn, 'SELECT set_config(%s, %s, false)', [name, value], action='pin session settings')


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


def copy_relation(source, target, table):
    """The whole of one table (every column but generated ones, as COPY does without
    a column list), binary, from source to target; returns (rows, bytes)."""
    relation = ident(table['schema'], table['name'])
    moved = 0
    try:
        with source.cursor() as out_cur, target.cursor() as in_cur:
            with out_cur.copy(sql.SQL('COPY {} TO STDOUT (FORMAT binary)').format(relation)) as out, \
                    in_cur.copy(sql.SQL('COPY {} FROM STDIN (FORMAT binary)').format(relation)) as into:
                for chunk in out:
                    into.write(chunk)
                    moved += len(chunk)
            return max(in_cur.rowcount, 0), moved
    except psycopg.Error as exc:
        raise error_from(exc, getattr(target, 'forest_where', '?'), 'copy rows of %s' % table_name(table))


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


INTEGER_TYPES = ('smallint', 'integer', 'bigint')
# Types whose equality means the very same value, so hashing the value itself is exact, and how
# (value, seed).  Others (numeric 1.0 = 1.00, float -0 = 0, interval '1 day' = '24 hours', jsonb,
# arrays, ...) are hashed as their text with the pinned settings.
TYPE_HASHES = {
    'smallint': 'hashint2extended({}, {})', 'integer': 'hashint4extended({}, {})',
    'bigint': 'hashint8extended({}, {})', 'oid': 'hashoidextended({}, {})',
    'boolean': 'hashint4extended({}::int4, {})', 'uuid': 'uuid_hash_extended({}, {})',
    'bytea': "hashtextextended(encode({}, 'hex'), {})",
    # byte-wise, whatever the column's collation
    'text': 'hashtextextended({} COLLATE "C", {})', 'character varying': 'hashtextextended({} COLLATE "C", {})',
    'character': 'hashbpcharextended({} COLLATE "C", {})',
    'time without time zone': 'time_hash_extended({}, {})',
    'timestamp without time zone': 'timestamp_hash_extended({}, {})',
    'timestamp with time zone': 'timestamp_hash_extended({}::timestamp, {})',  # exact: TimeZone is pinned to UTC
    'date': 'timestamp_hash_extended({}::timestamp, {})',
}


def hash_input(name, type_name, seed=0):
    """A column's value hashed (int8), seeded by its position; NULL gets a constant of its own
    (PostgreSQL folds it at plan time)."""
    base = type_name.split('(')[0]
    if base in TYPE_HASHES and (base != 'character' or '(' in type_name):
        template = TYPE_HASHES[base]
    else:
        template = 'hashtextextended(({}::text COLLATE "C"), {})'
    return sql.SQL('coalesce({}, hashint8extended({}, 1))').format(
        sql.SQL(template).format(ident(name), sql.Literal(seed)), sql.Literal(seed))


def row_hash(columns, types):
    """A row's hash (int8): each column hashed with its position as seed, XORed, hashed again.
    Cheaper than hash_record_extended(ROW(...)), which builds and takes apart a tuple per row;
    the last hash ties the columns of a row together, so values swapped between rows still show."""
    if not columns:
        return sql.SQL('hashint8extended(0, 0)')
    return sql.SQL('hashint8extended({}, 0)').format(
        sql.SQL(' # ').join(hash_input(name, types[name], seed) for seed, name in enumerate(columns)))


class TableSql(object):
    """The SQL that hashes, lists and copies one table (columns in table order).

    Rows are grouped in buckets of about ROWS_PER_BUCKET rows: by key range
    (pk >> shift) for a single integer key, so a bucket is read back through the
    index; by a hash of the key otherwise; tables without a key are one bucket.
    Both nodes must use the same TableSql so their buckets line up.
    """

    def __init__(self, table, rows, key_range=None):
        self.table = table
        self.relation = ident(table['schema'], table['name'])
        self.columns = [c['name'] for c in table['columns'] if not c['generated']]
        self.types = dict((c['name'], c['type']) for c in table['columns'])
        self.key = table['row_key'] or []
        self.column_list = sql.SQL(', ').join(ident(name) for name in self.columns)
        self.row_hash = row_hash(self.columns, self.types)
        self.buckets = max(1, min(MAX_BUCKETS, int(rows // ROWS_PER_BUCKET) + 1))
        if not self.key:
            self.strategy = 'whole'
            self.bucket = sql.SQL('0')
        elif key_range is not None and self.integer_key():
            self.strategy = 'range'
            span = max(1, key_range[1] - key_range[0] + 1)
            self.shift = max(0, span // self.buckets - 1).bit_length()  # the least 2**shift >= keys per bucket
            self.bucket = sql.SQL('({}::int8 >> {})').format(ident(self.key[0]), sql.Literal(self.shift))
        else:
            self.strategy = 'hash'
            key_text = sql.SQL('(ROW({})::text COLLATE "C")').format(
                sql.SQL(', ').join(ident(name) for name in self.key))
            self.bucket = sql.SQL('mod(hashtextextended({}, 7) & 9223372036854775807, {})').format(
                key_text, sql.Literal(self.buckets))

    def integer_key(self):
        return len(self.key) == 1 and self.types[self.key[0]] in INTEGER_TYPES

    def narrowed(self, bits):
        """The same table in key-range buckets 2**bits times narrower (strategy range only)."""
        fine = copy.copy(self)
        fine.shift = self.shift - bits
        fine.bucket = sql.SQL('({}::int8 >> {})').format(ident(self.key[0]), sql.Literal(fine.shift))
        return fine

    def fine_bucket_hashes(self, fine):
        """Hashes of the `fine` buckets within this table's buckets in parameter %s (int8[])."""
        return sql.SQL('SELECT {bucket} AS bucket, count(*) AS n, bit_xor({hash}) AS h FROM {rows} GROUP BY 1').format(
            bucket=fine.bucket, hash=self.row_hash, rows=self.rows(True))

    def bucket_hashes(self, only=False, blocks=None):
        # Keys are unique, so XOR of the row hashes is exact; without a key, equal
        # rows would cancel under XOR: sum them instead.
        combine = 'bit_xor({})' if self.key else 'sum({}::numeric)'
        return sql.SQL('SELECT {bucket} AS bucket, count(*) AS n, {combined} AS h FROM {rows} GROUP BY 1').format(
            bucket=self.bucket, combined=sql.SQL(combine).format(self.row_hash), rows=self.rows(only, blocks))

    def rows(self, only, blocks=None):
        """FROM clause: the table, or only the rows of the buckets in parameter %s (int8[]), or only
        those in the blocks [first, end) of this node's copy (end None: to the end; a TID range scan)."""
        if blocks is not None:
            first, end = blocks
            return sql.SQL('{rel} WHERE ctid >= {first}::tid{end}').format(
                rel=self.relation, first=sql.Literal('(%d,0)' % first),
                end=sql.SQL('') if end is None else sql.SQL(' AND ctid < {}::tid').format(sql.Literal('(%d,0)' % end)))
        if not only:
            return self.relation
        if self.strategy == 'range':
            # LATERAL ... OFFSET 0 (never flattened): one index range scan per bucket,
            # whatever the planner guesses about the array or the table's statistics.
            key = ident(self.key[0])
            return sql.SQL('unnest(%s::int8[]) AS pgforest_wanted(pgforest_bucket) CROSS JOIN LATERAL '
                           '(SELECT * FROM {rel} WHERE {key} >= (pgforest_bucket << {shift}) '
                           'AND {key} < ((pgforest_bucket + 1) << {shift}) OFFSET 0) AS pgforest_rows').format(
                rel=self.relation, key=key, shift=sql.Literal(self.shift))
        return sql.SQL('{rel} WHERE {bucket} IN (SELECT unnest(%s::int8[]))').format(
            rel=self.relation, bucket=self.bucket)

    def row_hashes(self):
        keys = sql.SQL(', ').join(sql.SQL('{}::text').format(ident(name)) for name in self.key)
        if self.strategy == 'range':  # one integer key: (key, hash) pairs packed as for the buckets
            return sql.SQL("SELECT string_agg(int8send({key}::int8) || int8send({hash}), ''::bytea) FROM {rows}").format(
                key=ident(self.key[0]), hash=self.row_hash, rows=self.rows(True))
        return sql.SQL('SELECT {keys}, {hash} AS h FROM {rows}').format(
            keys=keys, hash=self.row_hash, rows=self.rows(True))

    def key_range(self):
        return sql.SQL('SELECT min({key})::int8 AS low, max({key})::int8 AS high FROM {rel}').format(
            key=ident(self.key[0]), rel=self.relation)

    def keys_match(self, keys):
        """(pk...) IN (the given key texts, cast back to the key types)."""
        columns = list(zip(*keys)) if keys else [() for _name in self.key]
        names = [ident('k%d' % i) for i in range(len(self.key))]
        return sql.SQL('({pk}) IN (SELECT {casts} FROM unnest({arrays}) AS u({names}))').format(
            pk=sql.SQL(', ').join(ident(name) for name in self.key),
            casts=sql.SQL(', ').join(sql.SQL('u.{}::{}').format(alias, sql.SQL(self.types[name]))
                                     for alias, name in zip(names, self.key)),
            arrays=sql.SQL(', ').join(sql.SQL('{}::text[]').format(sql.Literal(list(column)))
                                      for column in columns),
            names=sql.SQL(', ').join(names))

    def copy_out(self, keys=None):
        if keys is None:  # the whole table: COPY's own fast path
            return sql.SQL('COPY {rel} ({cols}) TO STDOUT (FORMAT binary)').format(
                rel=self.relation, cols=self.column_list)
        return sql.SQL('COPY (SELECT {cols} FROM {rel} WHERE {match}) TO STDOUT (FORMAT binary)').format(
            cols=self.column_list, rel=self.relation, match=self.keys_match(keys))

    def copy_in(self, freeze=False):
        # FREEZE (only into a table truncated in the same transaction): rows land
        # frozen, so the first reads after the copy do not rewrite every page.
        return sql.SQL('COPY {rel} ({cols}) FROM STDIN (FORMAT binary{freeze})').format(
            rel=self.relation, cols=self.column_list, freeze=sql.SQL(', FREEZE' if freeze else ''))

    def delete(self, keys=None):
        if keys is None:
            return sql.SQL('DELETE FROM {}').format(self.relation)
        return sql.SQL('DELETE FROM {rel} WHERE {match}').format(rel=self.relation, match=self.keys_match(keys))

    def truncate(self):
        return sql.SQL('TRUNCATE {}').format(self.relation)


def table_sql_for(source_conn, target_conn, source_table, target_table):
    """One TableSql for both nodes, sized from both sides' statistics and key ranges."""
    rows = max(source_table['estimate'] or 0, target_table['estimate'] or 0, 0)
    probe = TableSql(source_table, rows)
    if not probe.integer_key():
        return probe
    ranges = [run(conn, probe.key_range(), action='read key range of %s' % table_name(source_table))[0]
              for conn in (source_conn, target_conn)]
    lows = [r['low'] for r in ranges if r['low'] is not None]
    if not lows:
        return probe
    key_range = (min(lows), max(r['high'] for r in ranges if r['high'] is not None))
    if rows <= 0:  # never analyzed: assume dense keys
        rows = key_range[1] - key_range[0] + 1
    return TableSql(source_table, rows, key_range)


@contextlib.contextmanager
def grouped_in_a_hash_table(conn, action):
    """Our session groups buckets in a hash table for the queries inside: the planner cannot know how
    many buckets there are and would sort every row to group them, about twice as slow (work_mem is
    pinned high enough for the table)."""
    run(conn, "SELECT set_config('enable_sort', 'off', false)", action=action)
    try:
        yield
    finally:
        run(conn, "SELECT set_config('enable_sort', 'on', false)", action=action)


def block_slices(blocks, jobs):
    """[first, end) block ranges splitting a table of `blocks` blocks in `jobs` parts, the last one
    open-ended (pure)."""
    jobs = max(1, min(jobs, blocks))
    bounds = [blocks * i // jobs for i in range(jobs)]
    return list(zip(bounds, bounds[1:] + [None]))


def merge_buckets(parts, keyed):
    """One {bucket: (rows, hash)} from those of disjoint parts of a table: counts add, hashes XOR
    (keyed) or add (the sums of a table without a key) (pure)."""
    merged = {}
    for part in parts:
        for bucket, (count, digest) in part.items():
            if bucket in merged:
                old_count, old_digest = merged[bucket]
                merged[bucket] = (old_count + count, old_digest ^ digest if keyed else old_digest + digest)
            else:
                merged[bucket] = (count, digest)
    return merged


def table_blocks(conn, table):
    """Blocks of this node's copy of a plain table (0 for a partitioned one: its rows are in its partitions)."""
    if table['kind'] != 'r':
        return 0
    return int(run(conn, "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int8 AS blocks",
                   [ident(table['schema'], table['name']).as_string(conn)], action='size of %s' % table_name(table))[0]['blocks'])


def bucket_hashes(conn, table_sql, buckets=None, blocks=None):
    """{bucket: (rows, hash)}, of every bucket or only of the given ones (or of the rows in a block range).

    With a key there are up to MAX_BUCKETS buckets: they travel as one bytea of
    big-endian int8 triples (bucket, rows, hash), which Python unpacks in C,
    instead of a result row each (most of the compare's client time otherwise)."""
    params = [sorted(buckets)] if buckets is not None else None
    query = table_sql.bucket_hashes(only=buckets is not None, blocks=blocks)
    action = 'hash %s' % table_name(table_sql.table)
    if not table_sql.key:  # one bucket, its hash a numeric sum
        rows = run(conn, query, params, action, tuples=True)
        return dict((bucket, (count, digest)) for bucket, count, digest in rows)
    packed = sql.SQL("SELECT string_agg(int8send(bucket::int8) || int8send(n) || int8send(h), ''::bytea "
                     "ORDER BY bucket) FROM ({}) AS pgforest_buckets").format(query)
    with grouped_in_a_hash_table(conn, action):
        blob = run(conn, packed, params, action, tuples=True)[0][0] or b''
    values = unpack_int8s(blob)
    return dict(zip(values[0::3], zip(values[1::3], values[2::3])))


# Localizing a table with one integer key narrows the differing buckets 2**FINE_BITS times on the
# server before listing rows: with drift spread thinly, most rows of a differing bucket are equal,
# and hashing them in groups costs far less than sending and comparing each one.
FINE_BITS = 3


def fine_buckets(conn, table_sql, fine, buckets):
    """{fine bucket: (rows, hash)} of the rows in the given (coarse) buckets."""
    action = 'hash parts of %s' % table_name(table_sql.table)
    packed = sql.SQL("SELECT string_agg(int8send(bucket::int8) || int8send(n) || int8send(h), ''::bytea) "
                     "FROM ({}) AS pgforest_buckets").format(table_sql.fine_bucket_hashes(fine))
    found = {}
    per_chunk = max(1, PACKED_ROWS >> table_sql.shift)
    buckets = sorted(buckets)
    with grouped_in_a_hash_table(conn, action):
        for start in range(0, len(buckets), per_chunk):
            values = unpack_int8s(run(conn, packed, [buckets[start:start + per_chunk]], action, tuples=True)[0][0])
            found.update(zip(values[0::3], zip(values[1::3], values[2::3])))
    return found


def row_hashes(conn, table_sql, buckets):
    """{key: row hash} of the rows in the given buckets; a key is a tuple of texts, or an int for a
    table with one integer key (key_texts turns those into tuples; unpacking ints in C is faster)."""
    action = 'list rows of %s' % table_name(table_sql.table)
    buckets = sorted(buckets)
    if table_sql.strategy == 'range':
        # A bucket holds at most 2**shift keys: chunks of at most PACKED_ROWS rows (a bytea of 16 bytes
        # per row has to stay far below PostgreSQL's 1 GB).
        per_chunk = max(1, PACKED_ROWS >> table_sql.shift)
        found = {}
        for start in range(0, len(buckets), per_chunk):
            blob = run(conn, table_sql.row_hashes(), [buckets[start:start + per_chunk]], action=action,
                       tuples=True)[0][0]
            found.update(zip(*[iter(unpack_int8s(blob))] * 2))
        return found
    rows = run(conn, table_sql.row_hashes(), [buckets], action=action, tuples=True)
    width = len(table_sql.key)
    return dict((row[:width], row[width]) for row in rows)


def unpack_int8s(blob):
    """The big-endian int8s of a bytea (None: none)."""
    values = array.array('q')
    values.frombytes(bytes(blob or b''))
    if sys.byteorder == 'little':
        values.byteswap()
    return values


def key_texts(keys):
    """Keys as tuples of texts, as keys_match and the report take them."""
    return [key if isinstance(key, tuple) else (str(key),) for key in keys]


def table_name(table):
    """schema.table as messages and results show it (quoted where SQL needs it)."""
    return shown_name(table['schema'], table['name'])


def compare_buckets(source, target):
    """Buckets whose (count, hash sum) differ."""
    return sorted(bucket for bucket in set(source) | set(target) if source.get(bucket) != target.get(bucket))


def localize(source_rows, target_rows):
    """(missing on target, extra on target, changed) key lists."""
    missing = sorted(key for key in source_rows if key not in target_rows)
    extra = sorted(key for key in target_rows if key not in source_rows)
    changed = sorted(key for key in source_rows if key in target_rows and source_rows[key] != target_rows[key])
    return missing, extra, changed


def copy_rows(source, target, table_sql, keys=None):
    """Stream rows (all, or those with the given keys) from source to target with
    binary COPY; returns (rows, bytes)."""
    copied = 0
    where = getattr(target, 'forest_where', '?')
    try:
        with source.cursor() as out_cur, target.cursor() as in_cur:
            with out_cur.copy(table_sql.copy_out(keys)) as out, in_cur.copy(table_sql.copy_in()) as into:
                for chunk in out:
                    into.write(chunk)
                    copied += len(chunk)
            return max(in_cur.rowcount, 0), copied
    except psycopg.Error as exc:
        raise error_from(exc, where, 'copy rows of %s' % table_name(table_sql.table))


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


# --- a lock waited for in vain ------------------------------------------------------------
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


def read_sequences(conn, include=None, exclude=None):
    """{'schema.sequence': {schema, name, last_value, is_called}}."""
    names = [row for row in run(conn, SEQUENCES_SQL, action='list sequences')
             if selected((row['schema'], row['name']), include, exclude)]
    if not names:
        return {}
    query = sql.SQL(' UNION ALL ').join(
        sql.SQL('SELECT {schema} AS schema, {name} AS name, last_value, is_called FROM {seq}').format(
            schema=sql.Literal(row['schema']), name=sql.Literal(row['name']), seq=ident(row['schema'], row['name']))
        for row in names)
    return dict((shown_name(row['schema'], row['name']), row)
                for row in run(conn, query, action='read sequences'))


def set_sequence(conn, seq):
    run(conn, "SELECT setval(format('%%I.%%I', %s::text, %s::text)::regclass, %s, %s)",
        [seq['schema'], seq['name'], seq['last_value'], seq['is_called']],
        action='set sequence %s.%s' % (seq['schema'], seq['name']))


# --- large objects ---------------------------------------------------------------------
# They live outside every table (pg_largeobject, pg_largeobject_metadata), so they
# are compared and repaired as one more entry of the report, under this name.
LARGE_OBJECTS = ('pg_catalog', 'pg_largeobject')
# Per large object: owner, permissions and a digest of its pages (page number and
# content), read page by page so a large object of any size needs little memory.
LARGE_OBJECTS_SQL = """
SELECT m.oid::int8 AS oid, pg_get_userbyid(m.lomowner) AS owner, m.lomacl::text AS acl,
       coalesce(p.pages, 0) AS pages, coalesce(p.size, 0) AS size, p.digest
FROM pg_largeobject_metadata m
LEFT JOIN (SELECT loid, count(*) AS pages, sum(length(data))::int8 AS size,
                  md5(string_agg(pageno::text || ':' || md5(data), ',' ORDER BY pageno)) AS digest
           FROM pg_largeobject GROUP BY loid) AS p ON p.loid = m.oid
ORDER BY 1
"""
# Pages written per statement when copying a large object (about 1 MB at the default page size).
LARGE_OBJECT_BATCH = 512


def large_objects(conn):
    """{oid: (owner, acl, pages, size, digest)} of every large object of the database."""
    rows = run(conn, LARGE_OBJECTS_SQL, action='read large objects', tuples=True)
    return dict((row[0], tuple(row[1:])) for row in rows)


def describe_large_object_change(source, target):
    """What differs between two entries of large_objects(): 'content', 'owner', 'permissions'."""
    parts = []
    if source[2:] != target[2:]:
        parts.append('content')
    if source[0] != target[0]:
        parts.append('owner %s on source, %s on target' % (source[0], target[0]))
    if source[1] != target[1]:
        parts.append('permissions %s on source, %s on target' % (source[1] or 'default', target[1] or 'default'))
    return ', '.join(parts)


def unlink_large_objects(target, oids):
    if oids:
        run(target, 'SELECT count(lo_unlink(oid)) FROM unnest(%s::int8[]::oid[]) AS oid', [list(oids)],
            action='remove large objects')


def copy_large_objects(source, target, oids, catalog):
    """Create each large object on the target with the source's oid, pages, owner
    and permissions (the target must not have it).  Pages are written where they
    are on the source, so a sparse object keeps its holes.  Returns bytes copied."""
    page_size = int(run(source, "SELECT current_setting('block_size')::int / 4 AS size")[0]['size'])  # LOBLKSIZE
    moved = 0
    for oid in oids:
        run(target, 'SELECT lo_create(%s::int8::oid)', [oid], action='create large object %d' % oid)
        last = -1
        while True:
            pages = run(source, 'SELECT pageno, data FROM pg_largeobject WHERE loid = %s::int8::oid AND pageno > %s '
                                'ORDER BY pageno LIMIT %s', [oid, last, LARGE_OBJECT_BATCH],
                        action='read large object %d' % oid, tuples=True)
            if not pages:
                break
            run(target, 'SELECT count(lo_put(%s::int8::oid, p.pageno::int8 * %s, p.data)) '
                        'FROM unnest(%s::int4[], %s::bytea[]) AS p(pageno, data)',
                [oid, page_size, [page[0] for page in pages], [page[1] for page in pages]],
                action='write large object %d' % oid)
            moved += sum(len(page[1]) for page in pages)
            last = pages[-1][0]
        owner, acl = catalog[oid][0], catalog[oid][1]
        run(target, sql.SQL('ALTER LARGE OBJECT {} OWNER TO {}').format(sql.Literal(oid), sql.Identifier(owner)),
            action='set the owner of large object %d' % oid)
        # Permissions exactly as on the source (GRANTs would have to replay each grantor).
        run(target, 'UPDATE pg_largeobject_metadata SET lomacl = %s::aclitem[] WHERE oid = %s::int8::oid', [acl, oid],
            action='set the permissions of large object %d' % oid)
    return moved
