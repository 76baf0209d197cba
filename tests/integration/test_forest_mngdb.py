"""forest_mngdb against the sandbox pair."""
import psycopg
import pytest

from pgforest_dev import sandbox


pytestmark = pytest.mark.usefixtures('provisioned_pair')


def mngdb(**args):
    return sandbox.module('forest_mngdb', **args)


def both(table):
    return sandbox.mngdb_rows(0, table), sandbox.mngdb_rows(1, table)


SERVERS = ['127.0.0.11:5432', '127.0.0.12:5432']


def test_existing_correct_mngdb_is_left_alone():
    result = mngdb(userdb='userdb', servers=SERVERS)
    assert result['changed'] is False and not result.get('failed'), result


def test_creates_schema_defaults_and_server_info_on_a_new_database():
    name = 'fresh_db'
    try:
        check = mngdb(userdb=name, servers=SERVERS, check=True, diff=True)
        exists = sandbox.query(0, 'SELECT 1 FROM pg_database WHERE datname = %s', [name + '_pghainfo'])
        assert check['changed'] and not exists
        result = mngdb(userdb=name, servers=SERVERS)
        assert result['changed'], result
        rows = sandbox.query(0, 'SELECT serverid, udb_url, udb_validity FROM server_info ORDER BY 1',
                             dbname=name + '_pghainfo')
        assert rows == [(0, '127.0.0.11:5432/fresh_db', 1), (1, '127.0.0.12:5432/fresh_db', 1)]
        tables = sandbox.query(0, "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class "
                                  "WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'v')",
                               dbname=name + '_pghainfo')
        assert tables == [('broken_log,broken_log_detail,global_config,local_config,mngdb_origin,node_identity,'
                           'server_info',)]
        assert sandbox.query(0, 'SELECT count(*) FROM global_config', dbname=name + '_pghainfo') == [(12,)]
        assert mngdb(userdb=name, servers=SERVERS)['changed'] is False
    finally:
        for db in (name + '_pghainfo', name):
            sandbox.query(0, 'DROP DATABASE IF EXISTS %s' % db)


def test_global_config_changes_both_nodes_with_diff_and_check_mode():
    check = mngdb(global_config={'mngdb_read_duration': 10}, check=True, diff=True)
    assert check['changed'] and len(check['changes']) == 2
    assert check['_stdout'].count('-global_config mngdb_read_duration = 30\n+global_config mngdb_read_duration = 10') == 2
    assert both('global_config')[0] == both('global_config')[1]
    assert dict(both('global_config')[0])['mngdb_read_duration'] == '30'

    result = mngdb(global_config={'mngdb_read_duration': 10, 'log_level': 3})
    assert result['changed'] and len(result['changes']) == 4
    zero, one = both('global_config')
    assert zero == one and dict(zero)['mngdb_read_duration'] == '10' and dict(zero)['log_level'] == '3'
    assert mngdb(global_config={'mngdb_read_duration': 10})['changed'] is False


@pytest.mark.parametrize('args, message', [
    ({'global_config': {'log_level': 7}}, 'global_config.log_level must be from 0 to 4 (got 7)'),
    ({'global_config': {'mngdb_read_duration': -3}}, 'must be from 0 to 2147483647'),
    ({'global_config': {'nosuchkey': 1}}, "unknown global_config key 'nosuchkey'"),
    ({'local_config': {'fast_api_return_on_db_fail': 2}}, 'must be from 0 to 1'),
    ({'global_config': {'log_level': 3}, 'userdb': 'missing_db'}, 'does not exist'),
    ({'global_config': {'log_level': 3}, 'login_password': 'wrong'}, 'password authentication failed'),
    ({'global_config': {'log_level': 3}, 'userdb': 'a "quoted" db; drop'}, 'does not exist'),
    ({'servers': ['127.0.0.11:5432']}, 'exactly two'),
    ({'serverid': 1}, 'parameters are required together'),
])
def test_bad_input_is_refused_and_changes_nothing(args, message):
    before = both('global_config'), both('local_config'), both('server_info')
    args.setdefault('userdb', 'userdb')
    result = mngdb(**args)
    assert result.get('failed'), result
    assert message in result['msg']
    assert 'wrong' not in result['msg']
    assert (both('global_config'), both('local_config'), both('server_info')) == before


def test_unreachable_peer_blocks_global_config_on_both():
    sandbox.pg_ctl(1, 'stop', '-m', 'fast')
    result = mngdb(global_config={'log_level': 4})
    assert result.get('failed') and 'must be made on both nodes' in result['msg']
    sandbox.ensure_running(1)
    assert dict(both('global_config')[0])['log_level'] == '2'


def test_swapped_order_is_refused():
    with sandbox.connect(1, sandbox.MNGDB) as conn:
        conn.execute("UPDATE server_info SET udb_url = CASE serverid WHEN 0 THEN '127.0.0.12:5432/userdb' "
                     "ELSE '127.0.0.11:5432/userdb' END")
    before = both('global_config')
    for args in ({'global_config': {'log_level': 3}}, {'serverid': 1, 'validity': -1}):
        result = mngdb(userdb='userdb', **args)
        assert result.get('failed') and 'misconfigured' in result['msg'], result
    assert both('global_config') == before
    refused = mngdb(userdb='userdb', servers=list(reversed(SERVERS)), host='forest0')
    assert refused.get('failed') and 'Check the order of servers' in refused['msg']


def test_overwrite_fixes_a_swapped_node_when_no_driver_is_connected():
    with sandbox.connect(1, sandbox.MNGDB) as conn:
        conn.execute("UPDATE server_info SET udb_url = CASE serverid WHEN 0 THEN '127.0.0.12:5432/userdb' "
                     "ELSE '127.0.0.11:5432/userdb' END")
    result = mngdb(userdb='userdb', servers=SERVERS, overwrite=True, host='forest1')
    assert result['changed'], result
    zero, one = both('server_info')
    assert zero == one


def test_local_config_refused_while_a_driver_is_connected_unless_forced():
    node = sandbox.NODES[0]
    with psycopg.connect(host=node['host'], port=node['port'], user='postgres', password=sandbox.password(),
                         dbname='userdb', application_name='forest-driver'):
        refused = mngdb(local_config={'api_exec_timeout': 300})
        assert refused.get('failed')
        assert 'forest-driver' in refused['msg'] and 'userdb' in refused['msg']
        assert dict((row[1], row[2]) for row in both('local_config')[0])['api_exec_timeout'] == '600'
        forced = mngdb(local_config={'api_exec_timeout': 300}, force=True)
        assert forced['changed'], forced
    zero, one = both('local_config')
    assert zero == one and ('DEFAULT', 'api_exec_timeout', '300') in zero


def test_validity_is_set_on_both_nodes_and_drivers_are_notified():
    node = sandbox.NODES[1]
    with psycopg.connect(host=node['host'], port=node['port'], user='postgres', password=sandbox.password(),
                         dbname=sandbox.MNGDB, autocommit=True) as listener:
        listener.execute('LISTEN pgforest_server_info')
        result = mngdb(serverid=1, validity=-1, diff=True)
        assert result['changed'] and len(result['changes']) == 2, result
        notices = list(listener.notifies(timeout=2, stop_after=1))
    assert [n.channel for n in notices] == ['pgforest_server_info']
    zero, one = both('server_info')
    assert zero == one and [row[2] for row in zero] == [1, -1]
    assert sandbox.module('forest_status')['cluster_state'] == 'degraded'
    assert mngdb(serverid=1, validity=-1)['changed'] is False


def test_validity_is_set_on_the_reachable_node_when_the_other_is_down():
    sandbox.pg_ctl(1, 'stop', '-m', 'immediate')
    result = mngdb(serverid=1, validity=-1)
    assert result['changed'] and len(result['unreached']) == 1, result
    assert [row[2] for row in sandbox.mngdb_rows(0, 'server_info')] == [1, -1]


def test_diff_of_validity_and_config_in_one_call_shows_both():
    """change_validity once replaced the diff text change_config had written for the same node."""
    result = mngdb(serverid=1, validity=-1, global_config={'log_level': 3}, check=True, diff=True)
    assert result['changed'] and len(result['changes']) == 4, result
    out = result['_stdout']
    assert out.count('-global_config log_level = ') == 2, out
    assert out.count('+global_config log_level = 3') == 2, out
    assert out.count('-server_info serverid 1 udb_validity = 1\n') == 2, out
    assert out.count('+server_info serverid 1 udb_validity = -1\n') == 2, out
