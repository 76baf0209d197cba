"""forest_recover mode=online method=resync against the sandbox pair: the broken node keeps its data
directory and gets only what changed while it was out, under the reference driver's load; refusals
change nothing; no replication machinery is left on either node."""
import os
import signal
import subprocess
import threading

import pytest

from pgforest_dev import sandbox
from pgforest_dev.forest_driver import LOADED_FREEZE_BEYOND_NOTICE, ForestDriver, lost_or_duplicated
from pgforest_dev.wait import driver_sees, driver_writes, driver_writes_to_every_node, wait_for

TARGET = 1
WORKSPACE = sandbox.data_dir(TARGET) + '.pgforest-recovery'
MARKER = os.path.join(sandbox.data_dir(TARGET), 'own-data-directory.marker')
DROP = ('DROP TABLE IF EXISTS resync_new; DROP TABLE IF EXISTS resync_orders; DROP TABLE IF EXISTS resync_gone; '
        'DROP TABLE IF EXISTS resync_nokey; DROP TABLE IF EXISTS forest_load_items; DROP TABLE IF EXISTS forest_load; '
        'SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE oid::int8 = 424271')


def recover(**args):
    args.update(mode='online', data_dir=sandbox.data_dir(TARGET))
    args.setdefault('method', 'resync')
    args.setdefault('notice_wait', 0.3)
    return sandbox.module('forest_recover', host='forest%d' % TARGET, timeout=300, **args)


def machinery(serverid):
    """Every piece of logical replication on a node, in every database: none must be left."""
    found = []
    for dbname in ('postgres', sandbox.USERDB, sandbox.MNGDB):
        slots = sandbox.query(serverid, 'SELECT slot_name FROM pg_replication_slots', dbname=dbname)
        publications = sandbox.query(serverid, 'SELECT pubname FROM pg_publication', dbname=dbname)
        found += [('slot', row[0]) for row in slots] + [('publication', dbname, row[0]) for row in publications]
    found += [('subscription', row[0]) for row in sandbox.query(serverid, 'SELECT subname FROM pg_subscription')]
    found += [('origin', row[0]) for row in sandbox.query(serverid, 'SELECT roname FROM pg_replication_origin')]
    return sorted(set(found))


def validity_seen_by(serverid):
    return sandbox.query(serverid, 'SELECT udb_validity FROM server_info WHERE serverid = %s', [TARGET],
                         dbname=sandbox.MNGDB)


@pytest.fixture(autouse=True)
def broken_target():
    """Both nodes with the same tables, serverid 1 then stopped (immediate) and marked -1."""
    sandbox.reset_pair()
    sandbox.both(DROP + '; CREATE TABLE resync_orders (id serial PRIMARY KEY, item text, n int);'
                 'INSERT INTO resync_orders (item, n) SELECT $$item$$ || g, g FROM generate_series(1, 5000) g;'
                 'CREATE TABLE resync_gone (id int PRIMARY KEY, v text);'
                 'INSERT INTO resync_gone SELECT g, md5(g::text) FROM generate_series(1, 1000) g;'
                 "SELECT lo_from_bytea(424271, convert_to('before', 'UTF8'))")
    sandbox.set_views({TARGET: -1}, {TARGET: -1})
    with open(MARKER, 'w') as handle:
        handle.write('written by the test: a resync keeps this data directory\n')
    yield
    if os.path.exists(WORKSPACE):
        for phase in ('cancel', 'cleanup'):
            if os.path.exists(WORKSPACE):
                recover(phase=phase)
    sandbox.reset_pair()
    sandbox.both(DROP)


def stop_target():
    sandbox.pg_ctl(TARGET, 'stop', '-m', 'immediate')


def drift_while_down():
    """What the source took while the target was out: insert, update, delete, a TRUNCATE, a large object."""
    sandbox.on(0, "INSERT INTO resync_orders (item, n) SELECT 'new' || g, g FROM generate_series(1, 700) g;"
                  "UPDATE resync_orders SET item = 'updated' WHERE id % 7 = 0;"
                  'DELETE FROM resync_orders WHERE id % 11 = 0;'
                  'TRUNCATE resync_gone;'
                  "SELECT lo_put(424271, 0, convert_to('changed', 'UTF8'));"
                  'CREATE TABLE resync_new (id bigserial PRIMARY KEY, order_id int REFERENCES resync_orders, v text);'
                  "INSERT INTO resync_new (order_id, v) SELECT id, 'new' FROM resync_orders WHERE id <= 300")


def test_resync_under_load_loses_nothing_keeps_the_data_directory_and_leaves_no_machinery():
    sandbox.set_read_duration(1)
    sandbox.set_views({TARGET: 1}, {TARGET: 1})
    nodes = sandbox.driver_nodes()
    driver = ForestDriver(nodes, sandbox.USERDB, sandbox.password(), read_duration=1.0).start()
    try:
        driver_writes(driver)
        stop_target()
        driver_sees(driver, {TARGET: -1})
        drift_while_down()
        acked_while_degraded = len(driver.acked)
        result = recover(notice_wait=None)  # the drivers' notice: mngdb_read_duration = 1 s
        if not result.get('failed'):
            driver_writes_to_every_node(driver)
    finally:
        driver.stop()
    assert not result.get('failed'), result.get('msg')
    assert (result['method'], result['stage'], result['source'], result['target']) == ('resync', 'done', 0, TARGET)
    assert os.path.exists(MARKER)  # its own data directory, not a copy
    assert driver.errors == []
    assert len(driver.acked) > acked_while_degraded > 0
    assert lost_or_duplicated(driver, lambda sid: sandbox.connect(sid, sandbox.USERDB)) == []
    assert driver.validity == {0: 1, 1: 1}
    # every table, sequence and the large objects compared
    status, compared = sandbox.modules([('forest_status', 'forest0', {}), ('forest_dbsync', 'forest0', {})])
    assert status['cluster_state'] == 'healthy'
    assert compared['equal'] is True, compared['report']
    assert sandbox.query(TARGET, 'SELECT count(*) FROM resync_gone', dbname=sandbox.USERDB) == [(0,)]
    assert sandbox.query(TARGET, 'SELECT count(*) FROM resync_new', dbname=sandbox.USERDB) == [(300 - 300 // 11,)]
    cut = result['cut']
    assert 1.0 <= result['freeze_window'] <= 1.0 + LOADED_FREEZE_BEYOND_NOTICE, cut  # the notice is 1 s
    assert cut['sequences_copied'] >= 1 and cut['lag_at_cut'] >= 0 and cut['apply_wait_seconds'] < 1, cut
    # Only what drifted moved: the drifted table repaired row by row (keys), not reloaded whole.
    lines = result['resync'][sandbox.USERDB]['report']
    orders = [line for line in lines if line.startswith('public.resync_orders ')]
    assert len(orders) == 1 and ' repaired ' in orders[0], lines
    assert '(keys)' in orders[0] and 'reload' not in orders[0], orders
    assert set(result['phases']) == {'base', 'cut', 'cleanup'}
    assert not os.path.exists(WORKSPACE)
    assert machinery(0) == [] and machinery(TARGET) == []


def test_a_table_without_replica_identity_is_refused_and_nothing_changes():
    sandbox.both('CREATE TABLE resync_nokey (v text)')
    stop_target()
    result = recover()
    assert result.get('failed'), result
    assert 'resync_nokey' in result['msg'] and 'Nothing was changed' in result['msg'], result['msg']
    assert 'Rolled back' not in result['msg']
    assert sandbox.pg_ctl(TARGET, 'status', check=False).returncode != 0  # not even started
    assert not os.path.exists(WORKSPACE)
    assert machinery(0) == []
    sandbox.ensure_running(TARGET)
    assert machinery(TARGET) == []
    assert validity_seen_by(0) == [(-1,)]


def test_a_failed_cut_rolls_back_leaves_nothing_then_the_next_run_succeeds():
    stop_target()
    drift_while_down()
    base = recover(phase='base')
    assert not base.get('failed'), base.get('msg')
    assert base['stage'] == 'standby' and os.path.exists(WORKSPACE)
    slots = sandbox.query(0, 'SELECT slot_name, slot_type FROM pg_replication_slots')
    assert [kind for _name, kind in slots] == ['logical'], slots
    assert [row[0] for row in sandbox.query(TARGET, 'SELECT subname FROM pg_subscription')] == [slots[0][0]]
    # Applied while it follows: a row written now reaches the target before any freeze.
    sandbox.on(0, "INSERT INTO resync_orders (item) VALUES ('while subscribed')")
    wrong_method = sandbox.module('forest_recover', host='forest%d' % TARGET, mode='online', phase='cut',
                                  data_dir=sandbox.data_dir(TARGET))
    assert 'method=resync' in wrong_method['msg'], wrong_method['msg']
    sandbox.on(0, 'ALTER TABLE resync_orders ADD COLUMN late text')  # DDL during the resync: the cut refuses
    cut = recover(phase='cut')
    assert cut.get('failed') and 'schema changed during the resync' in cut['msg'], cut.get('msg')
    assert 'Rolled back' in cut['msg']
    assert not os.path.exists(WORKSPACE)
    assert sandbox.pg_ctl(TARGET, 'status', check=False).returncode != 0  # stopped again, as it was before
    sandbox.ensure_running(TARGET)
    assert machinery(0) == [] and machinery(TARGET) == []
    assert validity_seen_by(0) == [(-1,)] and os.path.exists(MARKER)
    sandbox.on(TARGET, 'ALTER TABLE resync_orders ADD COLUMN late text')  # the DBA runs the same DDL there
    done = recover()
    assert not done.get('failed'), done.get('msg')
    assert sandbox.module('forest_dbsync')['equal'] is True
    assert machinery(0) == [] and machinery(TARGET) == []


def test_a_source_without_wal_level_logical_is_refused_naming_the_setting():
    """A pair provisioned before the role set wal_level = logical: refused before anything changes."""
    sandbox.on(0, 'ALTER SYSTEM SET wal_level = replica', dbname='postgres')  # postgresql.auto.conf wins
    sandbox.pg_ctl(0, 'stop', '-m', 'fast')
    try:
        sandbox.ensure_running(0)  # started with its log file: pg_ctl restart would hold the test's pipes
        assert sandbox.query(0, 'SHOW wal_level') == [('replica',)]
        stop_target()
        result = recover()
        assert result.get('failed'), result
        assert 'wal_level = logical' in result['msg'] and 'serverid 0 has wal_level = replica' in result['msg']
        assert result['msg'].endswith('Nothing was changed') and 'Rolled back' not in result['msg']
        assert sandbox.pg_ctl(TARGET, 'status', check=False).returncode != 0  # not started
        assert not os.path.exists(WORKSPACE) and machinery(0) == []
        assert validity_seen_by(0) == [(-1,)]
    finally:
        sandbox.on(0, 'ALTER SYSTEM RESET wal_level', dbname='postgres')
        sandbox.pg_ctl(0, 'stop', '-m', 'fast')
        sandbox.ensure_running(0)
    assert sandbox.query(0, 'SHOW wal_level') == [('logical',)]


def test_recover_playbook_with_method_auto_takes_resync():
    stop_target()
    drift_while_down()
    done = sandbox.playbook('recover.yml', extra_vars=dict(method='auto', notice_wait=0.3))
    assert done.returncode == 0, done.stdout[-3000:]
    assert 'serverid 1 recovered online (resync) from serverid 0' in done.stdout
    assert 'method=auto chose resync: the data directory is there' in done.stdout
    assert 'cluster healthy: both nodes are valid' in done.stdout
    assert os.path.exists(MARKER)
    assert machinery(0) == [] and machinery(TARGET) == []
    wrong = sandbox.module('forest_recover', mode='offline', method='resync')
    assert wrong['msg'] == 'method=resync is not a method of mode=offline: use diff or dump. Nothing was changed'
    wrong = sandbox.module('forest_recover', mode='offline', method='auto')
    assert wrong['msg'] == 'method=auto is not a method of mode=offline: use diff or dump. Nothing was changed'


def interrupt_when_the_slot_exists(signum, **args):
    """The recovery's result after signal `signum` reached its module while the compare ran (the slot
    made, no subscription yet); a bulk table drifted on the source makes the compare last a while."""
    sandbox.both('DROP TABLE IF EXISTS resync_bulk; CREATE TABLE resync_bulk (id int PRIMARY KEY, pad text);'
                 "INSERT INTO resync_bulk SELECT g, repeat('x', 100) FROM generate_series(1, 200000) g")
    stop_target()
    sandbox.on(0, "UPDATE resync_bulk SET pad = 'changed' WHERE id % 3 = 0")
    # A logical slot is listed while it is being created, and dropped if its creator dies then: wait until
    # it has its consistent point (confirmed_flush_lsn), which comes with the slot made permanent.
    outcome, sent = recover_and_signal(
        args, lambda: sandbox.query(0, "SELECT 1 FROM pg_replication_slots WHERE slot_name LIKE 'pgforest_resync_%%' "
                                       'AND confirmed_flush_lsn IS NOT NULL'),
        signum, 'the resync to create its slot')
    assert sent, outcome
    return outcome


def recover_and_signal(args, ready, signum, what):
    """(the result of recover(**args), whether `signum` reached its module): the signal is sent once
    ready() says so, while the module runs."""
    outcome, sent = {}, []
    worker = threading.Thread(target=lambda: outcome.update(recover(**args)))
    worker.start()

    def signal_when_ready():
        if ready() and sandbox.kill_own('python.*AnsiballZ_forest_recover', signum):
            sent.append(True)
        return sent or not worker.is_alive()
    try:
        wait_for(what, signal_when_ready, interval=0.02)
    finally:
        worker.join()
    return outcome, bool(sent)


def test_ctrl_c_in_base_rolls_back_and_leaves_nothing():
    try:
        outcome = interrupt_when_the_slot_exists(signal.SIGINT)
        assert outcome.get('failed') and 'base failed: interrupted' in outcome['msg'], outcome.get('msg')
        assert 'Rolled back' in outcome['msg'] and 'replication origin is left' in outcome['msg']
        assert not os.path.exists(WORKSPACE)
        assert sandbox.pg_ctl(TARGET, 'status', check=False).returncode != 0  # stopped again, as before
        sandbox.ensure_running(TARGET)
        assert machinery(0) == [] and machinery(TARGET) == []
        assert validity_seen_by(0) == [(-1,)] and os.path.exists(MARKER)
    finally:
        sandbox.ensure_running(TARGET)
        sandbox.both('DROP TABLE IF EXISTS resync_bulk')


def test_ctrl_c_in_the_cut_undoes_the_freeze_and_leaves_nothing_then_the_next_run_succeeds():
    """SIGINT inside the freeze (the target 0 on the source, its notice of 5 s running, the subscription
    still there): the 0 is undone, the target stays -1 on its own data directory, no machinery is left."""
    stop_target()
    drift_while_down()
    base = recover(phase='base')
    assert not base.get('failed') and base['stage'] == 'standby', base.get('msg')
    outcome, sent = recover_and_signal(dict(phase='cut', notice_wait=5), lambda: validity_seen_by(0) == [(0,)],
                                       signal.SIGINT, 'the freeze to begin')
    assert sent, outcome
    assert outcome.get('failed') and 'cut failed: interrupted (SIGINT)' in outcome['msg'], outcome.get('msg')
    assert 'Rolled back' in outcome['msg']
    assert validity_seen_by(0) == [(-1,)] and not os.path.exists(WORKSPACE) and os.path.exists(MARKER)
    assert sandbox.pg_ctl(TARGET, 'status', check=False).returncode != 0  # stopped again, as before
    sandbox.ensure_running(TARGET)
    assert machinery(0) == [] and machinery(TARGET) == []
    again = recover()
    assert not again.get('failed'), again.get('msg')
    assert sandbox.module('forest_status')['cluster_state'] == 'healthy'


def test_ctrl_c_in_the_cleanup_leaves_what_the_next_cleanup_finishes():
    """The cleanup is never rolled back (the node serves already): interrupted anywhere, it is run again."""
    stop_target()
    for phase in ('base', 'cut'):
        done = recover(phase=phase)
        assert not done.get('failed'), done.get('msg')
    # Once the module holds the pair's lock, it runs the cleanup's steps.
    outcome, _sent = recover_and_signal(
        dict(phase='cleanup'), lambda: sandbox.query(0, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory'",
                                                     dbname=sandbox.MNGDB), signal.SIGINT, 'the cleanup to run')
    if outcome.get('failed'):  # interrupted: the node serves all the same, and a cleanup run again finishes
        assert validity_seen_by(0) == [(1,)], outcome.get('msg')
        finished = recover(phase='cleanup')
        assert not finished.get('failed'), finished.get('msg')
    assert not os.path.exists(WORKSPACE)
    assert machinery(0) == [] and machinery(TARGET) == []
    assert sandbox.module('forest_status')['cluster_state'] == 'healthy'


def test_a_run_killed_in_base_is_undone_by_cancel_then_the_next_run_succeeds():
    """SIGKILL while the compare runs: the state file says what was made, a new run names it,
    phase=cancel drops it, and a run after that recovers the node."""
    try:
        outcome = interrupt_when_the_slot_exists(signal.SIGKILL)
        assert outcome.get('failed')
        assert len([entry for entry in machinery(0) if entry[0] == 'slot']) == 1  # what the killed run left
        again = recover()
        assert again.get('failed') and 'in progress here (stage base, method=resync' in again['msg'], again['msg']
        cancelled = recover(phase='cancel')
        assert not cancelled.get('failed'), cancelled.get('msg')
        assert cancelled['stage'] == 'cancelled' and not os.path.exists(WORKSPACE)
        sandbox.ensure_running(TARGET)
        assert machinery(0) == [] and machinery(TARGET) == []
        assert validity_seen_by(0) == [(-1,)] and os.path.exists(MARKER)
        done = recover()
        assert not done.get('failed'), done.get('msg')
        assert sandbox.module('forest_dbsync')['equal'] is True
        assert machinery(0) == [] and machinery(TARGET) == []
    finally:
        sandbox.ensure_running(TARGET)
        sandbox.both('DROP TABLE IF EXISTS resync_bulk')


def test_check_mode_says_what_it_would_do_and_changes_nothing():
    stop_target()
    checked = sandbox.module('forest_recover', host='forest%d' % TARGET, check=True, mode='online', method='resync',
                             data_dir=sandbox.data_dir(TARGET))
    assert not checked.get('failed'), checked.get('msg')
    assert checked['changed'] is True and checked['method'] == 'resync'
    assert any('would resync serverid 1 from serverid 0' in line for line in checked['progress']), checked['progress']
    assert sandbox.pg_ctl(TARGET, 'status', check=False).returncode != 0
    assert not os.path.exists(WORKSPACE) and machinery(0) == []


def test_a_slot_invalidated_by_the_wal_limit_fails_the_run_clearly_and_rolls_back():
    stop_target()
    assert not recover(phase='base').get('failed')
    sandbox.on(TARGET, 'ALTER SUBSCRIPTION %s DISABLE' % sandbox.query(TARGET, 'SELECT subname FROM pg_subscription')[0][0])
    sandbox.on(0, "ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'", dbname='postgres')
    try:
        sandbox.query(0, 'SELECT pg_reload_conf()')
        for _segment in range(5):  # WAL past the limit while the subscription stands still
            sandbox.on(0, "INSERT INTO resync_orders (item) SELECT 'wal' FROM generate_series(1, 100)")
            sandbox.query(0, 'SELECT pg_switch_wal()')
        sandbox.query(0, 'CHECKPOINT')  # a checkpoint invalidates the slots past the limit
        assert sandbox.query(0, "SELECT wal_status FROM pg_replication_slots") == [('lost',)]
        cut = recover(phase='cut')
    finally:
        sandbox.on(0, 'ALTER SYSTEM RESET max_slot_wal_keep_size', dbname='postgres')
        sandbox.query(0, 'SELECT pg_reload_conf()')
    assert cut.get('failed') and 'was invalidated' in cut['msg'] and 'max_slot_wal_keep_size' in cut['msg'], cut['msg']
    assert 'Rolled back' in cut['msg']
    assert not os.path.exists(WORKSPACE)
    sandbox.ensure_running(TARGET)
    assert machinery(0) == [] and machinery(TARGET) == []
    assert validity_seen_by(0) == [(-1,)]


def test_the_target_s_other_databases_are_kept_without_replace_databases():
    """A physical copy would replace a database that is not a forest database (and needs replace_databases);
    a resync moves only the forest databases and leaves the others as they are."""
    for serverid in (0, 1):
        sandbox.query(serverid, 'DROP DATABASE IF EXISTS rsy_other')
        sandbox.query(serverid, 'CREATE DATABASE rsy_other')
        sandbox.on(serverid, 'CREATE TABLE mine AS SELECT %d AS serverid' % serverid, dbname='rsy_other')
    try:
        stop_target()
        drift_while_down()
        result = recover()
        assert not result.get('failed'), result.get('msg')
        assert result['userdbs'] == [sandbox.USERDB]
        assert sandbox.query(TARGET, 'SELECT serverid FROM mine', dbname='rsy_other') == [(TARGET,)]
        assert sandbox.module('forest_dbsync')['equal'] is True
    finally:
        sandbox.ensure_running(TARGET)
        for serverid in (0, 1):
            sandbox.query(serverid, 'DROP DATABASE IF EXISTS rsy_other')


def test_method_auto_takes_resync_when_it_can_and_says_why():
    stop_target()
    drift_while_down()
    result = recover(method='auto')
    assert not result.get('failed'), result.get('msg')
    assert result['method'] == 'resync' and result['method_choice']['method'] == 'resync'
    assert 'with every forest database' in result['method_choice']['reason']
    assert any('method=auto chose resync' in line for line in result['progress'])
    assert os.path.exists(MARKER)  # kept: no physical copy
    assert sandbox.module('forest_status')['cluster_state'] == 'healthy'
    assert machinery(0) == machinery(TARGET) == []


def test_method_auto_takes_basebackup_naming_what_a_resync_lacks_and_puts_a_started_target_back():
    sandbox.both('CREATE TABLE resync_nokey (v text)')
    stop_target()
    result = recover(method='auto')
    assert not result.get('failed'), result.get('msg')
    choice = result['method_choice']
    assert (result['method'], choice['method']) == ('basebackup', 'basebackup')
    assert choice['reason'].startswith('resync would be refused') and 'resync_nokey' in choice['reason'], choice
    progress = '\n'.join(result['progress'])
    assert 'started the server' in progress and 'stopped the server' in progress  # looked at, then put back
    assert not os.path.exists(MARKER)  # a physical copy of the source replaced the data directory
    assert sandbox.module('forest_status')['cluster_state'] == 'healthy'


def test_method_auto_refuses_two_majors_and_a_later_phase_follows_the_recovery_in_progress(tmp_path):
    other = tmp_path / 'data'
    other.mkdir()
    (other / 'PG_VERSION').write_text('99\n')
    refused = sandbox.module('forest_recover', host='forest%d' % TARGET, mode='online', method='auto',
                             data_dir=str(other))
    assert refused.get('failed') and 'does not choose across majors' in refused['msg'], refused
    assert 'Nothing was changed' in refused['msg'] and validity_seen_by(0) == [(-1,)]
    stop_target()
    base = recover(phase='base')  # a resync at stage standby
    assert not base.get('failed'), base.get('msg')
    cut = recover(phase='cut', method='auto')
    assert not cut.get('failed'), cut.get('msg')
    assert cut['method'] == 'resync' and 'in progress here is method=resync' in cut['method_choice']['reason']
    assert not recover(phase='cleanup', method='auto').get('failed')


def test_tables_dropped_on_the_source_while_the_target_was_out_are_dropped_on_it_too():
    sandbox.both('DROP TABLE IF EXISTS "Gone Ö.x"; CREATE TABLE "Gone Ö.x" (id int PRIMARY KEY, v text);'
                 'INSERT INTO "Gone Ö.x" SELECT g, md5(g::text) FROM generate_series(1, 100) g')
    stop_target()
    sandbox.on(0, 'DROP TABLE "Gone Ö.x"')
    result = recover()
    assert not result.get('failed'), result.get('msg')
    assert any('dropped 1 table(s) serverid 0 no longer has: public."Gone Ö.x"' in line for line in result['progress'])
    assert sandbox.query(TARGET, "SELECT to_regclass('public.\"Gone Ö.x\"') IS NULL", dbname=sandbox.USERDB) == [(True,)]
    assert sandbox.module('forest_dbsync')['equal'] is True


WRITES_SCRIPT = r'''\set r random(1, 3)
\set id random(1, 100000)
\if :r = 1
UPDATE resync_w SET v = v + 1 WHERE id = :id;
\elif :r = 2
DELETE FROM resync_w WHERE id = :id;
\else
INSERT INTO resync_w (v) VALUES (:id);
\endif
'''


def test_fifty_thousand_writes_while_out_then_resync_under_the_driver_is_equal_and_loses_nothing(tmp_path):
    """The issue's scale: the target down while its peer took 50,000 write transactions (updates, deletes
    and inserts by key through pgbench, a new table, a TRUNCATE), the reference driver writing all along."""
    sandbox.both('DROP TABLE IF EXISTS resync_w; CREATE TABLE resync_w (id bigserial PRIMARY KEY, v int);'
                 'INSERT INTO resync_w SELECT g, g FROM generate_series(1, 100000) g;'
                 "SELECT setval('resync_w_id_seq', 100000)")
    script = tmp_path / 'writes.sql'
    script.write_text(WRITES_SCRIPT)
    sandbox.set_views({TARGET: 1}, {TARGET: 1})
    nodes = sandbox.driver_nodes()
    driver = ForestDriver(nodes, sandbox.USERDB, sandbox.password(), read_duration=1.0).start()
    try:
        driver_writes_to_every_node(driver)  # it sees both nodes valid: the target's failure is its to mark
        stop_target()
        driver_sees(driver, {TARGET: -1})
        drift_while_down()
        source = sandbox.NODES[0]
        done = subprocess.run([os.path.join(sandbox.PG_BIN, 'pgbench'), '-n', '-c', '2', '-t', '25000', '-f',
                               str(script), '-h', source['host'], '-p', str(source['port']), '-U', 'postgres',
                               sandbox.USERDB], env=dict(os.environ, PGPASSWORD=sandbox.password()),
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0 and 'number of transactions actually processed: 50000/50000' in done.stdout, \
            done.stdout + done.stderr
        result = recover(notice_wait=None)
        if not result.get('failed'):
            driver_writes_to_every_node(driver)
    finally:
        driver.stop()
        sandbox.ensure_running(TARGET)
    try:
        assert not result.get('failed'), result.get('msg')
        assert result['resync'][sandbox.USERDB]['summary']['rows_copied'] > 10000
        assert driver.errors == []
        assert lost_or_duplicated(driver, lambda sid: sandbox.connect(sid, sandbox.USERDB)) == []
        compared = sandbox.module('forest_dbsync')
        assert compared['equal'] is True, compared['report']
        assert machinery(0) == machinery(TARGET) == []
    finally:
        sandbox.both('DROP TABLE IF EXISTS resync_w')
