"""The forest_node role, checked on the provisioned sandbox servers."""
import json
import os
import shutil
import socket
import subprocess
import textwrap

import psycopg
import pytest

from pgforest_dev import sandbox
from ansible_collections.pgforest.cluster.plugins.filter.scram import scram_sha256_matches


def settings(serverid, *names):
    rows = sandbox.query(serverid, 'SELECT name, setting FROM pg_settings WHERE name = ANY(%s)', [list(names)])
    return dict(rows)


def test_each_node_gets_its_own_lock_timeout_and_address():
    zero = settings(0, 'lock_timeout', 'listen_addresses', 'port')
    one = settings(1, 'lock_timeout', 'listen_addresses', 'port')
    assert zero == {'lock_timeout': '30000', 'listen_addresses': '127.0.0.11', 'port': '5432'}
    assert one == {'lock_timeout': '31000', 'listen_addresses': '127.0.0.12', 'port': '5432'}
    # Two distinct servers, not one answering on both addresses.
    assert sandbox.query(0, 'SHOW data_directory') != sandbox.query(1, 'SHOW data_directory')


@pytest.mark.parametrize('serverid', [0, 1])
def test_server_files_live_where_postgres_reaches_them_wherever_the_checkout_is(serverid):
    """A clone under /root (closed to the postgres OS user) must still run the sandbox: the servers'
    files are outside the checkout, in a directory every parent of which postgres may search."""
    data_dir = sandbox.query(serverid, 'SHOW data_directory')[0][0]
    checkout = os.path.realpath(sandbox.REPO)
    assert not data_dir.startswith(checkout + os.sep), data_dir
    assert sandbox.SANDBOX == os.path.dirname(os.path.dirname(data_dir))
    parents = [os.path.dirname(data_dir)]
    while parents[-1] != '/':
        parents.append(os.path.dirname(parents[-1]))
    for parent in parents:
        searchable = subprocess.run(['runuser', '-u', 'postgres', '--', 'test', '-x', parent], check=False)
        assert searchable.returncode == 0, 'postgres cannot search %s' % parent


@pytest.mark.parametrize('serverid', [0, 1])
def test_cluster_settings_for_online_recovery(serverid):
    got = settings(serverid, 'wal_level', 'archive_mode', 'archive_command', 'hot_standby',
                   'max_wal_senders', 'data_checksums', 'server_encoding', 'lc_collate',
                   'password_encryption', 'tcp_keepalives_idle', 'tcp_keepalives_interval',
                   'tcp_keepalives_count', 'max_replication_slots', 'max_logical_replication_workers',
                   'max_worker_processes', 'max_slot_wal_keep_size')
    assert got == {'wal_level': 'logical', 'max_replication_slots': '10', 'max_logical_replication_workers': '10',
                   'max_worker_processes': '18', 'max_slot_wal_keep_size': '10240', 'archive_mode': 'on', 'archive_command': 'true',
                   'hot_standby': 'on', 'max_wal_senders': '10', 'data_checksums': 'on',
                   'server_encoding': 'UTF8', 'lc_collate': 'C', 'password_encryption': 'scram-sha-256',
                   'tcp_keepalives_idle': '30', 'tcp_keepalives_interval': '10', 'tcp_keepalives_count': '3'}


@pytest.mark.parametrize('serverid', [0, 1])
def test_pg_hba_has_peer_replication_and_no_tcp_trust(serverid):
    rules = sandbox.query(serverid, 'SELECT type, database, user_name, address, netmask, auth_method, error '
                                    'FROM pg_hba_file_rules')
    assert all(rule[6] is None for rule in rules), rules
    tcp = [rule for rule in rules if rule[0].startswith('host')]
    assert tcp, rules
    assert all(rule[5] == 'scram-sha-256' for rule in tcp), tcp
    assert all(rule[4] == '255.255.255.255' for rule in tcp), 'every TCP entry must be a /32'
    replication = [rule for rule in tcp if rule[1] == ['replication']]
    assert replication == [('host', ['replication'], ['postgres'], '127.0.0.1', '255.255.255.255',
                            'scram-sha-256', None)]
    peer_dbs = [rule[1] for rule in tcp if rule[2] == ['all']]
    assert ['userdb', 'userdb_pghainfo'] in peer_dbs


def test_wrong_password_is_refused():
    node = sandbox.NODES[0]
    with pytest.raises(psycopg.OperationalError, match='password authentication failed'):
        psycopg.connect(host=node['host'], port=node['port'], user='postgres', password='not-it',
                        dbname='postgres', connect_timeout=3)


def test_stored_verifier_is_checked_by_the_scram_filter():
    stored = sandbox.query(0, "SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'")[0][0]
    assert scram_sha256_matches(sandbox.password(), stored)
    assert not scram_sha256_matches(sandbox.password() + 'x', stored)


def test_second_run_changes_nothing_and_check_mode_reports_a_change_without_making_it():
    again = sandbox.playbook('provision.yml')
    assert again.returncode == 0, again.stdout[-3000:]
    assert {host: counts['changed'] for host, counts in sandbox.recap(again.stdout).items()} == \
        {'forest0': 0, 'forest1': 0}

    checked = sandbox.playbook('provision.yml', '--check', '--diff', '--limit', 'forest1',
                               extra_vars={'forest_node_lock_timeout': '45s'})
    assert checked.returncode == 0, checked.stdout[-3000:]
    assert sandbox.recap(checked.stdout)['forest1']['changed'] >= 1
    assert "+lock_timeout = '45s'" in checked.stdout
    assert settings(1, 'lock_timeout') == {'lock_timeout': '31000'}


def test_password_change_is_applied_and_never_printed():
    new = 'Rotated-' + sandbox.password()[:12]
    old = sandbox.password()
    try:
        run = sandbox.playbook('provision.yml', '-vvv', '--limit', 'forest0',
                               extra_vars={'forest_pg_password': new})
        assert run.returncode == 0, run.stdout[-3000:]
        assert sandbox.recap(run.stdout)['forest0']['changed'] == 1
        assert new not in run.stdout + run.stderr
        node = sandbox.NODES[0]
        psycopg.connect(host=node['host'], port=node['port'], user='postgres', password=new,
                        dbname='postgres', connect_timeout=3).close()
    finally:
        back = sandbox.playbook('provision.yml', '--limit', 'forest0')
        assert back.returncode == 0, back.stdout[-3000:]
    assert old not in back.stdout
    sandbox.query(0, 'SELECT 1')


@pytest.fixture
def spare_node(tmp_path):
    """An inventory for a third node on 127.0.0.13, under .sandbox (reachable by postgres)."""
    base = os.path.join(sandbox.SANDBOX, 'spare-node')
    shutil.rmtree(base, ignore_errors=True)
    inventory = tmp_path / 'inventory.yml'

    def write(**overrides):
        host = dict(forest_serverid=0, forest_pg_host='127.0.0.13', forest_peer_host='127.0.0.14',
                    forest_node_base_dir=base, forest_pg_password='spare-password-1')
        host.update(overrides)
        inventory.write_text(json.dumps({'forest': {
            'vars': {'ansible_connection': 'local',
                     'ansible_python_interpreter': '{{ ansible_playbook_python }}',
                     # this machine's own servers and /usr/local/bin are not the test's (sandbox/inventory.yml)
                     'forest_node_stray_clusters': 'keep',
                     'forest_node_psql_helper': base + '/pgforest-psql'},
            'hosts': {'spare': host}}}))
        return str(inventory)

    yield write, base
    data = os.path.join(base, 'data')
    if os.path.exists(os.path.join(data, 'postmaster.pid')):
        sandbox.subprocess.run(['runuser', '-u', 'postgres', '--', sandbox.PG_BIN + '/pg_ctl', '-D', data,
                                'stop', '-m', 'immediate'], check=False)
    shutil.rmtree(base, ignore_errors=True)


def test_address_in_use_is_reported_and_nothing_is_started(spare_node):
    write, base = spare_node
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(('127.0.0.13', 5432))
    squatter.listen()
    try:
        run = sandbox.playbook('provision.yml', '--tags', 'node', inventory=write())
    finally:
        squatter.close()
    assert run.returncode != 0
    assert 'Something already listens on 127.0.0.13:5432' in run.stdout
    assert not os.path.exists(os.path.join(base, 'data', 'postmaster.pid'))


@pytest.mark.parametrize('overrides, message', [
    ({'forest_userdb': 'user db'}, 'must be plain identifiers'),
    ({'forest_pg_host': '*'}, 'not a wildcard'),
    ({'forest_node_hba_extra': [{'type': 'host', 'database': 'all', 'user': 'all',
                                 'address': '10.0.0.0/8', 'method': 'trust'}]}, "has a 'trust' entry over TCP"),
    ({'forest_serverid': 2}, 'forest_node_serverid'),
])
def test_bad_settings_fail_clearly_before_touching_the_host(spare_node, overrides, message):
    write, base = spare_node
    run = sandbox.playbook('provision.yml', '--tags', 'node', inventory=write(**overrides))
    assert run.returncode != 0
    assert message in run.stdout + run.stderr
    assert not os.path.exists(base)


def test_trust_over_tcp_is_written_only_when_allowed(spare_node):
    write, base = spare_node
    extra = [{'type': 'host', 'database': 'postgres', 'user': 'nobody', 'address': '10.9.9.9/32',
              'method': 'trust'}]
    inventory = write(forest_node_hba_extra=extra, forest_node_allow_trust=True)
    run = sandbox.playbook('provision.yml', '--tags', 'node', inventory=inventory)
    assert run.returncode == 0, run.stdout[-3000:]
    with open(os.path.join(base, 'data', 'pg_hba.conf')) as handle:
        hba = handle.read()
    assert '10.9.9.9/32    trust' in hba
    assert textwrap.dedent(hba).count('trust') == 1
