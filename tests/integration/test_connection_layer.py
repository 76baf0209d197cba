"""module_utils.forest_pg against the real sandbox servers."""
import time

import pytest

from pgforest_dev import sandbox
from ansible_collections.pgforest.cluster.plugins.module_utils.forest_pg import ForestPgError, Node, ident, run


def node(serverid, **kwargs):
    spec = sandbox.NODES[serverid]
    kwargs.setdefault('password', sandbox.password())
    return Node(spec['host'], spec['port'], 'postgres', label=spec['name'], **kwargs)


def test_connect_and_query_with_timeouts_applied():
    with node(0, statement_timeout=1234).connect('postgres') as conn:
        rows = run(conn, 'SELECT current_setting(%s) AS st, current_setting(%s) AS app',
                   ['statement_timeout', 'application_name'])
    assert rows == [{'st': '1234ms', 'app': 'pgforest.cluster'}]


def test_statement_timeout_is_reported_with_its_sqlstate():
    with node(1, statement_timeout=200).connect('postgres') as conn:
        with pytest.raises(ForestPgError) as err:
            run(conn, 'SELECT pg_sleep(2)', action='sleep')
    assert err.value.sqlstate == '57014'
    assert 'forest1 (127.0.0.12:5432/postgres): sleep failed [SQLSTATE 57014]' in str(err.value)


def test_wrong_password_names_node_sqlstate_and_remedy():
    with pytest.raises(ForestPgError) as err:
        node(0, password='wrong').connect('postgres')
    assert err.value.sqlstate == '28P01'
    assert 'forest0' in str(err.value) and 'check the password' in str(err.value)


def test_missing_database_is_a_clear_error():
    with pytest.raises(ForestPgError) as err:
        node(1).connect('no such "db"')
    assert err.value.sqlstate == '3D000'
    assert 'create it with forest_mngdb' in str(err.value)


def test_nobody_listening_fails_fast():
    started = time.monotonic()
    with pytest.raises(ForestPgError) as err:
        Node('127.0.0.19', 5432, password='x', connect_timeout=2).connect('postgres')
    assert time.monotonic() - started < 3
    assert 'no server listens' in str(err.value)


def test_identifiers_with_quotes_cannot_inject():
    hostile = 'x"; DROP TABLE victim; --'
    with node(0).connect('postgres') as conn:
        run(conn, 'CREATE TEMP TABLE victim (i int)')
        run(conn, sandbox_sql('CREATE TEMP TABLE {} (i int)', hostile))
        names = run(conn, "SELECT relname FROM pg_class WHERE relpersistence = 't' ORDER BY relname")
    assert [row['relname'] for row in names] == ['victim', hostile]


def sandbox_sql(template, name):
    from psycopg import sql
    return sql.SQL(template).format(ident(name))
