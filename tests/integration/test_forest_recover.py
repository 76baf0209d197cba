"""forest_recover mode=offline against the sandbox pair."""
import threading
import time

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
    args.setdefault('mode', 'offline')  # the module's default is online
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


CRASH = ('app-host-7 (pid 4242)', 'executeUpdate', 'could not send data to server: Connection reset by peer',
         'ForestException', '08006')


def mark_broken_again_once_valid(stop, marked):
    """What a driver does when its next write to serverid 1 fails: a broken_log row and udb_validity -1 in
    both views, here as soon as the recovery has set serverid 1 valid. (Its sessions carry the collection's
    application_name only so that the offline recovery does not count them as applications.)"""
    conns = [sandbox.connect(sid, sandbox.MNGDB, application_name='pgforest.cluster') for sid in (0, 1)]
    try:
        while not stop.is_set():
            if conns[0].execute('SELECT udb_validity FROM server_info WHERE serverid = 1').fetchone()[0] == 1:
                for conn in conns:
                    conn.execute('INSERT INTO broken_log_detail (serverid, client, api_task, err_msg, err_type, '
                                 'err_state) VALUES (1, %s, %s, %s, %s, %s)', CRASH)
                    conn.execute('UPDATE server_info SET udb_validity = -1 WHERE serverid = 1')
                marked.append(time.monotonic())
                return
            time.sleep(0.005)
    finally:
        for conn in conns:
            conn.close()


def test_recover_playbook_fails_when_the_node_is_marked_broken_again_right_after():
    """recover.yml ends with rc != 0 when the pair is not healthy at the end, and says who marked which node
    and why (broken_log), not "ok" with "pair degraded"."""
    stop, marked = threading.Event(), []
    watcher = threading.Thread(target=mark_broken_again_once_valid, args=(stop, marked), daemon=True)
    watcher.start()
    try:
        done = sandbox.playbook('recover.yml', extra_vars=dict(mode='offline'))
    finally:
        stop.set()
        watcher.join(10)
    output = done.stdout + done.stderr
    assert marked, 'the recovery never set serverid 1 valid: ' + output[-3000:]
    assert done.returncode != 0, output[-3000:]
    failure = [line for line in done.stdout.splitlines() if line.startswith('fatal: [forest0]')]
    assert len(failure) == 1, output[-3000:]
    for words in ('After the recovery of pair forest the pair is not healthy: degraded',
                  'serverid 1 is marked -1 (broken)', 'by client app-host-7 (pid 4242)', '(executeUpdate)',
                  'could not send data to server: Connection reset by peer', 'SQLSTATE 08006'):
        assert words in failure[0], failure[0]
    assert 'logged before this run' not in failure[0]
    assert '[' not in failure[0].split('"msg": ', 1)[1] and '{' not in failure[0].split('"msg": ', 1)[1]


def test_recover_playbook_ends_ok_on_a_healthy_pair_after_the_recovery():
    done = sandbox.playbook('recover.yml', extra_vars=dict(mode='offline'))
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert 'cluster healthy' in done.stdout
    assert "{'" not in done.stdout, done.stdout  # seconds per phase written for people
    assert_pair_equal_and_healthy()
