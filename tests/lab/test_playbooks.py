"""Every playbook over SSH on two real hosts, with the reference driver writing
from an application host where the playbook is meant to run under load."""
import re
import time

import pytest

import lab


def ok(proc):
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc


def test_config_and_dbsync(pair, record):
    ok(lab.playbook('config.yml', extra_vars=dict(key='log_level', value='3')))
    assert [lab.query(s, "SELECT value FROM global_config WHERE key = 'log_level'", dbname=lab.MNGDB)
            for s in lab.NODES] == [[('3',)], [('3',)]]
    ok(lab.playbook('config.yml', extra_vars=dict(key='log_level', value='2')))

    for serverid in lab.NODES:
        lab.query(serverid, 'CREATE TABLE lab_items (id int PRIMARY KEY, v text); '
                            "INSERT INTO lab_items SELECT g, 'v' || g FROM generate_series(1, 5000) g")
    lab.query(1, "UPDATE lab_items SET v = 'drift' WHERE id % 1000 = 0; DELETE FROM lab_items WHERE id = 7")
    try:
        compare = ok(lab.playbook('dbsync.yml'))
        assert 'DIFFERENT' in compare.stdout and 'lab_items' in compare.stdout, compare.stdout[-3000:]
        sync = ok(lab.playbook('dbsync.yml', extra_vars=dict(mode='sync', source=0)))
        again = ok(lab.playbook('dbsync.yml'))
        assert '=> EQUAL' in again.stdout, again.stdout[-3000:]
        assert lab.query(1, 'SELECT count(*), count(*) FILTER (WHERE v = %s) FROM lab_items', ['drift']) == [(5000, 0)]
        record(what='config.yml sets global_config on both nodes; dbsync.yml compare finds 6 drifted rows on '
                    'node1, sync from serverid 0 repairs them, compare says EQUAL',
               sync_report=[line.strip(' ",') for line in sync.stdout.splitlines() if 'lab_items' in line][:2])
    finally:
        for serverid in lab.NODES:
            lab.query(serverid, 'DROP TABLE IF EXISTS lab_items')


def mark_broken(serverid):
    result = lab.module('forest_mngdb', serverid=serverid, validity=-1)
    assert not result.get('failed') and result.get('changed'), result


def freeze_of(output):
    found = re.search(r'write freeze ([0-9.]+) s', output)
    return float(found.group(1)) if found else None


def notice_of(output):
    found = re.search(r'"?notice_seconds"?: ([0-9.]+)', output)
    return float(found.group(1)) if found else None


def stop_node1_under_load(**driver_options):
    """node1's unit stopped while the driver on appa writes; returns the driver once it has marked node1 -1."""
    driver = lab.AppDriver('appa', **driver_options)
    driver.wait_acked(10)  # the load reaches both nodes before node1 stops
    lab.ssh(1, 'systemctl stop pgforest-node1')
    assert lab.wait_for(lambda: lab.validity(1, view=0) == -1, 30), 'the driver did not mark node1 broken'
    return driver


def read_durations():
    return [lab.query(serverid, "SELECT value FROM global_config WHERE key = 'mngdb_read_duration'",
                      dbname=lab.MNGDB)[0][0] for serverid in lab.NODES]


@pytest.mark.smoke
def test_recover_online_then_reboot(pair, record):
    """The driver polls only, every 30 s (the guide's default): the recovery lowers the interval during the
    copy, so the freeze takes about a second, and puts 30 back."""
    lab.set_read_duration(30)
    driver = stop_node1_under_load(listen=False)
    try:
        started = time.monotonic()
        proc = ok(lab.playbook('recover.yml', '-v'))  # -v: the module's result, cut.notice_seconds with it
        recovery_seconds = time.monotonic() - started
        driver.wait_acked(10)  # the driver writes to both nodes again
    finally:
        acked = driver.stop()
    assert acked.validity == {0: 1, 1: 1}, acked.validity
    written = lab.write_counts(acked)
    record(lost=written['lost'], duplicated=written['duplicated'])
    assert written['problems'] == []
    assert acked.errors == []
    freeze, notice = freeze_of(proc.stdout), notice_of(proc.stdout)
    assert freeze is not None and notice is not None, proc.stdout[-3000:]
    # docs/recovery.md: no freeze lasts longer than the notice plus about 1 s, whatever the poll interval (30 s).
    assert freeze <= notice + 1, (freeze, notice)
    assert read_durations() == ['30', '30']
    # The unit is still what runs PostgreSQL after the recovery.
    state = lab.ssh(1, 'systemctl is-active pgforest-node1; systemctl is-enabled pgforest-node1; '
                       'systemctl show -p MainPID --value pgforest-node1; '
                       'head -1 /var/lib/pgforest/node1/data/postmaster.pid').stdout.split()
    assert state[:2] == ['active', 'enabled'] and state[2] == state[3], state

    # Power off, start the machine: PostgreSQL comes back by itself, the pair is healthy.
    started = time.monotonic()
    lab.lab('poweroff', 'node1')
    lab.lab('boot', 'node1')
    assert lab.wait_for(lambda: lab.query(1, 'SELECT 1') == [(1,)], 60), 'PostgreSQL did not come back on node1'
    reboot_seconds = time.monotonic() - started
    status = ok(lab.playbook('status.yml', extra_vars=dict(fail_unless_healthy=True)))
    compare = ok(lab.playbook('dbsync.yml'))
    assert '=> EQUAL' in compare.stdout, compare.stdout[-3000:]
    record(what='node1 stopped under the driver (appa, polling only, mngdb_read_duration 30 s), marked -1 by it, '
                'recover.yml online over SSH (the interval lowered to 1 s for the run and put back), then node1 '
                'powered off and booted',
           acked=len(acked.acked), freeze_window=freeze, notice_seconds=notice,
           recovery_seconds=round(recovery_seconds, 1), reboot_to_sql_seconds=round(reboot_seconds, 1),
           healthy_after_reboot='recommended action: none' in status.stdout)


def test_recover_offline(pair, record):
    lab.query(1, 'CREATE TABLE IF NOT EXISTS lab_offline (id int PRIMARY KEY)')
    lab.query(0, 'CREATE TABLE IF NOT EXISTS lab_offline (id int PRIMARY KEY); '
                 'INSERT INTO lab_offline SELECT generate_series(1, 1000) ON CONFLICT DO NOTHING')
    try:
        mark_broken(1)
        proc = ok(lab.playbook('recover.yml', extra_vars=dict(mode='offline')))
        assert lab.query(1, 'SELECT count(*) FROM lab_offline') == [(1000,)]
        ok(lab.playbook('status.yml', extra_vars=dict(fail_unless_healthy=True)))
        lab.query(1, 'DELETE FROM lab_offline WHERE id > 10')
        mark_broken(1)
        dump = ok(lab.playbook('recover.yml', extra_vars=dict(mode='offline', method='dump')))
        assert lab.query(1, 'SELECT count(*) FROM lab_offline') == [(1000,)]
        record(what='node1 marked -1 with 1000 rows missing, recover.yml mode=offline (diff), then again with '
                    'method=dump; the rows are there and the pair healthy',
               diff_output=[line.strip(' ",') for line in proc.stdout.splitlines() if 'recovered offline' in line][:1],
               dump_output=[line.strip(' ",') for line in dump.stdout.splitlines() if 'recovered offline' in line][:1])
    finally:
        for serverid in lab.NODES:
            lab.query(serverid, 'DROP TABLE IF EXISTS lab_offline')


@pytest.mark.smoke
def test_backup_restore(pair, record):
    for serverid in lab.NODES:
        lab.query(serverid, 'CREATE TABLE IF NOT EXISTS lab_backup (id int PRIMARY KEY); TRUNCATE lab_backup; '
                            'INSERT INTO lab_backup SELECT generate_series(1, 300)')
    facts = {}
    try:
        for kind in ('logical', 'physical'):
            ok(lab.playbook('backup.yml', extra_vars=dict(kind=kind)))
            for serverid in lab.NODES:
                lab.query(serverid, 'DELETE FROM lab_backup WHERE id > 100')
            restore = lab.playbook('restore.yml', extra_vars=dict(confirm_restore=True))  # the newest: this kind
            ok(restore)
            counts = [lab.query(serverid, 'SELECT count(*) FROM lab_backup')[0][0] for serverid in lab.NODES]
            assert counts == [300, 300], (kind, counts, restore.stdout[-3000:])
            facts[kind] = counts
        ok(lab.playbook('status.yml', extra_vars=dict(fail_unless_healthy=True)))
        record(what='backup.yml then restore.yml (logical, then physical) over SSH: 200 rows deleted on both '
                    'nodes after the backup are back on both', rows_after_restore=facts)
    finally:
        for serverid in lab.NODES:
            lab.query(serverid, 'DROP TABLE IF EXISTS lab_backup')
