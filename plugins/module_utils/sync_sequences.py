# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sequences, which no snapshot covers: reading them, and setting a target's to the source's."""

from __future__ import annotations

from .forest_pg import ident, run, shown_name, sql
from .sync_catalog import USER_SCHEMA, selected

SEQUENCES_SQL = r"""
SELECT n.nspname AS schema, c.relname AS name
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'S' AND """ + USER_SCHEMA + r"""
ORDER BY 1, 2
"""


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


def sequence_state(seq):
    """[last_value, is_called] as the report shows a sequence (None: not on that node)."""
    return None if seq is None else [seq['last_value'], seq['is_called']]


def differing_sequences(source, target):
    """The report's entries of the sequences whose state differs between the read_sequences() of
    the two nodes, by name: {sequence, source, target, status, seq (the source's, to set)}."""
    return [dict(sequence=name, source=sequence_state(source.get(name)), target=sequence_state(target.get(name)),
                 status='different', seq=source.get(name))
            for name in sorted(set(source) | set(target))
            if sequence_state(source.get(name)) != sequence_state(target.get(name))]
