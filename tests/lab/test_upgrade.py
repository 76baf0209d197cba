"""The upgrade between majors (docs/forest_node.md, "Moving the pair to a new major"), online, on real hosts:
a pair on PostgreSQL 15 (Debian 12) moves to 17 one node at a time with playbooks/upgrade.yml while the reference
driver writes all along. step=out marks the node -1 (the driver leaves it), its host is rebuilt on Debian 13 (whose
PostgreSQL is 17: a new cluster), and step=in provisions it alone and resyncs it online from the serving node:
the schema by pg_dump, the rows by content, logical replication from 15 to 17, then a write freeze of about a
second. Then node 0 the same way, from node 1 on 17."""
import re
import time

import pytest
from pgforest_dev.forest_driver import LOADED_FREEZE_BEYOND_NOTICE

import lab

OLD, NEW = '12', '13'  # Debian releases: PostgreSQL 15 and 17


def ok(proc):
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc


def majors():
    return [lab.query(serverid, 'SHOW server_version_num', dbname='postgres')[0][0][:2] for serverid in lab.NODES]


def freeze_and_notice(output):
    text = ' '.join(output.split())
    freeze = re.search(r'write freeze ([0-9.]+) s', text)
    notice = re.search(r'"?notice_seconds"?: ([0-9.]+)', text)
    assert freeze and notice, output[-3000:]
    return float(freeze.group(1)), float(notice.group(1))


def upgrade(serverid, driver, items_update):
    """serverid moved to the new major online while `driver` writes; returns the move's facts."""
    other = 1 - serverid
    name = lab.NODES[serverid]['name']
    facts = {}
    driver.wait_acked(10)  # on both nodes
    ok(lab.playbook('upgrade.yml', extra_vars=dict(node=name, step='out')))
    driver.wait_sees(serverid, -1)
    assert [lab.validity(serverid, view) for view in lab.NODES] == [-1, -1]
    started = time.monotonic()
    lab.lab('rebuild', name, NEW, timeout=600)
    facts['rebuild_seconds'] = round(time.monotonic() - started, 1)
    assert lab.debian(serverid) == int(NEW) and lab.node_debian(serverid) == NEW
    lab.query(other, items_update)  # a change made while the node was out, besides the driver's
    driver.wait_acked(10, nodes=[other])
    started = time.monotonic()
    moved = ok(lab.playbook('upgrade.yml', '-v', extra_vars=dict(node=name)))
    facts['upgrade_in_seconds'] = round(time.monotonic() - started, 1)
    output = moved.stdout + moved.stderr
    assert lab.chosen(moved.stdout, name) == (17, 'os default')
    # The provision alone could not see the other node: it says so (docs/forest_node.md).
    assert ("could not compare this node's PostgreSQL 17 with %s" % lab.NODES[other]['name']) \
        in ' '.join(output.split()), output[-4000:]
    assert 'recovered online (resync) from serverid %d' % other in ' '.join(moved.stdout.split()), moved.stdout[-4000:]
    facts['freeze'], facts['notice'] = freeze_and_notice(moved.stdout)
    assert facts['freeze'] <= facts['notice'] + LOADED_FREEZE_BEYOND_NOTICE, facts
    facts['recovery_output'] = [line.strip(' ",') for line in moved.stdout.splitlines()
                                if 'recovered online' in line][:1]
    driver.wait_sees(serverid, 1)
    driver.wait_acked(10)  # on both nodes again
    assert [lab.validity(serverid, view) for view in lab.NODES] == [1, 1]
    return facts


@pytest.mark.skipif(lab.DEBIAN != OLD, reason='the pair starts on Debian 12 (PostgreSQL 15): make lab-up DEBIAN=12')
def test_the_pair_moves_from_15_to_17_one_node_at_a_time(pair, restore_lab, record):
    assert majors() == ['15', '15']
    for serverid in lab.NODES:
        lab.query(serverid, 'CREATE TABLE IF NOT EXISTS lab_upgrade (id int PRIMARY KEY, v text); '
                            'TRUNCATE lab_upgrade; '
                            "INSERT INTO lab_upgrade SELECT g, 'v' || g FROM generate_series(1, 2000) g")
    driver = lab.AppDriver('appa')
    try:
        node1 = upgrade(1, driver, "UPDATE lab_upgrade SET v = 'on 15' WHERE id <= 100")
        assert majors() == ['15', '17']
        node0 = upgrade(0, driver, "UPDATE lab_upgrade SET v = 'on 17' WHERE id > 1900")
        assert majors() == ['17', '17']
    finally:
        acked = driver.stop()
    assert [lab.debian(serverid) for serverid in lab.NODES] == [int(NEW), int(NEW)]

    assert acked.errors == [] and acked.validity == {0: 1, 1: 1}, (acked.errors[:5], acked.validity)
    written = lab.write_counts(acked)
    assert written['problems'] == [], written['problems'][:5]
    for serverid in lab.NODES:
        assert lab.query(serverid, "SELECT count(*), count(*) FILTER (WHERE v = 'on 15'), "
                                   "count(*) FILTER (WHERE v = 'on 17') FROM lab_upgrade") == [(2000, 100, 100)]
    ok(lab.playbook('status.yml', extra_vars=dict(fail_unless_healthy=True)))
    compare = ok(lab.playbook('dbsync.yml'))
    assert '=> EQUAL' in compare.stdout, compare.stdout[-3000:]
    # Both on one major again: a provision of the whole pair passes the pair check and changes nothing.
    again = ok(lab.playbook('provision.yml'))
    assert all(counts['changed'] == 0 for counts in lab.recap(again.stdout).values()), again.stdout[-3000:]
    record(what='pair on PostgreSQL 15 (Debian 12) with the driver writing all along: upgrade.yml step=out (node1 '
                'marked -1), its host rebuilt on Debian 13, upgrade.yml (node1 provisioned alone: PostgreSQL 17, '
                'resynced online from node0 on 15); then the same for node0 from node1; both on 17, healthy, dbsync '
                'EQUAL, no acknowledged write lost, each freeze within the notice plus 1 s',
           acked=len(acked.acked), lost=written['lost'], duplicated=written['duplicated'], node1=node1, node0=node0)
