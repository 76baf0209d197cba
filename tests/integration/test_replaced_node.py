"""A node new to the pair is never valid (DESIGN.md, issue 26 finding 1).

Two forest databases on the pair: userdb, written by the reference driver, and appdb, idle. Node 1
loses its data directory (or its whole host, or gets an old physical copy back); provision.yml
rebuilds it. The new node must be broken (-1) for both databases in both views, status must name it
`replaced` and never call the pair healthy, and a recovery brings it back with the same data.
"""
import os
import re
import shutil
import subprocess

import pytest

from pgforest_dev import sandbox
from pgforest_dev.forest_driver import LOADED_FREEZE_BEYOND_NOTICE, ForestDriver, lost_or_duplicated
from pgforest_dev.wait import wait_for

TARGET = 1
APPDB = 'appdb'
USERDBS = ['userdb', APPDB]
PAIR_VARS = dict(forest_userdbs=USERDBS)
NODE_DIR = os.path.dirname(sandbox.data_dir(TARGET))
KEEP_FILES = ['postgresql.conf', 'postgresql.auto.conf', 'pg_hba.conf', 'pg_ident.conf', 'forest.conf']


def provision():
    run = sandbox.playbook('provision.yml', extra_vars=PAIR_VARS)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return run


def status():
    return sandbox.module('forest_status', userdbs=USERDBS)


def validities():
    """{(userdb, view): {serverid: udb_validity}} of both databases in both views."""
    return dict(((userdb, owner), dict(sandbox.query(owner, 'SELECT serverid, udb_validity FROM server_info',
                                                     dbname=userdb + '_pghainfo')))
                for userdb in USERDBS for owner in (0, 1))


def recover_online():
    result = sandbox.module('forest_recover', host='forest%d' % TARGET, timeout=300, mode='online',
                            data_dir=sandbox.data_dir(TARGET))
    assert not result.get('failed'), result.get('msg')
    return result


def stop_target():
    sandbox.pg_ctl(TARGET, 'stop', '-m', 'immediate', check=False)


def cold_copy(serverid, into):
    """A physical copy of serverid's data directory, taken with its server stopped (backup.yml kind=physical
    does the same), then the server started again."""
    sandbox.pg_ctl(serverid, 'stop', '-m', 'fast')
    try:
        shutil.rmtree(into, ignore_errors=True)
        subprocess.run(['cp', '-a', sandbox.data_dir(serverid), into], check=True)
        for name in ('postmaster.pid', 'postmaster.opts'):
            if os.path.exists(os.path.join(into, name)):
                os.remove(os.path.join(into, name))
    finally:
        sandbox.ensure_running(serverid)


def put_in_place(copy, keep_own_config):
    """Node 1's data directory replaced with `copy` (its own configuration files kept when asked), started."""
    stop_target()
    own = {}
    if keep_own_config:
        for name in KEEP_FILES:
            with open(os.path.join(sandbox.data_dir(TARGET), name), 'rb') as handle:
                own[name] = handle.read()
    shutil.rmtree(sandbox.data_dir(TARGET))
    subprocess.run(['cp', '-a', copy, sandbox.data_dir(TARGET)], check=True)
    for name, content in own.items():
        with open(os.path.join(sandbox.data_dir(TARGET), name), 'wb') as handle:
            handle.write(content)
    sandbox.ensure_running(TARGET)


def assert_new_node_is_broken_everywhere(output=None):
    if output is not None:
        assert 'serverid 1 is new to the pair' in output and 'recover.yml' in output, output[-3000:]
    seen = validities()
    assert all(view[TARGET] == -1 for view in seen.values()), seen
    assert all(view[0] == 1 for view in seen.values()), seen
    found = status()
    assert not found['healthy'] and found['cluster_state'] == 'degraded', found['summary']
    for database in found['databases']:
        node = [node for node in database['nodes'] if node['serverid'] == TARGET][0]
        assert node['replaced'] is True, (database['userdb'], node['identity'])
        assert node['validity'] == -1 and database['cluster_state'] == 'degraded', database['summary']
        action = database['recommended_action']
        assert (action['action'], action['target']) == ('online_recovery', TARGET), action
        assert 'replaced' in action['reason'] and 'recover.yml' in action['reason'], action['reason']
    assert any('REPLACED' in line for line in found['summary']), found['summary']


def assert_healthy_and_equal():
    found, *compared = sandbox.modules([('forest_status', 'forest0', dict(userdbs=USERDBS))]
                                       + [('forest_dbsync', 'forest0', dict(userdb=userdb)) for userdb in USERDBS])
    assert found['healthy'], found['summary']
    assert not any(node['replaced'] for database in found['databases'] for node in database['nodes'])
    for userdb, result in zip(USERDBS, compared):
        assert result['equal'] is True, (userdb, result.get('report'), result.get('msg'))


def hba_path(serverid):
    return os.path.join(sandbox.data_dir(serverid), 'pg_hba.conf')


@pytest.fixture(scope='module', autouse=True)
def provisioned_with_appdb():
    """The pair provisioned with appdb too (its pg_hba entries, its management databases), once for the
    module's cases (a provision costs half a minute of CPU); afterwards appdb is gone and both pg_hba.conf are
    as before, the only files a provision with appdb changes (a provision as the inventory says would write
    the same, for another half minute)."""
    hba = {}
    for serverid in (0, 1):
        with open(hba_path(serverid)) as handle:
            hba[serverid] = handle.read()
    provision()
    yield
    for serverid in (0, 1):
        for name in (APPDB, APPDB + '_pghainfo'):
            sandbox.query(serverid, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s',
                          [name])
            sandbox.query(serverid, 'DROP DATABASE IF EXISTS %s' % name)
        with open(hba_path(serverid), 'w') as handle:  # in place: its owner and mode stay
            handle.write(hba[serverid])
        sandbox.query(serverid, 'SELECT pg_reload_conf()')


@pytest.fixture(autouse=True)
def two_databases():
    """userdb and appdb on both nodes as provision makes them (the pair's identities recorded), each
    with data, the drivers' poll interval 1 s; afterwards node 1 runs and is valid in both."""
    for userdb in USERDBS:
        sandbox.reset_pair(userdb)
    sandbox.both('DROP TABLE IF EXISTS accounts; CREATE TABLE accounts (id int PRIMARY KEY, balance int);'
                 'INSERT INTO accounts SELECT g, g * 10 FROM generate_series(1, 300) g', dbname=APPDB)
    for userdb in USERDBS:
        sandbox.both("UPDATE global_config SET value = '1' WHERE key = 'mngdb_read_duration'",
                     dbname=userdb + '_pghainfo')
    assert status()['healthy']
    yield
    if not os.path.exists(os.path.join(sandbox.data_dir(TARGET), 'PG_VERSION')):
        provision()
    sandbox.ensure_running(TARGET)
    if not status()['healthy']:
        for userdb in USERDBS:
            sandbox.on(0, 'UPDATE server_info SET udb_validity = -1 WHERE serverid = 1', dbname=userdb + '_pghainfo')
        recover_online()
    sandbox.both('DROP TABLE IF EXISTS forest_load_items; DROP TABLE IF EXISTS forest_load')
    for userdb in USERDBS:
        sandbox.reset_pair(userdb)
    shutil.rmtree(os.path.join(sandbox.SANDBOX, 'identity-copies'), ignore_errors=True)


def test_a_lost_data_directory_comes_back_broken_in_both_views_until_recovered():
    nodes = sandbox.driver_nodes()
    driver = ForestDriver(nodes, 'userdb', sandbox.password(), read_duration=1.0).start()
    try:
        wait_for('a write acknowledged on both nodes', lambda: len(driver.acked) > 20)
        stop_target()
        wait_for('the driver marking serverid 1 broken', lambda: driver.validity.get(TARGET) == -1)
        shutil.rmtree(sandbox.data_dir(TARGET))
        rebuilt = provision()  # the DBA rebuilds the host
        assert_new_node_is_broken_everywhere(rebuilt.stdout + rebuilt.stderr)
        before = len(driver.acked)
        recover_online()
        wait_for('the driver writing to both nodes again', lambda: driver.validity == {0: 1, 1: 1})
        acked = len(driver.acked)
        wait_for('a write acknowledged after the recovery', lambda: len(driver.acked) > acked)
    finally:
        driver.stop()
    assert driver.errors == []
    assert len(driver.acked) > before
    assert lost_or_duplicated(driver, lambda sid: sandbox.connect(sid, 'userdb')) == []
    assert_healthy_and_equal()
    # the pair recorded the recovered node: a second provision changes nothing and marks nothing
    again = provision()
    assert sandbox.recap(again.stdout)['forest1']['changed'] == 0, again.stdout[-3000:]
    assert 'new to the pair' not in again.stdout + again.stderr


@pytest.mark.parametrize('copy_of', ['an older copy of node 1', 'a copy of node 0'])
def test_a_restored_physical_copy_is_not_the_node_the_pair_recorded(copy_of):
    """An old copy of node 1 taken before its last recovery carries the identity the pair had before
    (a server and management databases the recovery replaced); a copy of node 0 carries node 0's.
    Both are told apart from the node the pair recorded, before and after provision."""
    copy = os.path.join(sandbox.SANDBOX, 'identity-copies', 'data')
    os.makedirs(os.path.dirname(copy), exist_ok=True)
    if copy_of == 'an older copy of node 1':
        cold_copy(TARGET, copy)
        for userdb in USERDBS:  # node 1 is recovered once: the pair records it anew
            sandbox.on(0, 'UPDATE server_info SET udb_validity = -1 WHERE serverid = 1', dbname=userdb + '_pghainfo')
        recover_online()
        assert status()['healthy']
    else:
        cold_copy(0, copy)
    sandbox.both('INSERT INTO accounts SELECT g, 0 FROM generate_series(1001, 1100) g', dbname=APPDB)
    put_in_place(copy, keep_own_config=True)  # the DBA restores "node 1's backup"
    found = status()
    assert not found['healthy'], found['summary']
    assert all(node['replaced'] for database in found['databases'] for node in database['nodes']
               if node['serverid'] == TARGET), found['summary']
    assert found['recommended_action']['action'] == 'mark_broken', found['recommended_action']
    rebuilt = provision()
    assert_new_node_is_broken_everywhere(rebuilt.stdout + rebuilt.stderr)
    recovered = sandbox.playbook('recover.yml', extra_vars=PAIR_VARS)
    assert recovered.returncode == 0, recovered.stdout[-4000:]
    assert_healthy_and_equal()


def moved(*args, **extra_vars):
    """playbooks/upgrade.yml on the pair with both databases."""
    return sandbox.playbook('upgrade.yml', *args, extra_vars=dict(PAIR_VARS, **extra_vars))


def test_a_rebuilt_host_moves_back_online_with_upgrade_yml_under_the_driver(odd_schema_dropped):
    """The online move of a node to its host's major (docs/forest_node.md), on one major here: step=out takes
    node 1 out under the driver, its host is rebuilt from scratch, step=in provisions it alone and resyncs it
    from node 0 while the driver writes there: the schema (a schema, names with quotes, dots and non-ASCII, a
    view, a function and a materialized view) from node 0, the rows by content, then a freeze of about a second.
    A second step=in on the healthy pair is the refusal test's (Nothing to move)."""
    odd = '"sch.é"."it""s"'
    sandbox.on(0, 'CREATE SCHEMA "sch.é"; CREATE FUNCTION "sch.é".twice(int) RETURNS int LANGUAGE sql IMMUTABLE '
                  'AS $$ SELECT $1 * 2 $$; CREATE TABLE %s (id int PRIMARY KEY, v text DEFAULT \'ö\', '
                  'w int GENERATED ALWAYS AS ("sch.é".twice(id)) STORED); INSERT INTO %s (id) '
                  'SELECT generate_series(1, 500); CREATE VIEW "sch.é".v AS SELECT count(*) FROM %s; '
                  'CREATE MATERIALIZED VIEW "sch.é"."m.v" AS SELECT max(w) AS top FROM %s' % (odd, odd, odd, odd))
    nodes = sandbox.driver_nodes()
    driver = ForestDriver(nodes, 'userdb', sandbox.password(), read_duration=1.0).start()
    try:
        wait_for('a write acknowledged on both nodes', lambda: len(driver.acked) > 20)
        out = moved(node='forest1', step='out')
        assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
        assert 'forest1 (serverid 1) is marked -1' in out.stdout, out.stdout[-3000:]
        wait_for('the driver leaving serverid 1', lambda: driver.validity.get(TARGET) == -1)
        assert all(view[TARGET] == -1 for view in validities().values())
        stop_target()
        shutil.rmtree(NODE_DIR)  # the host rebuilt: nothing of the node is left
        before = len(driver.acked)
        wait_for('writes to serverid 0 alone', lambda: len(driver.acked) > before + 20)
        back = moved('-v', node='forest1')
        assert back.returncode == 0, back.stdout[-4000:] + back.stderr[-2000:]
        wait_for('the driver writing to both nodes again', lambda: driver.validity == {0: 1, 1: 1})
        acked = len(driver.acked)
        wait_for('a write acknowledged after the move', lambda: len(driver.acked) > acked)
    finally:
        driver.stop()
    text = ' '.join(back.stdout.split())
    assert 'serverid 1 recovered online (resync) from serverid 0' in text, back.stdout[-4000:]
    freeze = float(re.search(r'write freeze ([0-9.]+) s', text).group(1))
    notice = float(re.search(r'"notice_seconds": ([0-9.]+)', text).group(1))
    assert freeze <= notice + LOADED_FREEZE_BEYOND_NOTICE, (freeze, notice)
    assert 'serverid 1 (127.0.0.12): PostgreSQL 15, valid' in text, back.stdout[-3000:]
    assert driver.errors == []
    assert lost_or_duplicated(driver, lambda sid: sandbox.connect(sid, 'userdb')) == []
    assert_healthy_and_equal()
    assert sandbox.query(1, 'SELECT (SELECT count FROM "sch.é".v), sum(w), min(v), (SELECT top FROM "sch.é"."m.v") '
                            'FROM %s' % odd, dbname='userdb') == [(500, 250500, 'ö', 1000)]


@pytest.fixture
def odd_schema_dropped():
    yield
    sandbox.both('DROP SCHEMA IF EXISTS "sch.é" CASCADE')


def test_upgrade_yml_refuses_a_missing_node_a_limit_and_a_node_whose_peer_is_broken():
    serving = moved(node='forest1')  # a healthy pair: nothing to move, nothing provisioned (a second run after a move)
    assert serving.returncode == 0, serving.stdout[-3000:]
    assert 'Nothing to move: forest1 is valid and serves' in ' '.join(serving.stdout.split()), serving.stdout[-3000:]
    assert 'Choose the PostgreSQL major version' not in serving.stdout, serving.stdout[-3000:]
    assert all(counts['changed'] == 0 for counts in sandbox.recap(serving.stdout).values()), serving.stdout[-3000:]
    missing = moved()
    assert missing.returncode != 0 and 'upgrade.yml needs -e node=HOST' in missing.stdout, missing.stdout[-2000:]
    limited = moved('--limit', 'forest1', node='forest1', step='out')
    assert limited.returncode != 0, limited.stdout[-3000:]
    assert 'forest0 is not in this play: leave out --limit' in ' '.join(limited.stdout.split()), limited.stdout[-3000:]
    assert all(view == {0: 1, 1: 1} for view in validities().values())  # nothing changed
    for userdb in USERDBS:
        sandbox.on(0, 'UPDATE server_info SET udb_validity = -1 WHERE serverid = 1', dbname=userdb + '_pghainfo')
    before = validities()
    refused = moved(node='forest0', step='out')
    assert refused.returncode != 0, refused.stdout[-3000:]
    assert 'forest0 cannot leave the pair: its peer forest1 is not valid' in ' '.join(refused.stdout.split()), \
        refused.stdout[-3000:]
    assert validities() == before  # nothing changed


def test_upgrade_yml_names_the_roles_a_new_cluster_lacks_and_leaves_the_node_out():
    """A table of node 0's owned by a role that only node 0's server has: the rebuilt node 1 cannot take its
    definition, so the resync stops before any definition is loaded, names the role, and node 1 stays -1
    while node 0 serves."""
    role = 'rôle "x"'
    sandbox.query(0, 'CREATE ROLE "rôle ""x"""')
    try:
        sandbox.on(0, 'CREATE TABLE owned_by_x (id int PRIMARY KEY); ALTER TABLE owned_by_x OWNER TO "rôle ""x"""')
        out = moved(node='forest1', step='out')
        assert out.returncode == 0, out.stdout[-3000:]
        stop_target()
        shutil.rmtree(NODE_DIR)
        refused = moved(node='forest1')
        assert refused.returncode != 0, refused.stdout[-3000:]
        text = ' '.join((refused.stdout + refused.stderr).split())
        assert 'serverid 1 lacks the role "%s"' % role.replace('"', '""') in text, text[-3000:]
        assert 'create it on serverid 1 first' in text, text[-3000:]
        seen = validities()
        assert all(view[TARGET] == -1 and view[0] == 1 for view in seen.values()), seen
        assert sandbox.query(1, 'SELECT count(*) FROM pg_class WHERE relname = %s', ['owned_by_x'],
                             dbname='userdb') == [(0,)]
    finally:
        sandbox.on(0, 'DROP TABLE IF EXISTS owned_by_x')
        sandbox.query(0, 'DROP ROLE IF EXISTS "rôle ""x"""')


PAIR_SETTINGS_BACK = ("UPDATE global_config SET value = '1' WHERE key = 'mngdb_read_duration'; "
                      "COMMENT ON TABLE global_config IS NULL; DELETE FROM local_config WHERE configid = 'batch é'")


def test_a_host_rebuilt_from_scratch_takes_the_pairs_settings_and_is_broken_until_recovered_offline():
    """The new management databases start with what the pair runs (the fixture's 1 s poll interval, a configid of
    the DBA's), not the guide's 30 s, which drivers reading the new node's view would follow and a recovery
    would wait for; and with the DBA's value where a running operation has lowered it (its record on node 0).
    Then an offline recovery by dump: a new node has none of the tables, which a repair by diff never creates.
    (One rebuild for both: a provision and a recovery cost about half a minute of CPU each.)"""
    lowered = '{"at": 0, "by": "a test", "dba": "7", "short": 2}'
    sandbox.on(0, "UPDATE global_config SET value = '2' WHERE key = 'mngdb_read_duration'; "
                  "COMMENT ON TABLE global_config IS 'pgforest.cluster lowered mngdb_read_duration: %s'; "
                  "INSERT INTO local_config VALUES ('batch é', 'max_retries', '9')" % lowered, dbname='userdb_pghainfo')
    try:
        stop_target()
        shutil.rmtree(NODE_DIR)  # data directory, configuration, log, socket directory: a new machine
        rebuilt = provision()
        assert_new_node_is_broken_everywhere(rebuilt.stdout + rebuilt.stderr)
        for userdb, expected in (('userdb', '7'), (APPDB, '1')):
            assert sandbox.query(1, "SELECT value, obj_description('global_config'::regclass, 'pg_class') FROM "
                                    "global_config WHERE key = 'mngdb_read_duration'",
                                 dbname=userdb + '_pghainfo') == [(expected, None)], userdb
        assert sandbox.query(1, "SELECT value FROM local_config WHERE configid = 'batch é'",
                             dbname='userdb_pghainfo') == [('9',)]
    finally:
        sandbox.on(0, PAIR_SETTINGS_BACK, dbname='userdb_pghainfo')
    sandbox.on(1, PAIR_SETTINGS_BACK, dbname='userdb_pghainfo')  # the "running operation" is over on both
    recovered = sandbox.playbook('recover.yml', extra_vars=dict(PAIR_VARS, mode='offline', method='dump'))
    assert recovered.returncode == 0, recovered.stdout[-4000:]
    assert_healthy_and_equal()
    assert sandbox.module('forest_mngdb', userdb=APPDB, record_identity=True)['changed'] is False
