"""Two forest user databases on one pair (userdb and billing, each with its management
database and its own reference driver): status per database and for the pair, online recovery
that covers every forest database of the server in one freeze, and its refusals."""
import os
import re
import time

import pytest

from pgforest_dev import sandbox
from pgforest_dev.forest_driver import LOADED_FREEZE_BEYOND_NOTICE, ForestDriver, lost_or_duplicated
from pgforest_dev.wait import driver_sees, driver_writes, driver_writes_to_every_node, wait_for

TARGET = 1
SECOND = 'billing'
SECOND_MNGDB = SECOND + '_pghainfo'
SERVERS = ['%s:%s' % (node['host'], node['port']) for _sid, node in sorted(sandbox.NODES.items())]
WORKSPACE = sandbox.data_dir(TARGET) + '.pgforest-recovery'
MARKER = os.path.join(sandbox.data_dir(TARGET), 'old-data-directory.marker')


def recover(**args):
    args.update(mode='online', data_dir=sandbox.data_dir(TARGET))
    args.setdefault('notice_wait', 0.3)
    return sandbox.module('forest_recover', host='forest%d' % TARGET, timeout=300, **args)


def drop_database(serverid, name):
    sandbox.query(serverid, 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s', [name])
    sandbox.query(serverid, 'DROP DATABASE IF EXISTS "%s"' % name)


def views(userdb, view0, view1):
    """server_info validities of userdb's management database: view = {serverid: validity}."""
    for owner, view in ((0, view0), (1, view1)):
        for sid, validity in view.items():
            sandbox.on(owner, 'UPDATE server_info SET udb_validity = %d WHERE serverid = %d' % (validity, sid),
                       dbname=userdb + '_pghainfo')


def validity_everywhere(userdb):
    return [sandbox.query(owner, 'SELECT serverid, udb_validity FROM server_info ORDER BY 1',
                          dbname=userdb + '_pghainfo') for owner in (0, 1)]


@pytest.fixture(autouse=True)
def second_forest_database():
    """billing beside userdb on both nodes, made as provision makes it (forest_mngdb), drivers'
    poll interval 1 s in both; afterwards nothing of it is left on the sandbox."""
    sandbox.reset_pair()
    for serverid in (0, 1):
        made = sandbox.module('forest_mngdb', host='forest%d' % serverid, userdb=SECOND, servers=SERVERS,
                              create_userdb=True)
        assert not made.get('failed'), made.get('msg')
    for dbname in (sandbox.MNGDB, SECOND_MNGDB):
        sandbox.both("UPDATE global_config SET value = '1' WHERE key = 'mngdb_read_duration'", dbname=dbname)
    sandbox.both('CREATE TABLE IF NOT EXISTS invoices (id serial PRIMARY KEY, amount int);'
                 'INSERT INTO invoices (amount) SELECT g FROM generate_series(1, 500) g', dbname=SECOND)
    with open(MARKER, 'w') as handle:
        handle.write('written by the test before the recovery\n')
    yield
    for phase in ('cancel', 'cleanup'):
        if os.path.exists(WORKSPACE):
            recover(phase=phase)
    sandbox.reset_pair()
    for serverid in (0, 1):
        for name in (SECOND, SECOND_MNGDB, 'monitoring'):
            drop_database(serverid, name)
    sandbox.both('DROP TABLE IF EXISTS forest_load_items; DROP TABLE IF EXISTS forest_load')


def test_status_names_each_database_and_the_worst_decides():
    views(SECOND, {TARGET: -1}, {TARGET: -1})
    status = sandbox.module('forest_status', userdbs=['userdb', SECOND])
    assert (status['cluster_state'], status['healthy'], status['userdb']) == ('degraded', False, SECOND)
    assert status['unhealthy_userdbs'] == [SECOND]
    assert [(found['userdb'], found['cluster_state']) for found in status['databases']] == [
        ('userdb', 'healthy'), (SECOND, 'degraded')]
    assert status['recommended_action']['target'] == TARGET
    assert status['summary'][0] == 'pair degraded: userdb healthy, billing degraded'
    assert any(line.startswith('billing: serverid 1 ') and 'broken' in line for line in status['summary'])
    failed = sandbox.module('forest_status', userdbs=['userdb', SECOND], fail_unless_healthy=True)
    assert failed.get('failed') and failed['msg'].startswith('pair is degraded (not healthy: billing)')
    # one database, as before: its own state only
    assert sandbox.module('forest_status', userdb='userdb')['cluster_state'] == 'healthy'
    for bad, message in ((dict(userdbs=[]), 'userdbs is empty'),
                         (dict(userdbs=['userdb', 'userdb']), 'lists userdb more than once'),
                         (dict(userdbs=['u' * 60]), 'is too long'),
                         (dict(userdb='userdb', userdbs=[SECOND]), 'mutually exclusive')):
        refused = sandbox.module('forest_status', **bad)
        assert refused.get('failed') and message in refused['msg'], (bad, refused['msg'])


@pytest.mark.parametrize('method', ['basebackup', 'resync'])
def test_online_recovery_covers_both_databases_under_two_drivers(method):
    nodes = sandbox.driver_nodes()
    drivers = [ForestDriver(nodes, userdb, sandbox.password(), read_duration=1.0).start()
               for userdb in ('userdb', SECOND)]
    try:
        for driver in drivers:
            driver_writes(driver)
        sandbox.pg_ctl(TARGET, 'stop', '-m', 'immediate')
        for driver in drivers:
            driver_sees(driver, {TARGET: -1})  # each driver marked the stopped node broken
        before = [len(driver.acked) for driver in drivers]
        sandbox.on(0, 'INSERT INTO invoices (amount) SELECT g FROM generate_series(1, 50) g', dbname=SECOND)
        result = recover(notice_wait=None, method=method)
        if not result.get('failed'):
            for driver in drivers:
                driver_writes_to_every_node(driver)
    finally:
        for driver in drivers:
            driver.stop()
    assert not result.get('failed'), result.get('msg')
    assert (result['userdbs'], result['stage'], result['method']) == (['userdb', SECOND], 'done', method)
    assert os.path.exists(MARKER) is (method == 'resync')  # a resync keeps the node's own data directory
    # One freeze covers both databases: within the drivers' notice plus what a saturated machine adds.
    assert result['freeze_window'] <= result['cut']['notice_seconds'] + LOADED_FREEZE_BEYOND_NOTICE, result['cut']
    status = sandbox.module('forest_status', userdbs=['userdb', SECOND])
    assert status['healthy'], status['summary']
    for driver, acked_before, userdb in zip(drivers, before, ('userdb', SECOND)):
        assert driver.errors == []
        assert len(driver.acked) > acked_before > 0, userdb  # it wrote before, during and after the recovery
        assert lost_or_duplicated(driver, lambda sid, db=userdb: sandbox.connect(sid, db)) == [], userdb
        assert driver.validity == {0: 1, 1: 1}, userdb
        compared = sandbox.module('forest_dbsync', userdb=userdb)
        assert compared['equal'] is True, compared['report']
    # the sequences of both databases were copied at the cut
    nextval = "SELECT nextval('invoices_id_seq')"
    assert sandbox.query(0, nextval, dbname=SECOND) == sandbox.query(TARGET, nextval, dbname=SECOND)


def test_a_database_still_valid_on_the_target_is_refused_unless_included():
    views('userdb', {TARGET: -1}, {TARGET: -1})
    sandbox.pg_ctl(TARGET, 'stop', '-m', 'immediate')
    refused = recover()
    assert refused.get('failed'), refused
    assert 'billing: serverid 1 is still valid there' in refused['msg'] and 'include_valid' in refused['msg']
    assert refused['msg'].endswith('Nothing was changed.')
    assert os.path.exists(MARKER) and not os.path.exists(WORKSPACE)
    assert sandbox.query(0, 'SELECT serverid, udb_validity FROM server_info ORDER BY 1', dbname=SECOND_MNGDB) == [
        (0, 1), (1, 1)]  # untouched (the target is stopped)
    checked = sandbox.module('forest_recover', host='forest1', check=True, mode='online',
                             data_dir=sandbox.data_dir(TARGET), include_valid=[SECOND])
    assert not checked.get('failed') and checked['changed'], checked.get('msg')
    assert os.path.exists(MARKER)  # check mode changed nothing
    result = recover(include_valid=[SECOND])
    assert not result.get('failed'), result.get('msg')
    assert result['userdbs'] == ['userdb', SECOND]
    assert sandbox.module('forest_status', userdbs=['userdb', SECOND])['healthy']
    assert validity_everywhere(SECOND) == [[(0, 1), (1, 1)]] * 2


def test_the_source_must_be_valid_for_every_database():
    views('userdb', {TARGET: -1}, {TARGET: -1})
    views(SECOND, {0: -1}, {0: -1})  # billing: serverid 0, the would-be source, is the broken one
    refused = recover(include_valid=[SECOND])
    assert refused.get('failed')
    assert 'billing: serverid 0, the source, is broken there' in refused['msg'], refused['msg']
    assert os.path.exists(MARKER) and not os.path.exists(WORKSPACE)
    unknown = recover(include_valid=['nosuchdb'])
    assert unknown.get('failed') and 'include_valid names nosuchdb' in unknown['msg'], unknown['msg']


def test_a_database_that_is_not_a_forest_database_is_named_before_it_is_replaced():
    sandbox.query(TARGET, 'CREATE DATABASE monitoring')
    sandbox.on(TARGET, 'CREATE TABLE samples (at timestamptz DEFAULT now())', dbname='monitoring')
    views('userdb', {TARGET: -1}, {TARGET: -1})
    views(SECOND, {TARGET: -1}, {TARGET: -1})
    refused = recover()
    assert refused.get('failed')
    assert 'serverid 1 also holds monitoring, which is not forest database' in refused['msg'], refused['msg']
    assert 'replace_databases' in refused['msg']
    assert os.path.exists(MARKER) and sandbox.query(TARGET, "SELECT 1 FROM pg_database WHERE datname = 'monitoring'")
    result = recover(replace_databases=['monitoring'])
    assert not result.get('failed'), result.get('msg')
    assert any('replace_databases' in line and 'monitoring' in line for line in result['progress'])
    # the target now has the source's databases: serverid 0 had no monitoring database
    assert sandbox.query(TARGET, "SELECT 1 FROM pg_database WHERE datname = 'monitoring'") == []
    assert sandbox.module('forest_status', userdbs=['userdb', SECOND])['healthy']


def test_a_failed_cut_puts_back_every_database_s_validity():
    """The freeze covers both databases; when it cannot finish (a transaction stays open on billing),
    the rollback gives each management database its value from before, and the target its old data."""
    views('userdb', {TARGET: -1}, {TARGET: -1})
    views(SECOND, {TARGET: -1}, {TARGET: -1})
    assert not recover(phase='base').get('failed')
    holder = sandbox.connect(0, SECOND, autocommit=False)
    try:
        holder.execute('SELECT count(*) FROM invoices')  # a transaction left open on billing
        failed = recover(phase='cut', idle_wait_timeout=1)
    finally:
        holder.close()
    assert failed.get('failed') and 'quiesce timed out' in failed['msg'] and 'Rolled back' in failed['msg'], failed
    assert os.path.exists(MARKER) and not os.path.exists(WORKSPACE)
    for userdb in ('userdb', SECOND):
        assert sandbox.query(0, 'SELECT serverid, udb_validity FROM server_info ORDER BY 1',
                             dbname=userdb + '_pghainfo') == [(0, 1), (1, -1)], userdb
    result = recover()
    assert not result.get('failed'), result.get('msg')
    assert sandbox.module('forest_status', userdbs=['userdb', SECOND])['healthy']


def test_a_recovery_holding_any_of_the_databases_keeps_the_online_recovery_out():
    """The pair's lock is taken in every management database the recovery covers: an offline
    recovery of billing alone (holding billing's lock) keeps a whole-server online recovery out."""
    views('userdb', {TARGET: -1}, {TARGET: -1})
    views(SECOND, {TARGET: -1}, {TARGET: -1})
    with sandbox.connect(0, SECOND_MNGDB) as other:
        other.execute("SELECT pg_advisory_lock(hashtext('pgforest.cluster recovery'))")
        refused = recover()
    assert refused.get('failed') and 'advisory lock held in billing_pghainfo on serverid 0' in refused['msg'], refused
    assert os.path.exists(MARKER) and not os.path.exists(WORKSPACE)


BACKUPS = os.path.join(sandbox.SANDBOX, 'backups-many-userdbs')


@pytest.mark.parametrize('kind', ['logical', 'physical'])
def test_backup_and_restore_playbooks_take_every_database(kind):
    both_dbs = dict(forest_userdbs=['userdb', SECOND], forest_backup_dir=BACKUPS)
    sandbox.both('DROP TABLE IF EXISTS kept; CREATE TABLE kept (id int PRIMARY KEY); '
                 'INSERT INTO kept SELECT generate_series(1, 42)')
    try:
        taken = sandbox.playbook('backup.yml', extra_vars=dict(both_dbs, kind=kind))
        assert taken.returncode == 0, taken.stdout[-3000:]
        if kind == 'logical':  # each database its own directory, so latest is that database's newest
            assert sorted(os.listdir(BACKUPS)) == [SECOND, 'userdb']
        sandbox.both('DELETE FROM invoices WHERE id > 100', dbname=SECOND)
        sandbox.both('DELETE FROM kept')
        sandbox.set_views({0: -1, 1: -1}, {0: -1, 1: -1})
        views(SECOND, {0: -1, 1: -1}, {0: -1, 1: -1})
        asked = dict(both_dbs, confirm_restore=True, **({'kind': 'physical'} if kind == 'physical' else {}))
        done = sandbox.playbook('restore.yml', extra_vars=asked)
        assert done.returncode == 0, done.stdout[-4000:]
        assert 'restored: the pair is healthy, the user databases are equal' in done.stdout
        for serverid in (0, 1):
            assert sandbox.query(serverid, 'SELECT count(*) FROM invoices', dbname=SECOND) == [(500,)]
            assert sandbox.query(serverid, 'SELECT count(*) FROM kept', dbname=sandbox.USERDB) == [(42,)]
        assert sandbox.module('forest_status', userdbs=['userdb', SECOND])['healthy']
        # one database alone, by name: only its backup is read, the other is not touched
        if kind == 'logical':
            sandbox.both('INSERT INTO kept VALUES (1000)')
            one = sandbox.playbook('restore.yml', extra_vars=dict(both_dbs, confirm_restore=True, userdb=SECOND))
            assert one.returncode == 0, one.stdout[-3000:]
            assert sandbox.query(0, 'SELECT count(*) FROM kept', dbname=sandbox.USERDB) == [(43,)]
    finally:
        sandbox.both('DROP TABLE IF EXISTS kept')
        import shutil
        shutil.rmtree(BACKUPS, ignore_errors=True)


class Writer(object):
    """A client that ignores udb_validity: inserts into `table` of `dbname` on serverid 0 every few ms."""

    def __init__(self, dbname, table):
        import threading
        self.dbname, self.table = dbname, table
        self.stop_event = threading.Event()
        self.count = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        with sandbox.connect(0, self.dbname, autocommit=True) as conn:
            while not self.stop_event.is_set():
                conn.execute('INSERT INTO %s DEFAULT VALUES' % self.table)
                self.count += 1
                time.sleep(0.005)

    def __enter__(self):
        self.thread.start()
        wait_for('the first write of the client that ignores udb_validity', lambda: self.count > 0)
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.thread.join()


def test_a_write_into_a_forest_database_during_the_freeze_fails_the_cut_naming_it():
    views('userdb', {TARGET: -1}, {TARGET: -1})
    views(SECOND, {TARGET: -1}, {TARGET: -1})
    assert not recover(phase='base').get('failed')
    with Writer(SECOND, 'invoices') as rogue:
        failed = recover(phase='cut')
    assert rogue.count > 0
    assert failed.get('failed') and 'a transaction wrote to serverid 0 during the write freeze' in failed['msg'], \
        failed
    assert re.search(r'into billing: invoices \(\d+ WAL records?\)', failed['msg']), failed['msg']
    assert 'Rolled back' in failed['msg'] and os.path.exists(MARKER) and not os.path.exists(WORKSPACE)
    assert sandbox.query(0, "SELECT 1 FROM pg_extension WHERE extname = 'pg_walinspect'") == []
    assert not recover().get('failed')


def test_writes_into_a_replaced_database_during_the_freeze_are_not_a_lost_write():
    for serverid in (0, 1):
        sandbox.query(serverid, 'CREATE DATABASE monitoring')
        sandbox.on(serverid, 'CREATE TABLE samples (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())',
                   dbname='monitoring')
    views('userdb', {TARGET: -1}, {TARGET: -1})
    views(SECOND, {TARGET: -1}, {TARGET: -1})
    with Writer('monitoring', 'samples') as monitor:
        result = recover(replace_databases=['monitoring'])
    assert monitor.count > 0
    assert not result.get('failed'), result.get('msg')
    assert result['cut'].get('other_writes_in_freeze') is True, result['progress']
    assert any('none changed user data of a forest database' in line for line in result['progress'])
    assert sandbox.query(0, "SELECT 1 FROM pg_extension WHERE extname = 'pg_walinspect'") == []
    assert sandbox.module('forest_status', userdbs=['userdb', SECOND])['healthy']


def test_node_1_broken_for_one_database_only_both_drivers_lose_nothing():
    """userdb's drivers gave up on serverid 1 while billing's still write to both nodes: the DBA
    includes billing (include_valid); its driver loses serverid 1 when the copy stops it, and both
    come back valid at the one cut."""
    nodes = sandbox.driver_nodes()
    drivers = dict((userdb, ForestDriver(nodes, userdb, sandbox.password(), read_duration=1.0).start())
                   for userdb in ('userdb', SECOND))
    try:
        for driver in drivers.values():
            driver_writes(driver)
        views('userdb', {TARGET: -1}, {TARGET: -1})  # userdb only: serverid 1 is broken for it
        driver_sees(drivers['userdb'], {TARGET: -1})
        assert drivers[SECOND].validity[TARGET] == 1
        refused = recover(notice_wait=None)
        assert refused.get('failed') and 'billing: serverid 1 is still valid there' in refused['msg']
        result = recover(notice_wait=None, include_valid=[SECOND])
        if not result.get('failed'):
            for driver in drivers.values():
                driver_writes_to_every_node(driver)
    finally:
        for driver in drivers.values():
            driver.stop()
    assert not result.get('failed'), result.get('msg')
    assert result['userdbs'] == ['userdb', SECOND]
    assert sandbox.module('forest_status', userdbs=['userdb', SECOND])['healthy']
    for userdb, driver in drivers.items():
        assert driver.errors == [], userdb
        assert lost_or_duplicated(driver, lambda sid, db=userdb: sandbox.connect(sid, db)) == [], userdb
        assert driver.validity == {0: 1, 1: 1}, userdb
        assert sandbox.module('forest_dbsync', userdb=userdb)['equal'] is True, userdb


def test_offline_recovery_playbook_repairs_only_the_degraded_database():
    sandbox.on(TARGET, 'DELETE FROM invoices WHERE id <= 10', dbname=SECOND)
    sandbox.both('DROP TABLE IF EXISTS kept; CREATE TABLE kept (id int PRIMARY KEY); INSERT INTO kept VALUES (1)')
    sandbox.on(TARGET, 'INSERT INTO kept VALUES (2)')  # userdb differs too, but is not marked broken
    views(SECOND, {TARGET: -1}, {TARGET: -1})
    try:
        done = sandbox.playbook('recover.yml', extra_vars=dict(mode='offline', forest_userdbs=['userdb', SECOND]))
        assert done.returncode == 0, done.stdout[-3000:]
        assert 'billing: serverid 1 recovered offline (diff) from serverid 0' in done.stdout, done.stdout[-3000:]
        assert sandbox.query(TARGET, 'SELECT count(*) FROM invoices', dbname=SECOND) == [(500,)]
        assert sandbox.query(TARGET, 'SELECT count(*) FROM kept', dbname=sandbox.USERDB) == [(2,)]  # not touched
        assert sandbox.module('forest_status', userdbs=['userdb', SECOND])['healthy']
    finally:
        sandbox.both('DROP TABLE IF EXISTS kept')
