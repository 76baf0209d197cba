"""forest_recover mode=offline against the sandbox pair."""
import psycopg
import pytest

from pgforest_dev import sandbox

SCHEMA = 'Recover Tëst'


both, on = sandbox.both, sandbox.on


@pytest.fixture(autouse=True)
def drifted_pair():
    """serverid 1 diverged (updates, a lost row, a sequence behind) and marked broken."""
    sandbox.reset_pair()
    both('DROP SCHEMA IF EXISTS "{s}" CASCADE; CREATE SCHEMA "{s}";'
         'CREATE TABLE "{s}".orders (id serial PRIMARY KEY, item text, qty int);'
         'INSERT INTO "{s}".orders (item, qty) SELECT $$item$$ || g, g FROM generate_series(1, 3000) g'.format(
             s=SCHEMA))
    on(0, 'INSERT INTO "%s".orders (item, qty) VALUES (\'late\', 1)' % SCHEMA)
    on(1, 'UPDATE "{s}".orders SET qty = -1 WHERE id % 500 = 0; DELETE FROM "{s}".orders WHERE id = 7'.format(
        s=SCHEMA))
    # A large object the broken node lost, and one only it has.
    both(DROP_LARGE_OBJECTS)
    on(0, "SELECT lo_from_bytea(424250, 'kept')")
    on(1, "SELECT lo_from_bytea(424251, 'stale')")
    sandbox.set_views({1: -1}, {1: -1})
    yield
    sandbox.reset_pair()
    both('DROP SCHEMA IF EXISTS "%s" CASCADE' % SCHEMA)
    both(DROP_LARGE_OBJECTS)


DROP_LARGE_OBJECTS = ('SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE oid::int8 IN (424250, 424251)')


def recover(**args):
    args.setdefault('userdb', sandbox.USERDB)
    return sandbox.module('forest_recover', **args)


def assert_pair_equal_and_healthy():
    status = sandbox.module('forest_status')
    assert status['cluster_state'] == 'healthy', status['recommended_action']
    compared = sandbox.module('forest_dbsync', include=[SCHEMA + '.*', 'pg_catalog.pg_largeobject'])
    assert compared['equal'] is True, compared['report']
    assert [sandbox.query(sid, 'SELECT oid::int8, lo_get(oid) FROM pg_largeobject_metadata WHERE oid::int8 IN '
                               '(424250, 424251)', dbname='userdb') for sid in (0, 1)] == [[(424250, b'kept')]] * 2
    seq = 'SELECT last_value FROM "%s".orders_id_seq' % SCHEMA
    assert sandbox.query(0, seq, dbname='userdb') == sandbox.query(1, seq, dbname='userdb') == [(3001,)]


@pytest.mark.parametrize('method', ['diff', 'dump'])
def test_offline_recovery_leaves_the_pair_equal_and_healthy(method):
    result = recover(method=method, target=1)
    assert not result.get('failed'), result.get('msg')
    assert (result['source'], result['target'], result['changed']) == (0, 1, True)
    assert result['bytes_copied'] > 0
    if method == 'diff':
        orders = result['dbsync']['tables'][[t['table'] for t in result['dbsync']['tables']].index(
            '"%s".orders' % SCHEMA)]
        assert (orders['missing'], orders['changed'], orders['status']) == (2, 6, 'repaired')
    assert_pair_equal_and_healthy()


def test_check_mode_reports_and_changes_nothing():
    result = recover(check=True)
    assert not result.get('failed'), result.get('msg')
    assert result['changed'] is True  # check mode: would change
    assert sandbox.module('forest_status')['cluster_state'] == 'degraded'
    assert sandbox.query(1, 'SELECT count(*) FROM "%s".orders' % SCHEMA, dbname='userdb') == [(2999,)]


def test_a_healthy_pair_is_ok_and_unchanged():
    """Idempotent from CI: nothing to recover is not a failure."""
    sandbox.set_views({1: 1}, {1: 1})
    before = sandbox.query(1, 'SELECT count(*), sum(qty) FROM "%s".orders' % SCHEMA, dbname='userdb')
    for check in (False, True):
        result = recover(check=check)
        assert not result.get('failed'), result.get('msg')
        assert result['changed'] is False and result['msg'].startswith('Nothing to recover: the pair is healthy')
    assert sandbox.query(1, 'SELECT count(*), sum(qty) FROM "%s".orders' % SCHEMA, dbname='userdb') == before


@pytest.mark.parametrize('setup, message', [
    ('both_broken', 'restore both nodes from a backup'),
    ('wrong_target', 'from the broken node would copy the wrong data'),
    ('swapped', 'the pair is misconfigured'),
    ('recovering', 'the pair is recovering'),
])
def test_wrong_preconditions_are_refused_and_change_nothing(setup, message):
    target = None
    if setup == 'both_broken':
        sandbox.set_views({0: -1}, {0: -1})
    elif setup == 'wrong_target':
        target = 0
    elif setup == 'recovering':
        sandbox.set_views({1: 0}, {1: 0})
    else:
        with sandbox.connect(1, sandbox.MNGDB) as conn:
            conn.execute("UPDATE server_info SET udb_url = CASE serverid WHEN 0 THEN '127.0.0.12:5432/userdb' "
                         "ELSE '127.0.0.11:5432/userdb' END")
    before = sandbox.query(1, 'SELECT count(*), sum(qty) FROM "%s".orders' % SCHEMA, dbname='userdb')
    result = recover(**({'target': target} if target is not None else {}))
    assert result.get('failed') and message in result['msg'], result.get('msg')
    assert 'Nothing was changed' in result['msg'] or 'nothing was changed' in result['msg']
    assert sandbox.query(1, 'SELECT count(*), sum(qty) FROM "%s".orders' % SCHEMA, dbname='userdb') == before


def test_refused_while_applications_are_connected():
    node = sandbox.NODES[0]
    with psycopg.connect(host=node['host'], port=node['port'], user='postgres', password=sandbox.password(),
                         dbname='userdb', application_name='billing-app'):
        result = recover()
    assert result.get('failed') and 'billing-app' in result['msg'] and 'applications stopped' in result['msg']
    assert sandbox.module('forest_status')['cluster_state'] == 'degraded'


def test_a_second_recovery_of_the_same_pair_is_refused():
    with sandbox.connect(0, sandbox.MNGDB) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext('pgforest.cluster recovery'))")
        result = recover()
    assert result.get('failed') and 'another recovery of this pair is running' in result['msg']
    assert sandbox.module('forest_status')['cluster_state'] == 'degraded'
