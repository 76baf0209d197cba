"""One rule answers "are applications connected?" (mngdb.application_sessions): every job that
needs the applications stopped refuses with the same shape of message, naming the node and
the session, and changes nothing."""
import psycopg
import pytest

from pgforest_dev import sandbox


@pytest.fixture
def application_on_serverid_1(provisioned_pair):
    """An application's session (not the tool's: its own application_name) on userdb of serverid 1."""
    node = sandbox.NODES[1]
    conn = psycopg.connect(host=node['host'], port=node['port'], user='postgres', password=sandbox.password(),
                           dbname=sandbox.USERDB, application_name='billing-app', autocommit=True)
    yield conn.info.backend_pid
    conn.close()


def assert_named(result, pid):
    assert result.get('failed'), result
    assert result.get('changed') is False
    assert 'but these sessions are connected: serverid 1: pid %d postgres@%s' % (pid, sandbox.USERDB) in result['msg']
    assert '(billing-app)' in result['msg'] and result['msg'].endswith('nothing was changed')


def test_offline_compare_refuses_naming_the_session(application_on_serverid_1):
    result = sandbox.module('forest_dbsync', userdb=sandbox.USERDB, mode='compare')
    assert_named(result, application_on_serverid_1)
    assert 'online=true' in result['msg']


def test_offline_recovery_refuses_naming_the_session(application_on_serverid_1):
    sandbox.set_views({1: -1}, {1: -1})
    result = sandbox.module('forest_recover', userdb=sandbox.USERDB, mode='offline')
    assert_named(result, application_on_serverid_1)
    assert 'recover online' in result['msg']
    validity = sandbox.query(0, 'SELECT udb_validity FROM server_info WHERE serverid = 1', dbname=sandbox.MNGDB)
    assert validity == [(-1,)]


def test_mngdb_names_the_same_sessions(application_on_serverid_1):
    result = sandbox.module('forest_mngdb', userdb=sandbox.USERDB, local_config={'api_exec_timeout': 300})
    assert result.get('failed') and 'serverid' not in result['msg'].split('Connected:')[0]
    assert 'pid %d postgres@%s' % (application_on_serverid_1, sandbox.USERDB) in result['msg']
    assert '(billing-app)' in result['msg']
