"""forest_recover mode=online against the sandbox pair: under the reference driver's
load, step by step, and with a failure injected in each phase."""
import json
import os
import shutil
import threading
import time

import pytest

from pgforest_dev import sandbox
from pgforest_dev.forest_driver import LOADED_FREEZE_BEYOND_NOTICE, ForestDriver, lost_or_duplicated
from pgforest_dev.wait import driver_sees, driver_writes, driver_writes_to_every_node, wait_for

from ansible_collections.pgforest.cluster.plugins.module_utils.mngdb import set_validity
from ansible_collections.pgforest.cluster.plugins.module_utils.node_identity import accept_node

TARGET = 1
SLOT = 'pgforest_recovery_%d' % TARGET
WORKSPACE = sandbox.data_dir(TARGET) + '.pgforest-recovery'


def recover(**args):
    args.update(mode='online', data_dir=sandbox.data_dir(TARGET))
    args.setdefault('notice_wait', 0.3)
    return sandbox.module('forest_recover', host='forest%d' % TARGET, timeout=300, **args)


MARKER = os.path.join(sandbox.data_dir(TARGET), 'old-data-directory.marker')


def on_old_data():
    """The target still runs on the data directory it had before (a copy of the source has no marker)."""
    return os.path.exists(MARKER)


def slots():
    return sandbox.query(0, 'SELECT slot_name FROM pg_replication_slots')


def file_setting(serverid, name):
    rows = sandbox.query(serverid, 'SELECT setting FROM pg_file_settings WHERE applied AND name = %s', [name])
    return rows[0][0] if rows else None


@pytest.fixture(autouse=True)
def broken_target():
    """serverid 1 stopped (immediate) after a table both nodes had; marked -1 by serverid 0's view."""
    sandbox.reset_pair()
    sandbox.both('DROP TABLE IF EXISTS online_orders; CREATE TABLE online_orders (id serial PRIMARY KEY, item text);'
                 'INSERT INTO online_orders (item) SELECT $$item$$ || g FROM generate_series(1, 2000) g;'
                 'DROP TABLE IF EXISTS "Unlogged Ö"; CREATE UNLOGGED TABLE "Unlogged Ö" (id int PRIMARY KEY, v text);'
                 'INSERT INTO "Unlogged Ö" SELECT g, md5(g::text) FROM generate_series(1, 3000) g;'
                 # an unlogged partition under a logged parent
                 'DROP TABLE IF EXISTS parted; CREATE TABLE parted (id int PRIMARY KEY) PARTITION BY RANGE (id);'
                 'CREATE UNLOGGED TABLE parted_low PARTITION OF parted FOR VALUES FROM (0) TO (1000);'
                 'INSERT INTO parted SELECT generate_series(1, 500);' + DROP_LARGE_OBJECT +
                 "; SELECT lo_from_bytea(424270, convert_to(repeat('large object ', 1000), 'UTF8'))")
    sandbox.set_views({TARGET: -1}, {TARGET: -1})
    with open(MARKER, 'w') as handle:
        handle.write('written by the test before the recovery\n')
    yield
    sandbox.kill_own('pg_basebackup.*' + SLOT)
    for phase in ('cancel', 'cleanup'):  # whatever a failed test left: undo it, or finish it after a cut
        if os.path.exists(WORKSPACE):
            recover(phase=phase)
    sandbox.reset_pair()
    sandbox.both('DROP TABLE IF EXISTS online_orders; DROP TABLE IF EXISTS forest_load_items; '
                 'DROP TABLE IF EXISTS forest_load; DROP TABLE IF EXISTS "Unlogged Ö"; DROP TABLE IF EXISTS parted;'
                 + DROP_LARGE_OBJECT)


DROP_LARGE_OBJECT = 'SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE oid::int8 = 424270'


def stop_target():
    sandbox.pg_ctl(TARGET, 'stop', '-m', 'immediate')


def assert_rolled_back(running):
    """The state before the recovery: old data directory, -1, no slot, nothing left behind."""
    assert on_old_data()
    assert not os.path.exists(WORKSPACE)
    assert not os.path.exists(os.path.join(sandbox.data_dir(TARGET), 'standby.signal'))
    assert slots() == []
    assert sandbox.query(0, 'SELECT udb_validity FROM server_info WHERE serverid = %s', [TARGET],
                         dbname=sandbox.MNGDB) == [(-1,)]
    assert (sandbox.pg_ctl(TARGET, 'status', check=False).returncode == 0) is running


def assert_recovered(result):
    assert not result.get('failed'), result.get('msg')
    assert (result['source'], result['target'], result['stage']) == (0, TARGET, 'done')
    assert not on_old_data()
    # every table and the large objects compared
    status, compared = sandbox.modules([('forest_status', 'forest0', {}), ('forest_dbsync', 'forest0', {})])
    assert status['cluster_state'] == 'healthy', status['recommended_action']
    assert compared['equal'] is True, compared['report']
    # (equal above includes the unlogged table: 3000 rows, or none if a test crashed the source, which empties it)
    assert 'pg_catalog.pg_largeobject                equal           rows 1/1' in compared['report']
    assert compared['unlogged_tables'] == ['public."Unlogged Ö"', 'public.parted_low']
    assert slots() == [] and not os.path.exists(WORKSPACE)
    # Its own configuration, not the source's: lock_timeout differs per node.
    assert (file_setting(TARGET, 'lock_timeout'), file_setting(0, 'lock_timeout')) == ('31s', '30s')
    assert file_setting(TARGET, 'primary_conninfo') is None
    assert result['cleanup']['target_settings']['lock_timeout'] == '31s'
    # Sequences hand out the same next values on both nodes.
    nextval = "SELECT nextval('online_orders_id_seq')"
    assert sandbox.query(0, nextval, dbname=sandbox.USERDB) == sandbox.query(TARGET, nextval, dbname=sandbox.USERDB)


def test_online_recovery_under_load_loses_and_duplicates_nothing():
    sandbox.set_read_duration(1)
    sandbox.set_views({TARGET: 1}, {TARGET: 1})
    nodes = sandbox.driver_nodes()
    driver = ForestDriver(nodes, sandbox.USERDB, sandbox.password(), read_duration=1.0).start()
    try:
        driver_writes(driver)
        stop_target()
        driver_sees(driver, {TARGET: -1})  # the driver marked the stopped node broken
        acked_while_degraded = len(driver.acked)
        result = recover(notice_wait=None)  # the drivers' notice time: mngdb_read_duration = 1 s
        if not result.get('failed'):
            driver_writes_to_every_node(driver)
    finally:
        driver.stop()
    assert_recovered(result)
    assert driver.errors == []
    assert len(driver.acked) > acked_while_degraded > 0
    assert lost_or_duplicated(driver, lambda sid: sandbox.connect(sid, sandbox.USERDB)) == []
    # The driver wrote to both nodes again after the cut: its last writes are on the recovered node.
    assert driver.validity == {0: 1, 1: 1}
    cut = result['cut']
    assert 1.0 <= result['freeze_window'] <= cut['notice_seconds'] + LOADED_FREEZE_BEYOND_NOTICE, cut
    assert cut['sequences_copied'] >= 2 and cut['lag_at_cut'] >= 0
    assert (cut['unlogged_tables'], cut['unlogged_rows']) == (2, 3500) and cut['unlogged_seconds'] < 1
    assert sandbox.query(TARGET, 'SELECT count(*) FROM "Unlogged Ö"', dbname=sandbox.USERDB) == [(3000,)]
    assert sandbox.query(TARGET, 'SELECT count(*) FROM parted', dbname=sandbox.USERDB) == [(500,)]
    assert result['bytes_copied'] > 10 * 2 ** 20
    assert set(result['phases']) == {'base', 'cut', 'cleanup'}


def test_step_by_step_and_cancel_refused_after_the_cut():
    stop_target()
    assert recover(phase='cut')['msg'].startswith('phase=cut needs an online recovery at stage standby, but none')
    base = recover(phase='base')
    assert not base.get('failed'), base.get('msg')
    assert base['stage'] == 'standby' and os.path.exists(WORKSPACE)
    status = sandbox.module('forest_status')
    node = status['nodes'][TARGET]
    assert (status['cluster_state'], node['in_recovery'], node['reachable']) == ('degraded', True, True)
    assert slots() == [(SLOT,)]
    again = recover()
    assert 'in progress here (stage standby' in again['msg'] and 'phase=cut' in again['msg']
    sandbox.on(0, "INSERT INTO online_orders (item) VALUES ('while a standby')")
    cut = recover(phase='cut')
    assert not cut.get('failed'), cut.get('msg')
    assert cut['stage'] == 'promoted'
    assert cut['freeze_window'] <= cut['cut']['notice_seconds'] + LOADED_FREEZE_BEYOND_NOTICE, cut['cut']
    refused = recover(phase='cancel')
    assert refused.get('failed') and 'finish with phase=cleanup' in refused['msg']
    assert sandbox.query(TARGET, "SELECT count(*) FROM online_orders WHERE item = 'while a standby'",
                         dbname=sandbox.USERDB) == [(1,)]
    assert not on_old_data()
    assert_recovered(recover(phase='cleanup'))


def test_a_run_stopped_after_the_freeze_made_the_target_valid_is_finished_not_rolled_back():
    """A run killed or interrupted between the freeze's end (the target valid on the source, the
    applications writing to it) and its state file: a cancel must not put the old data directory back."""
    stop_target()
    assert not recover(phase='base').get('failed')
    # What the freeze leaves before the state file says "promoted" (online_cut.promote_in_freeze): the
    # target promoted, valid in both views, its identity accepted by the pair.
    assert sandbox.query(TARGET, 'SELECT pg_promote(true, 60)') == [(True,)]
    with sandbox.connect(0, sandbox.MNGDB) as source, sandbox.connect(TARGET, sandbox.MNGDB) as target:
        for view in (source, target):
            set_validity(view, TARGET, 1)
        accept_node(TARGET, target, [source, target])
    sandbox.on(TARGET, "INSERT INTO online_orders (item) VALUES ('written after the cut')")
    refused = recover(phase='cancel')
    assert refused.get('failed') and 'the cut is done' in refused['msg'] and 'phase=cleanup' in refused['msg']
    assert not on_old_data()
    assert sandbox.query(TARGET, "SELECT count(*) FROM online_orders WHERE item = 'written after the cut'",
                         dbname=sandbox.USERDB) == [(1,)]
    with open(os.path.join(WORKSPACE, 'state.json')) as handle:  # where the recovery is, for phase=cleanup
        assert json.load(handle)['stage'] == 'promoted'
    finished = recover(phase='cleanup')
    assert not finished.get('failed'), finished.get('msg')
    assert finished['stage'] == 'done' and slots() == [] and not os.path.exists(WORKSPACE)
    assert sandbox.module('forest_status')['cluster_state'] == 'healthy'


def test_a_target_that_cannot_be_put_back_still_leaves_the_source_reset():
    """The source serves the applications: its slot and its view of the target are reset even when the
    target's old data directory does not start; the error says what is left, and a second cancel ends it."""
    assert not recover(phase='base').get('failed')
    old_conf = os.path.join(WORKSPACE, 'old-data', 'postgresql.auto.conf')
    with open(old_conf) as handle:
        kept = handle.read()
    with open(old_conf, 'a') as handle:
        handle.write("shared_buffers = 'not a size'\n")
    failed = recover(phase='cancel')
    assert failed.get('failed') and 'serverid 0 is reset' in failed['msg'] and 'phase=cancel again' in failed['msg']
    assert slots() == []
    assert sandbox.query(0, 'SELECT udb_validity FROM server_info WHERE serverid = %s', [TARGET],
                         dbname=sandbox.MNGDB) == [(-1,)]
    assert os.path.exists(WORKSPACE)  # what the next cancel needs
    with open(os.path.join(sandbox.data_dir(TARGET), 'postgresql.auto.conf'), 'w') as handle:
        handle.write(kept)
    cancelled = recover(phase='cancel')
    assert not cancelled.get('failed'), cancelled.get('msg')
    assert_rolled_back(running=True)


def test_cancel_after_base_restores_the_state_before():
    assert not recover(phase='base').get('failed')
    cancelled = recover(phase='cancel')
    assert not cancelled.get('failed'), cancelled.get('msg')
    assert cancelled['stage'] == 'cancelled'
    assert_rolled_back(running=True)
    assert recover(phase='cancel')['changed'] is False  # nothing left to cancel
    assert_recovered(recover())


def test_target_killed_during_base_copy_rolls_back_then_recovery_succeeds():
    sandbox.on(0, 'CREATE TABLE bulk AS SELECT g, repeat($$x$$, 200) AS pad FROM generate_series(1, 100000) g')
    stop_target()
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(recover(max_rate='2M')))
    worker.start()
    killed = []

    def kill_basebackup():
        if sandbox.kill_own('pg_basebackup.*' + SLOT):
            killed.append(True)
        return killed or not worker.is_alive()
    try:
        wait_for('pg_basebackup to run', kill_basebackup, interval=0.1)
    finally:
        worker.join()
    sandbox.on(0, 'DROP TABLE bulk')
    assert killed, 'pg_basebackup never ran'
    assert outcome.get('failed') and 'base failed: pg_basebackup from serverid 0 failed' in outcome['msg']
    assert 'Rolled back' in outcome['msg']
    assert_rolled_back(running=False)
    assert_recovered(recover())


def test_source_unreachable_during_cut_rolls_back_then_recovery_succeeds():
    assert not recover(phase='base').get('failed')
    outcome = {}
    # a long notice keeps the freeze in place while the source goes away
    worker = threading.Thread(target=lambda: outcome.update(recover(phase='cut', notice_wait=10)))
    worker.start()
    wait_for('the freeze to start', lambda: sandbox.query(
        0, 'SELECT udb_validity FROM server_info WHERE serverid = %s', [TARGET], dbname=sandbox.MNGDB) == [(0,)])
    sandbox.pg_ctl(0, 'stop', '-m', 'immediate')
    time.sleep(3)  # how long the source stays down (the fault itself), not a wait for something to happen
    sandbox.ensure_running(0)
    worker.join()
    assert outcome.get('failed') and outcome['msg'].startswith('cut failed:'), outcome.get('msg')
    assert 'Rolled back' in outcome['msg'], outcome['msg']
    assert_rolled_back(running=True)
    assert_recovered(recover())


def test_quiesce_timeout_rolls_back_and_names_the_session():
    stop_target()
    holder = sandbox.connect(0, sandbox.USERDB, autocommit=False)
    holder.execute("SELECT 'held open by the test'")
    try:
        result = recover(idle_wait_timeout=1)
    finally:
        holder.close()
    assert result.get('failed') and 'quiesce timed out' in result['msg'], result.get('msg')
    assert "held open by the test" in result['msg'] and 'Rolled back' in result['msg']
    assert_rolled_back(running=False)
    assert_recovered(recover())


def test_check_mode_and_wrong_input_change_nothing():
    stop_target()
    checked = sandbox.module('forest_recover', host='forest1', check=True, mode='online',
                             data_dir=sandbox.data_dir(TARGET))
    assert not checked.get('failed'), checked.get('msg')
    assert checked['changed'] is True  # check mode: would change
    assert any('would stop the server' in line for line in checked['progress'])
    wrong_dir = sandbox.module('forest_recover', host='forest1', mode='online', data_dir=sandbox.data_dir(0))
    assert 'is the data directory of serverid 0, the valid source' in wrong_dir['msg']
    assert recover(phase='cleanup')['msg'].startswith('phase=cleanup needs an online recovery at stage promoted')
    offline_phase = sandbox.module('forest_recover', mode='offline', phase='base')
    assert 'offline recovery has one step' in offline_phase['msg']
    # No mode given: online (the one default). The action plugin gives each host its own node's data
    # directory from the inventory: on the broken node's host that is the recovery; on the valid one's
    # host it is refused before anything changes.
    no_mode = sandbox.module('forest_recover', check=True, host='forest1')
    assert no_mode['mode'] == 'online' and any('would stop the server' in line for line in no_mode['progress'])
    on_valid_host = sandbox.module('forest_recover', host='forest0')['msg']
    assert 'the valid source' in on_valid_host and on_valid_host.endswith('Nothing was changed'), on_valid_host
    assert_rolled_back(running=False)
    assert sandbox.pg_ctl(0, 'status', check=False).returncode == 0


def test_a_workspace_left_without_state_is_refused_and_kept():
    """A workspace whose state file is gone (removed by hand, or a crash before its first save) may
    hold the node's old data directory: the recovery refuses before anything changes, and it neither
    rolls back (no restart of the target) nor removes that directory."""
    precious = os.path.join(WORKSPACE, 'old-data', 'PRECIOUS')
    os.makedirs(os.path.dirname(precious))
    with open(precious, 'w') as handle:
        handle.write('the data directory of an earlier recovery\n')
    started = sandbox.query(TARGET, 'SELECT pg_postmaster_start_time()')
    try:
        result = recover()
        assert result.get('failed') and 'holds no recovery state (contents: old-data)' in result['msg'], result['msg']
        assert 'Nothing was changed' in result['msg'] and 'Rolled back' not in result['msg']
        assert os.path.exists(precious) and on_old_data()
        assert sandbox.query(TARGET, 'SELECT pg_postmaster_start_time()') == started  # never stopped
        assert slots() == []
    finally:
        shutil.rmtree(WORKSPACE)


def test_both_broken_is_refused_online():
    sandbox.set_views({0: -1}, {0: -1})
    result = recover()
    assert result.get('failed') and 'restore both nodes from a backup' in result['msg']
    assert not os.path.exists(WORKSPACE)
    assert sandbox.pg_ctl(TARGET, 'status', check=False).returncode == 0


def test_recover_playbook_offline_then_refuses_a_healthy_pair():
    sandbox.on(TARGET, "UPDATE online_orders SET item = 'drifted' WHERE id <= 3")
    done = sandbox.playbook('recover.yml', extra_vars=dict(mode='offline'))
    assert done.returncode == 0, done.stdout[-3000:]
    assert 'serverid 1 recovered offline (diff) from serverid 0' in done.stdout
    assert 'cluster healthy: both nodes are valid' in done.stdout  # the status printed afterwards
    assert on_old_data()  # offline repairs in place
    assert sandbox.query(TARGET, "SELECT count(*) FROM online_orders WHERE item = 'drifted'",
                         dbname=sandbox.USERDB) == [(0,)]
    again = sandbox.playbook('recover.yml')  # idempotent: ok, nothing changed
    assert again.returncode == 0, again.stdout[-3000:]
    assert 'Nothing to recover: the pair is healthy' in again.stdout
    assert all(counts['changed'] == 0 and counts['failed'] == 0 for counts in sandbox.recap(again.stdout).values())
    module_again = sandbox.module('forest_recover', mode='offline')
    assert not module_again.get('failed') and module_again['changed'] is False
    assert module_again['msg'].startswith('Nothing to recover: the pair is healthy')
    cancel = sandbox.playbook('recover.yml', extra_vars=dict(phase='cancel', target=1))
    assert cancel.returncode == 0, cancel.stdout[-3000:]
    assert 'no online recovery in progress on its host: nothing to cancel' in cancel.stdout
    assert 'None' not in cancel.stdout.split('PLAY RECAP')[0].split('Print what the recovery did')[-1]
    step = sandbox.playbook('recover.yml', extra_vars=dict(phase='cleanup'))
    assert step.returncode != 0 and 'needs the serverid being recovered, e.g. -e target=1' in step.stdout
