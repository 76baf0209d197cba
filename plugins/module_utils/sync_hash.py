# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Hashing a table on both nodes and localizing what differs.

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
import sys

from .forest_pg import ident, run, sql
from .sync_catalog import table_name

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


def pin_settings(conn):
    # Timeouts come from the connection (Node.session_options(bulk=True)).
    for name, value in PINNED_SETTINGS + (('work_mem', SESSION_WORK_MEM), ('jit', 'off')):
        run(conn, 'SELECT set_config(%s, %s, false)', [name, value], action='pin session settings')


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


def compare_buckets(source, target):
    """Buckets whose (count, hash sum) differ."""
    return sorted(bucket for bucket in set(source) | set(target) if source.get(bucket) != target.get(bucket))


def localize(source_rows, target_rows):
    """(missing on target, extra on target, changed) key lists."""
    missing = sorted(key for key in source_rows if key not in target_rows)
    extra = sorted(key for key in target_rows if key not in source_rows)
    changed = sorted(key for key in source_rows if key in target_rows and source_rows[key] != target_rows[key])
    return missing, extra, changed
