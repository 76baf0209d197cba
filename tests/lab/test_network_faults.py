"""Real network faults on the lab (nftables drops in the bridge, a pulled
cable), with the reference driver writing from application hosts and every
acknowledged write checked afterwards."""
import time

import lab

NODE0, NODE1 = lab.NODES[0]['host'], lab.NODES[1]['host']
APPA, APPB = lab.APPS['appa'], lab.APPS['appb']


def ok(proc):
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc


def timed(function, *args, **kwargs):
    started = time.monotonic()
    result = function(*args, **kwargs)
    return result, round(time.monotonic() - started, 1)


def healthy_and_equal():
    ok(lab.playbook('status.yml', extra_vars=dict(fail_unless_healthy=True)))
    compare = ok(lab.playbook('dbsync.yml'))
    assert '=> EQUAL' in compare.stdout, compare.stdout[-3000:]


def test_link_cut_under_load_then_online_recovery(pair, record):
    driver = lab.AppDriver('appa')
    try:
        driver.wait_acked(10)  # the load reaches both nodes before the fault
        lab.link('down', 1)
        marked, mark_seconds = timed(lab.wait_for, lambda: lab.validity(1, view=0) == -1, 30)
        assert marked, 'the driver did not mark node1 broken after its cable was pulled'
        driver.wait_acked(10, nodes=[0])  # the application goes on with node0 alone while the cable is out
        lab.link('up', 1)
        assert lab.wait_for(lambda: lab.query(1, 'SELECT 1') == [(1,)], 20)
        proc, recovery_seconds = timed(lab.playbook, 'recover.yml')
        ok(proc)
        driver.wait_acked(10)  # the driver writes to both nodes again
    finally:
        acked = driver.stop()
    assert acked.validity == {0: 1, 1: 1}, acked.validity
    written = lab.write_counts(acked)
    record(lost=written['lost'], duplicated=written['duplicated'])
    assert written['problems'] == []
    healthy_and_equal()
    record(what='node1 cable pulled while the driver on appa writes; marked -1 by the driver; cable back; '
                'recover.yml online; healthy and equal',
           seconds_until_marked=mark_seconds, recovery_seconds=recovery_seconds, acked=len(acked.acked))


def test_silent_drop_nothing_hangs(pair, record):
    """Guide §10.2.3 'network no response': packets to and from node1 vanish, for the controller, node0 and the
    application host, while the driver writes."""
    driver = lab.AppDriver('appa')
    try:
        driver.wait_acked(10)  # the load reaches both nodes before the fault
        lab.drop([(lab.CONTROLLER, NODE1), (NODE0, NODE1), (APPA, NODE1)])
        marked, mark_seconds = timed(lab.wait_for, lambda: lab.validity(1, view=0) == -1, 30)
        assert marked, 'the driver did not mark the silent node1 broken'
        status, wall = timed(lab.module, 'forest_status', host='node0')
        assert not status.get('failed'), status
        assert status['cluster_state'] == 'degraded', status['cluster_state']
        node1 = [node for node in status['nodes'] if node['serverid'] == 1][0]
        assert node1['reachable'] is False, node1
        assert status['elapsed'] <= 3 + 1, status['elapsed']  # connect_timeout (3 s) + 1 s
        recover, recover_seconds = timed(lab.playbook, 'recover.yml', timeout=180)
        assert recover.returncode != 0
        # Online recovery runs on node1's own host (its PostgreSQL may well be stopped): Ansible names it.
        assert 'node1' in recover.stdout and 'UNREACHABLE' in recover.stdout, recover.stdout[-3000:]
        dbsync, dbsync_seconds = timed(lab.playbook, 'dbsync.yml', timeout=180)
        assert dbsync.returncode != 0
        assert '10.77.0.12' in dbsync.stdout, dbsync.stdout[-3000:]
        assert recover_seconds < 120 and dbsync_seconds < 60, (recover_seconds, dbsync_seconds)
        lab.heal()
        ok(lab.playbook('recover.yml'))
        driver.wait_acked(10)  # the driver writes to both nodes again
    finally:
        lab.heal()
        acked = driver.stop()
    assert acked.validity == {0: 1, 1: 1}, acked.validity
    written = lab.write_counts(acked)
    record(lost=written['lost'], duplicated=written['duplicated'])
    assert written['problems'] == []
    healthy_and_equal()
    record(what='nftables drops every packet between node1 and the controller, node0 and appa while the driver on '
                'appa writes; forest_status on node0, recover.yml and dbsync.yml while it lasts; then healed and '
                'recover.yml online',
           seconds_until_marked=mark_seconds, status_elapsed=status['elapsed'], status_wall_seconds=wall,
           node1_error=node1.get('error'), recover_seconds=recover_seconds,
           recover_says=last_failure(recover.stdout), dbsync_seconds=dbsync_seconds,
           dbsync_says=last_failure(dbsync.stdout), acked=len(acked.acked))


def last_failure(output):
    lines = [line.strip() for line in output.splitlines() if '"msg"' in line or 'FAILED' in line
             or 'UNREACHABLE' in line]
    return lines[-1][:300] if lines else None


def appb_rows_on(serverid):
    return lab.query(serverid, 'SELECT count(*) FROM forest_load_appb')[0][0]


def test_one_application_host_loses_one_node(pair, record):
    """Guide §11.2: appa loses node1 only; appb still reaches both."""
    driver_a, driver_b = lab.AppDriver('appa'), lab.AppDriver('appb')
    try:
        driver_a.wait_acked(10)  # both loads reach both nodes before the fault
        driver_b.wait_acked(10)
        lab.drop([(APPA, NODE1)])
        marked, mark_seconds = timed(lab.wait_for, lambda: lab.validity(1, view=0) == -1, 30)
        assert marked, 'appa did not mark node1 broken'
        at_mark = appb_rows_on(1)
        # appb learns it at its next management read (mngdb_read_duration 1 s) or on NOTIFY; a write it had
        # begun before may still commit on node1, so two more on node0 alone end that one too.
        _seen, learn_seconds = timed(driver_b.wait_sees, 1, -1)
        driver_b.wait_acked(2, nodes=[0])
        after = appb_rows_on(1)
        driver_b.wait_acked(10, nodes=[0])
        assert appb_rows_on(1) == after, 'appb still writes to node1 after its next management read'
        # What appb wrote to node1 in the window went to node0 too: node1 holds nothing node0 lacks.
        only_on_node1 = set(lab.query(1, 'SELECT payload FROM forest_load_appb')) - set(
            lab.query(0, 'SELECT payload FROM forest_load_appb'))
        assert only_on_node1 == set()
        lab.heal()
        ok(lab.playbook('recover.yml'))
        driver_a.wait_acked(10)  # both drivers write to both nodes again
        driver_b.wait_acked(10)
    finally:
        lab.heal()
        acked_a, acked_b = driver_a.stop(), driver_b.stop()
    written = lab.write_counts(acked_a, acked_b)
    record(lost=written['lost'], duplicated=written['duplicated'])
    assert written['problems'] == []
    assert acked_a.validity == acked_b.validity == {0: 1, 1: 1}
    healthy_and_equal()
    record(what='appa loses node1 only (nftables), appb reaches both; appa marks node1 -1; appb learns it at '
                'its next management read (or NOTIFY); recover.yml online; both drivers checked',
           seconds_until_marked=mark_seconds, seconds_until_appb_saw_it=learn_seconds,
           appb_writes_to_node1_after_the_mark=after - at_mark,
           appb_writes_only_on_node1=len(only_on_node1), acked_a=len(acked_a.acked), acked_b=len(acked_b.acked))


def test_split_brain_is_named_and_no_source_is_picked(pair, record):
    """Guide §11.1.2: appa + node0 cut off from appb + node1; both sides keep writing."""
    driver_a, driver_b = lab.AppDriver('appa'), lab.AppDriver('appb')
    try:
        driver_a.wait_acked(10)  # both loads reach both nodes before the fault
        driver_b.wait_acked(10)
        lab.drop([(NODE0, NODE1), (APPA, NODE1), (APPB, NODE0)])
        assert lab.wait_for(lambda: lab.validity(1, view=0) == -1 and lab.validity(0, view=1) == -1, 30), \
            'the two sides did not mark each other broken'
        # Both sides keep writing, each to its own node: what makes the split brain.
        driver_a.wait_acked(10, nodes=[0])
        driver_b.wait_acked(10, nodes=[1])
    finally:
        acked_a, acked_b = driver_a.stop(), driver_b.stop()
        lab.heal()
    lab.end_app_sessions()
    status = lab.module('forest_status', host='node0')
    assert status['cluster_state'] == 'split_brain', status['cluster_state']
    compare = lab.playbook('dbsync.yml', extra_vars=dict(verbose=True))
    assert 'DIFFERENT' in compare.stdout, compare.stdout[-3000:]
    assert 'forest_load_appa' in compare.stdout and 'forest_load_appb' in compare.stdout, compare.stdout[-3000:]
    refusals = {}
    guess = lab.playbook('dbsync.yml', extra_vars=dict(mode='sync'))
    assert guess.returncode != 0 and 'say which node is the source' in guess.stdout, guess.stdout[-3000:]
    refusals['dbsync sync'] = last_failure(guess.stdout)
    for mode in ('online', 'offline'):
        proc = lab.playbook('recover.yml', extra_vars=dict(mode=mode))
        assert proc.returncode != 0
        assert 'split_brain' in proc.stdout, proc.stdout[-3000:]
        refusals[mode] = last_failure(proc.stdout)
    # The way out (docs/recovery.md): keep node0, see what node1 alone holds, mark node1 -1 on both, recover it.
    only_node1 = set(lab.query(1, 'SELECT payload FROM forest_load_appb')) - set(
        lab.query(0, 'SELECT payload FROM forest_load_appb'))
    preview = ok(lab.playbook('dbsync.yml', extra_vars=dict(source=0)))
    listed = [line.strip(' ",') for line in preview.stdout.splitlines() if 'forest_load_appb' in line]
    assert listed, preview.stdout[-3000:]
    for serverid, value in ((1, -1), (0, 1)):
        result = lab.module('forest_mngdb', serverid=serverid, validity=value)
        assert not result.get('failed'), result
    ok(lab.playbook('recover.yml'))
    healthy_and_equal()
    written = lab.write_counts(acked_a)
    record(lost=written['lost'], duplicated=written['duplicated'])
    assert written['problems'] == []
    record(what='appa+node0 cut off from appb+node1 (nftables), both drivers write; each side marks the other -1; '
                'forest_status, dbsync compare, recover.yml online and offline; then node1 given up and recovered',
           cluster_state=status['cluster_state'], refusals=refusals, acked_a=len(acked_a.acked),
           acked_b=len(acked_b.acked), appb_writes_only_on_node1_discarded=len(only_node1),
           compare_before_giving_up_node1=listed[:3])
