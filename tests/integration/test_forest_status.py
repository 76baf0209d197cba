"""forest_status against the sandbox pair: the guide's examples (§5.2), dead and hung nodes."""
import os
import signal

import pytest

from pgforest_dev import sandbox


pytestmark = pytest.mark.usefixtures('provisioned_pair')


def status(**args):
    result = sandbox.module('forest_status', **args)
    assert not result.get('failed'), result.get('msg')
    return result


def by_sid(result):
    return dict((node['serverid'], node) for node in result['nodes'])


@pytest.mark.parametrize('view0, view1, state, action, broken', [
    ({0: 1, 1: 1}, {0: 1, 1: 1}, 'healthy', 'none', []),                      # 取得例1
    ({0: 1, 1: -1}, {0: 1, 1: -1}, 'degraded', 'online_recovery', [1]),       # 取得例2
    ({0: 1, 1: 1}, {0: 1, 1: -1}, 'degraded', 'online_recovery', [1]),        # 取得例3
    ({0: -1, 1: -1}, {0: -1, 1: -1}, 'down', 'restore_from_backup', [0, 1]),  # 取得例4
])
def test_seed_examples_give_the_seeds_conclusions(view0, view1, state, action, broken):
    sandbox.set_views(view0, view1)
    result = status()
    assert result['cluster_state'] == state
    assert result['recommended_action']['action'] == action
    assert [sid for sid, node in sorted(by_sid(result).items()) if node['validity'] == -1] == broken
    assert all(node['reachable'] and node['server_version'] >= 150000 for node in result['nodes'])
    assert result['views_agree'] == (view0 == view1)
    if view0 != view1:
        assert result['disagreements'] == [{'serverid': 1, 'views': {'0': 1, '1': -1}}]


def test_each_host_reads_its_own_server_ad_hoc():
    for host in ('forest0', 'forest1'):
        result = sandbox.module('forest_status', host=host, userdb='userdb')
        assert result['cluster_state'] == 'healthy'
        assert [node['url'] for node in result['nodes']] == ['127.0.0.11:5432/userdb', '127.0.0.12:5432/userdb']


def test_stopped_node_is_degraded_at_once():
    sandbox.pg_ctl(1, 'stop', '-m', 'immediate')
    result = status(connect_timeout=2)
    assert result['cluster_state'] == 'degraded'
    node = by_sid(result)[1]
    assert node['reachable'] is False and 'no server listens' in node['error']['hint']
    assert result['recommended_action']['target'] == 1
    assert result['elapsed'] < 2 + 1


@pytest.mark.parametrize('hung', [0, 1])
def test_sigstopped_node_is_reported_within_connect_timeout_plus_one_second(hung):
    pid = sandbox.postmaster_pid(hung)
    os.kill(pid, signal.SIGSTOP)
    try:
        result = status(connect_timeout=2)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert result['cluster_state'] == 'degraded'
    assert by_sid(result)[hung]['reachable'] is False
    assert by_sid(result)[1 - hung]['reachable'] is True
    assert result['elapsed'] < 2 + 1, result['elapsed']


def test_a_hung_node_not_marked_is_to_be_marked_first_and_recovery_says_the_same():
    """The recommendation and the recovery agree: mark the node, then recover it."""
    pid = sandbox.postmaster_pid(1)
    os.kill(pid, signal.SIGSTOP)
    try:
        result = status(connect_timeout=1)
        refused = sandbox.module('forest_recover', mode='offline', connect_timeout=1)
    finally:
        os.kill(pid, signal.SIGCONT)
    action = result['recommended_action']
    assert (action['action'], action['target'], action['command']) == (
        'mark_broken', 1, 'forest_mngdb serverid=1 validity=-1')
    assert refused.get('failed') and 'forest_mngdb serverid=1 validity=-1' in refused['msg']
    assert 'Recover serverid' not in refused['msg'] and 'Nothing was changed' in refused['msg']


def test_a_malformed_udb_url_is_reported_not_a_crash():
    sandbox.on(1, "UPDATE server_info SET udb_url = 'not a url' WHERE serverid = 1", dbname=sandbox.MNGDB)
    result = sandbox.module('forest_status')
    assert not result.get('failed'), result.get('msg')
    assert result['cluster_state'] == 'misconfigured'
    assert any("udb_url 'not a url' of serverid 1 is not host:port/db" in p for p in result['problems'])


def test_fail_unless_healthy_fails_with_the_status():
    sandbox.set_views({0: 1, 1: -1}, {0: 1, 1: -1})
    result = sandbox.module('forest_status', fail_unless_healthy=True)
    assert result['failed'] and result['msg'].startswith('pair is degraded: serverid 1 is marked broken')
    assert result['cluster_state'] == 'degraded'


def test_swapped_server_order_is_misconfigured():
    with sandbox.connect(1, sandbox.MNGDB) as conn:
        conn.execute("UPDATE server_info SET udb_url = CASE serverid WHEN 0 THEN '127.0.0.12:5432/userdb' "
                     "ELSE '127.0.0.11:5432/userdb' END")
    result = status()
    assert result['cluster_state'] == 'misconfigured'
    assert 'server_info differs' in result['problems'][0]


def test_missing_and_broken_management_databases_are_misconfigured():
    with sandbox.connect(1, sandbox.MNGDB) as conn:
        conn.execute('ALTER TABLE global_config RENAME TO global_config_old')
    try:
        result = status()
        assert result['cluster_state'] == 'misconfigured'
        assert 'missing tables: global_config' in ' '.join(result['problems'])
    finally:
        with sandbox.connect(1, sandbox.MNGDB) as conn:
            conn.execute('ALTER TABLE global_config_old RENAME TO global_config')


def test_broken_log_rows_are_merged_newest_first_and_bounded():
    for owner in (0, 1):
        with sandbox.connect(owner, sandbox.MNGDB) as conn:
            for i in range(5):
                conn.execute("INSERT INTO broken_log_detail (serverid, time, client, err_state, err_msg) VALUES "
                             "(1, now() - make_interval(mins => %s), '127.0.0.1', '08006', %s)", [i, 'err %d' % i])
    result = status(broken_log_limit=3)
    assert [row['err_msg'] for row in result['broken_log']] == ['err 0', 'err 1', 'err 2']


def test_wrong_password_is_a_clear_error_in_the_status():
    result = status(login_password='wrong', peer_host='127.0.0.12')
    assert result['cluster_state'] == 'down'
    assert {error['sqlstate'] for error in result['unreached']} == {'28P01'}
    assert 'check the password' in result['unreached'][0]['hint']
    assert 'wrong' not in str(result)


def test_user_database_with_quotes_and_spaces_is_just_a_missing_mngdb():
    result = status(userdb='odd "db"; drop')
    assert result['cluster_state'] == 'misconfigured'
    assert 'management database missing' in result['problems'][0]


def test_unlogged_tables_are_named_by_status_and_dbsync():
    """A crash of a server empties them: the DBA must know the pair holds some."""
    sandbox.both('DROP TABLE IF EXISTS "Ünlogged ""Q"""; CREATE UNLOGGED TABLE "Ünlogged ""Q""" (id int PRIMARY KEY)',
                 dbname=sandbox.USERDB)
    try:
        status = sandbox.module('forest_status', compare='counts')
        compared = sandbox.module('forest_dbsync', include=['public.Ünlogged*'])
    finally:
        sandbox.both('DROP TABLE IF EXISTS "Ünlogged ""Q"""', dbname=sandbox.USERDB)
    assert status['user_databases']['unlogged_tables'] == ['public."Ünlogged ""Q"""']
    assert compared['unlogged_tables'] == ['public."Ünlogged ""Q"""']
    assert any('unlogged tables' in line for line in compared['progress'])


REPR = ("{'", "['", '[-1', '[0', '[1', "': ")


@pytest.mark.parametrize('view0, view1, words', [
    ({0: 1, 1: 1}, {0: 1, 1: -1}, 'views 0=valid 1=broken'),
    ({0: 1, 1: 0}, {0: 1, 1: 0}, 'serverid 1 is write-suppressed (0)'),
    ({0: 1, 1: -1}, {0: -1, 1: 1}, 'serverid 0 is seen as 0=valid 1=broken'),
], ids=['views disagree', 'recovering', 'split brain'])
def test_what_the_status_playbook_prints_has_no_python_repr(view0, view1, words):
    sandbox.set_views(view0, view1)
    try:
        done = sandbox.playbook('status.yml', extra_vars=dict(fail_unless_healthy=True))
    finally:
        sandbox.reset_pair()
    assert done.returncode != 0 and words in done.stdout, done.stdout[-3000:]
    shown = [line for line in done.stdout.splitlines() if '"msg"' in line or line.startswith('        "')]
    assert shown and not [line for line in shown if any(mark in line for mark in REPR)], shown


def test_a_ca_file_missing_where_status_reads_is_one_line_not_every_pair_down(tmp_path):
    """status.yml reads from the controller: a CA that exists only on the nodes must be named, not read as a
    pair that is down (CRITICAL and PgforestPairDown for a mistake of the controller's)."""
    missing = str(tmp_path / 'nowhere' / 'ca.crt')
    done = sandbox.playbook('status.yml', extra_vars=dict(forest_pg_ssl_mode='verify-full',
                                                          forest_pg_ssl_rootcert=missing))
    assert done.returncode != 0, done.stdout[-2000:]
    assert 'the CA certificate %s (forest_pg_ssl_rootcert (or forest_tls_ca_file) of forest0) does not exist here' \
        % missing in done.stdout, done.stdout[-3000:]
    assert 'down' not in done.stdout.split('the CA certificate')[0][-2000:]
