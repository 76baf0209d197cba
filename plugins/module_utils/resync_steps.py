# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a resync does besides logical replication, for what it does not carry: the definitions of
tables new on the source and the tables dropped there (before the publication), and inside the cut's write freeze whether the
schemas still match (DDL is not replicated), the large objects that differ, a small database copied
whole (the management database)."""

from __future__ import annotations

import os

from .child_pipe import Pipe
from .errors import RecoveryError
from .forest_pg import ident, run, shown_name, sql
from .online_cut import copy_sequences
from .sync_catalog import USER_TABLES_SQL, has_user_objects, roles_needed, read_catalog, schema_difference, table_name
from .sync_copy import copy_relation
from .sync_hash import localize
from .sync_large_objects import copy_large_objects, large_objects, unlink_large_objects
from .wording import listed


def schema_changes(src, tgt, source, target):
    """[what differs between the user tables of two connections' databases] (source, target: serverids)."""
    src_tables, tgt_tables = read_catalog(src), read_catalog(tgt)
    wrong = ['%s only on serverid %d' % (name, source) for name in sorted(set(src_tables) - set(tgt_tables))]
    wrong += ['%s only on serverid %d' % (name, target) for name in sorted(set(tgt_tables) - set(src_tables))]
    wrong += ['%s: %s' % (name, schema_difference(src_tables[name], tgt_tables[name])) for name in sorted(src_tables)
              if name in tgt_tables and schema_difference(src_tables[name], tgt_tables[name])]
    return wrong


def copy_large_objects_now(src, tgt):
    """The large objects that differ, made as the source has them (it is frozen), in one transaction:
    (copied, removed)."""
    catalog = large_objects(src)
    missing, extra, changed = localize(catalog, large_objects(tgt))
    if missing or extra or changed:
        with tgt.transaction():
            unlink_large_objects(tgt, extra + changed)
            copy_large_objects(src, tgt, missing + changed, catalog)
    return len(missing + changed), len(extra)


def copy_whole_database(src, tgt):
    """Every user table of a small database (the management database) as the source has it, as a
    physical copy would leave it, in one transaction with triggers off; then its sequences.  Not
    published: its tables are few and small, and not all of them have a key."""
    tables = run(src, USER_TABLES_SQL, action='list the tables')
    with tgt.transaction():
        run(tgt, 'SET LOCAL session_replication_role = replica', action='disable triggers')
        for row in tables:
            table = dict(schema=row['schema'], name=row['relname'])
            run(tgt, sql.SQL('DELETE FROM {}').format(ident(table['schema'], table['name'])),
                action='empty %s' % table_name(table))
            copy_relation(src, tgt, table)
    copy_sequences(src, tgt)


def drop_tables_gone(src, tgt):
    """Tables the target has and the source no longer has (dropped while the target was out) dropped on the
    target, in one transaction: the resync makes it what the source is, as a physical copy would.  No CASCADE:
    another object that still depends on one is the DBA's to look at, and the error names it.  [their names]"""
    names = [set((row['schema'], row['relname']) for row in run(conn, USER_TABLES_SQL, action='list tables'))
             for conn in (src, tgt)]
    gone = sorted(names[1] - names[0])
    if gone:
        with tgt.transaction():
            run(tgt, sql.SQL('DROP TABLE IF EXISTS {}').format(sql.SQL(', ').join(
                ident(schema, name) for schema, name in gone)), action='drop the tables the source no longer has')
    return [shown_name(*name) for name in gone]


def create_new_tables(bindir, source, target, userdb):
    """Tables on the source that the target lacks (created while it was out) get their definitions on the
    target (indexes, constraints, owned sequences with them) through pg_dump --schema-only | psql in one
    transaction; the compare then copies their rows.  A target database with nothing of its own (no
    relation, function, type or schema but public: a new cluster, a rebuilt host, a new major) gets the
    source's whole schema instead, so that the schemas,
    types, functions and views the tables use come too (pg_dump of the target's major reads the source's
    server across majors; never the source's publications or subscriptions).  source, target: (Node,
    connection to userdb, serverid).  [the tables' names];
    a table only on the target is dropped first (drop_tables_gone)."""
    names = [set((row['schema'], row['relname']) for row in run(conn, USER_TABLES_SQL, action='list tables'))
             for _node, conn, _sid in (source, target)]
    new = sorted(names[0] - names[1])
    if not new:
        return []
    (src_node, src, src_sid), (tgt_node, tgt, tgt_sid) = source, target
    lacking = sorted(set(roles_needed(src)) - set(row['rolname'] for row in run(tgt, 'SELECT rolname FROM pg_roles')))
    if lacking:  # psql would stop on the first ALTER ... OWNER TO or GRANT naming one, with less to go on
        one = len(lacking) == 1
        raise RecoveryError('%s: serverid %d lacks the role%s %s that %s objects of %s on serverid %d, whose '
                            'definitions the resync copies: create %s on serverid %d first (CREATE ROLE; roles belong '
                            'to the server, not to the database)' % (
                                userdb, tgt_sid, '' if one else 's', listed([shown_name(role) for role in lacking]),
                                'owns or was granted' if one else 'own or were granted', userdb, src_sid,
                                'it' if one else 'them', tgt_sid))
    reader = [os.path.join(bindir, 'pg_dump'), '--no-password', '--schema-only', '--no-publications',
              '--no-subscriptions', '--dbname=' + src_node.conninfo_string(userdb, bulk=True)]
    if has_user_objects(tgt):
        reader += ['--table=%s' % '.'.join('"%s"' % part.replace('"', '""') for part in name) for name in new]
    writer = [os.path.join(bindir, 'psql'), '--no-psqlrc', '--quiet', '--set=ON_ERROR_STOP=1', '--single-transaction',
              '--dbname=' + tgt_node.conninfo_string(userdb, bulk=True)]
    Pipe(reader, src_node.child_env(os.environ), writer, tgt_node.child_env(os.environ),
         sides=('pg_dump on serverid %d' % src_sid, 'psql on serverid %d' % tgt_sid)).run(
        '%s: the definitions of the tables new on serverid %d' % (userdb, src_sid))
    return [shown_name(*name) for name in new]


MATVIEWS_SQL = r"""
SELECT n.nspname AS schema, c.relname, c.relispopulated AS populated FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'm' AND n.nspname NOT IN ('pg_catalog', 'information_schema')"""


def refresh_matviews(src, tgt):
    """Materialized views populated on the source but not on the target (a schema-only dump creates them
    WITH NO DATA, and the compare covers tables) are refreshed on the target from its repaired tables;
    [their names].  Logical replication does not maintain them either: the applications refresh them on
    both nodes, as before."""
    def matviews(conn):
        return dict(((row['schema'], row['relname']), row['populated'])
                    for row in run(conn, MATVIEWS_SQL, action='list materialized views'))
    theirs, mine = matviews(src), matviews(tgt)
    refreshed = []
    for name in sorted(name for name, populated in theirs.items() if populated and mine.get(name) is False):
        run(tgt, sql.SQL('REFRESH MATERIALIZED VIEW {}').format(ident(*name)), action='refresh a matview')
        refreshed.append(shown_name(*name))
    return refreshed
