"""The drivers' poll interval shortened for a write freeze (module_utils/poll_interval.py): with the
DBA's mngdb_read_duration long, an online recovery or online compare freezes with a 1-second notice,
and the DBA's value is back after success, cancel, failure, SIGINT, and a killed run's next run."""
import os
import signal
import subprocess

import pytest

from pgforest_dev import sandbox
from pgforest_dev.forest_driver import ForestDriver, lost_or_duplicated
from pgforest_dev.wait import driver_sees, driver_writes_to_every_node, wait_for

from ansible_collections.pgforest.cluster.plugins.filter.forest_metrics import prometheus_metrics
from ansible_collections.pgforest.cluster.plugins.module_utils.poll_interval import MARK, PollInterval

TARGET = 1
DBA = '6'  # the DBA's poll interval: long enough that a 1-second freeze without lowering it loses writes
WORKSPACE = sandbox.data_dir(TARGET) + '.pgforest-recovery'
SOURCE_MNGDB, TARGET_MNGDB = 'serverid 0 %s' % sandbox.MNGDB, 'serverid 1 %s' % sandbox.MNGDB


def recover(**args):
    args.update(mode='online', data_dir=sandbox.data_dir(TARGET))
    return sandbox.module('forest_recover', host='forest%d' % TARGET, timeout=300, **args)


def interval(serverid):
    """(mngdb_read_duration, the record's comment) in serverid's management database."""
    return tuple(sandbox.query(serverid, "SELECT (SELECT value FROM global_config WHERE key = 'mngdb_read_duration'), "
                                         "obj_description('global_config'::regclass, 'pg_class')",
                               dbname=sandbox.MNGDB)[0])


def set_interval(value):
    for serverid in (0, 1):
        sandbox.ensure_running(serverid)
        sandbox.on(serverid, "UPDATE global_config SET value = %s WHERE key = 'mngdb_read_duration'; "
                             'COMMENT ON TABLE global_config IS NULL' % repr(value), dbname=sandbox.MNGDB)


def assert_dba_value_back(*serverids, result=None):
    for serverid in serverids:
        assert interval(serverid) == (DBA, None), 'serverid %d; %s' % (serverid, result)


@pytest.fixture(autouse=True)
def long_poll_interval():
    """serverid 1 running but marked broken; the DBA's mngdb_read_duration is 6 s on both nodes."""
    sandbox.reset_pair()
    sandbox.both('DROP TABLE IF EXISTS polled; CREATE TABLE polled (id serial PRIMARY KEY, v text);'
                 'INSERT INTO polled (v) SELECT md5(g::text) FROM generate_series(1, 1000) g')
    set_interval(DBA)
    sandbox.set_views({TARGET: -1}, {TARGET: -1})
    yield
    sandbox.kill_own('pg_basebackup.*pgforest_recovery_%d' % TARGET)
    for phase in ('cancel', 'cleanup'):
        if os.path.exists(WORKSPACE):
            recover(phase=phase)
    sandbox.reset_pair()
    set_interval('1')  # the sandbox's value
    sandbox.both('DROP TABLE IF EXISTS polled; DROP TABLE IF EXISTS forest_load_items; DROP TABLE IF EXISTS forest_load')


class Background(object):
    """A module running in its own process group (SIGINT reaches all of it, as Ctrl-C would)."""

    def __init__(self, module_name, host, **args):
        self.host = host
        cmd, env = sandbox.module_command(module_name, host, **args)
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                        cwd=sandbox.REPO, start_new_session=True)

    def signal(self, signum):
        os.killpg(self.process.pid, signum)

    def kill_module(self):
        """The module dies as with a lost controller: SIGKILL, no chance to undo anything.  (Ansible's
        worker runs it in a session of its own, so the ad hoc command's group does not hold it.)"""
        wait_for('the module to run', lambda: sandbox.kill_own('AnsiballZ_forest_'))
        self.signal(signal.SIGKILL)
        self.process.wait()

    def result(self, timeout=300):
        stdout, stderr = self.process.communicate(timeout=timeout)
        try:
            return sandbox.module_result(self.host, subprocess.CompletedProcess(
                self.process.args, self.process.returncode, stdout, stderr))
        except AssertionError:
            return dict(failed=True, msg='no result (rc=%s): %s' % (self.process.returncode, (stdout + stderr)[-300:]))


def lowered_on_source():
    return interval(0)[0] == '1' and (interval(0)[1] or '').startswith(MARK)


def test_a_polling_driver_is_frozen_with_a_one_second_notice_and_the_dba_value_comes_back():
    """The JDBC driver only polls: at 6 s, a freeze with 1 s of notice would let it write into the freeze
    (the cut would fail).  Lowered during the copy, it polls every second by the freeze."""
    sandbox.set_views({TARGET: 1}, {TARGET: 1})
    nodes = sandbox.driver_nodes()
    driver = ForestDriver(nodes, sandbox.USERDB, sandbox.password(), listen=False).start()
    try:
        assert driver.read_duration == 6.0  # taken from global_config
        sandbox.pg_ctl(TARGET, 'stop', '-m', 'immediate')
        driver_sees(driver, {TARGET: -1})  # the driver marked the stopped node broken
        result = recover()
        if not result.get('failed'):
            driver_writes_to_every_node(driver)
    finally:
        driver.stop()
    assert not result.get('failed'), result.get('msg')
    assert result['stage'] == 'done'
    assert driver.errors == []
    assert lost_or_duplicated(driver, lambda sid: sandbox.connect(sid, sandbox.USERDB)) == []
    assert result['cut']['notice_seconds'] == 1.25  # the lowered interval and the drivers' read time
    polled = result['read_duration']
    # The stopped target's database could not be lowered; its copy of the source's was put back after the cut.
    assert (polled['short'], polled['lowered'], polled['adopted'], polled['kept']) == (1, [SOURCE_MNGDB], [], [])
    assert sorted(polled['put_back']) == [SOURCE_MNGDB, TARGET_MNGDB]
    # Only what is left of one old interval (6 s) after the lowering is waited before the freeze: nothing
    # when the base copy itself outlasted it (a busy machine), never more than the interval.
    assert 0 <= polled['waited'] <= 6.5
    assert polled['waited'] > 0 or result['phases']['base'] + result['phases']['cut'] >= 5.5, (polled, result['phases'])
    assert [seconds for _at, seconds in driver.read_durations] == [6.0, 1.0, 6.0]  # first read, lowered, back
    assert_dba_value_back(0, 1)
    assert sandbox.module('forest_status')['cluster_state'] == 'healthy'


def test_cancel_after_the_base_copy_puts_the_value_back_on_both_nodes():
    base = recover(phase='base')
    assert not base.get('failed'), base.get('msg')
    assert sorted(base['read_duration']['lowered']) == [SOURCE_MNGDB, TARGET_MNGDB]
    assert lowered_on_source()  # stays short between the phases: the cut needs it
    cancelled = recover(phase='cancel')
    assert not cancelled.get('failed'), cancelled.get('msg')
    assert cancelled['read_duration']['put_back'] == [SOURCE_MNGDB, TARGET_MNGDB]
    assert_dba_value_back(0, 1)


def test_a_failed_cut_puts_the_value_back():
    holder = sandbox.connect(0, sandbox.USERDB)  # a transaction the freeze waits for in vain
    try:
        holder.execute('BEGIN')
        holder.execute('SELECT count(*) FROM polled')
        result = recover(idle_wait_timeout=1)
    finally:
        holder.close()
    assert result.get('failed') and 'Rolled back' in result['msg'] and 'quiesce timed out' in result['msg']
    assert_dba_value_back(0, 1)
    assert not os.path.exists(WORKSPACE)


def test_sigint_while_waiting_for_the_drivers_puts_the_value_back():
    run = Background('forest_recover', 'forest%d' % TARGET, mode='online', data_dir=sandbox.data_dir(TARGET))
    wait_for('the recovery to lower mngdb_read_duration',
             lambda: os.path.exists(os.path.join(WORKSPACE, 'state.json')) and lowered_on_source())
    run.signal(signal.SIGINT)
    result = run.result()
    # Ctrl-C ends ansible at once ("User interrupted execution"); the module, interrupted too, rolls back.
    assert result.get('failed'), result
    wait_for('the interrupted module to roll back', lambda: not sandbox.own_processes('AnsiballZ_forest_recover'))
    assert_dba_value_back(0, 1, result=result)
    assert not os.path.exists(WORKSPACE)
    assert sandbox.query(0, 'SELECT count(*) FROM pg_replication_slots') == [(0,)]


def test_a_killed_recovery_leaves_a_record_that_its_cancel_uses():
    run = Background('forest_recover', 'forest%d' % TARGET, mode='online', data_dir=sandbox.data_dir(TARGET))
    wait_for('the recovery to lower mngdb_read_duration',
             lambda: os.path.exists(os.path.join(WORKSPACE, 'state.json')) and lowered_on_source())
    run.kill_module()
    sandbox.kill_own('pg_basebackup.*pgforest_recovery_%d' % TARGET)
    wait_for("the killed run's sessions to end",
             lambda: not sandbox.query(0, "SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'pgforest%%'"))
    value, comment = interval(0)
    assert value == '1' and '"dba": "6"' in comment  # the record says what to put back
    cancelled = recover(phase='cancel')
    assert not cancelled.get('failed'), cancelled.get('msg')
    assert_dba_value_back(0, 1)


def online_compare(**args):
    return sandbox.module('forest_dbsync', online=True, **args)


def test_online_compare_lowers_waits_freezes_and_puts_back():
    sandbox.set_views({TARGET: 1}, {TARGET: 1})
    result = online_compare()
    assert not result.get('failed'), result.get('msg')
    assert result['equal'] is True
    polled = result['read_duration']
    assert sorted(polled['lowered']) == sorted(polled['put_back']) == [SOURCE_MNGDB, TARGET_MNGDB]
    assert 5 <= polled['waited'] <= 6.5  # nothing to overlap: one old interval before the freeze
    assert_dba_value_back(0, 1)
    given = online_compare(notice_wait=0.2)  # the DBA says how long the drivers take: nothing is lowered
    assert not given.get('failed') and given['read_duration'] is None
    assert_dba_value_back(0, 1)


def test_a_killed_online_compare_is_put_back_by_the_next_one():
    sandbox.set_views({TARGET: 1}, {TARGET: 1})
    run = Background('forest_dbsync', 'forest0', online=True)
    # Both management databases, not only the source's: the compare lowers them one after the other, and a
    # kill between the two (a CI run under load) left the target's at 6.
    wait_for('the compare to lower mngdb_read_duration on both nodes',
             lambda: lowered_on_source() and interval(1)[0] == '1' and (interval(1)[1] or '').startswith(MARK))
    run.kill_module()
    assert interval(0)[0] == interval(1)[0] == '1'
    # forest_status tells the DBA what the killed run left, and the metrics too.
    status = sandbox.module('forest_status')
    lowered = [node['read_duration']['lowered'] for node in status['nodes']]
    assert [(record['dba'], record['short']) for record in lowered] == [(DBA, 1)] * 2, lowered
    assert [node['read_duration']['seconds'] for node in status['nodes']] == [1, 1]
    assert any('mngdb_read_duration lowered to 1 s' in line for line in status['summary']), status['summary']
    metrics = prometheus_metrics([dict(pair='p', status=status)])
    assert 'pgforest_read_duration_lowered_seconds{pair="p",serverid="0",userdb="%s"}' % sandbox.USERDB in metrics
    result = online_compare()
    assert not result.get('failed'), result.get('msg')
    assert sorted(result['read_duration']['adopted']) == [SOURCE_MNGDB, TARGET_MNGDB]
    assert result['read_duration']['waited'] <= 6.5  # the killed run's time counts
    assert_dba_value_back(0, 1)


@pytest.mark.parametrize('value', ['0', '-3'])
def test_a_poll_interval_of_zero_is_refused_and_nothing_changes(value):
    set_interval(value)
    result = recover()
    assert result.get('failed') and '10.2.1' in result['msg'] and 'Nothing was changed' in result['msg']
    assert not os.path.exists(WORKSPACE)
    assert sandbox.pg_ctl(TARGET, 'status', check=False).returncode == 0  # not stopped
    assert interval(0) == interval(1) == (value, None)
    sandbox.set_views({TARGET: 1}, {TARGET: 1})
    compared = online_compare()
    assert compared.get('failed') and '10.2.1' in compared['msg']
    assert interval(0) == interval(1) == (value, None)
    assert sandbox.mngdb_rows(0, 'server_info') == sandbox.mngdb_rows(1, 'server_info')


def test_a_value_the_dba_changes_during_the_run_is_kept():
    conns = dict((label, sandbox.connect(sid, sandbox.MNGDB))
                 for sid, label in ((0, SOURCE_MNGDB), (1, TARGET_MNGDB)))
    try:
        poll = PollInterval(1, 'a test', lambda message: None)
        poll.lower(conns)
        assert interval(0) == ('1', interval(0)[1]) and interval(0)[1].startswith(MARK)
        sandbox.on(1, "UPDATE global_config SET value = '9' WHERE key = 'mngdb_read_duration'", dbname=sandbox.MNGDB)
        poll.put_back(conns)
        assert (poll.report['put_back'], poll.report['kept']) == ([SOURCE_MNGDB], [TARGET_MNGDB])
        assert (interval(0), interval(1)) == ((DBA, None), ('9', None))
        with pytest.raises(Exception, match='at least 1 second'):
            PollInterval(0, 'a test', lambda message: None)
    finally:
        for conn in conns.values():
            conn.close()
