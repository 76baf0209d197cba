"""The upgrade between majors (docs/forest_node.md, "Moving the pair to a new major"), offline, on real hosts:
a pair on PostgreSQL 15 (Debian 12) moves to 17 one node at a time by rebuilding each host on Debian 13 (whose
PostgreSQL is 17: pg_upgrade has no old data directory on a rebuilt host, so the node is a new cluster), while
the other node keeps serving the reference driver. Each rebuilt node is provisioned alone (--limit), gets the
user database's schema, and is repaired by content (recover.yml -e mode=offline: dbsync's diff, a logical copy)
with the applications stopped."""
import time

import pytest

import lab

OLD, NEW = '12', '13'  # Debian releases: PostgreSQL 15 and 17


def ok(proc):
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc


def majors():
    return [lab.query(serverid, 'SHOW server_version_num', dbname='postgres')[0][0][:2] for serverid in lab.NODES]


def mark_broken(serverid):
    result = lab.module('forest_mngdb', serverid=serverid, validity=-1)
    assert not result.get('failed') and result.get('changed'), result


def node_path(serverid, leaf):
    return '/var/lib/pgforest/node%d/%s' % (serverid, leaf)


def copy_schema(source, target):
    """The user database's schema from the serving node onto the new cluster, as the DBA does it: the source
    host's own pg_dump (its major), loaded with the target's pgforest-psql. Rows come with the recovery."""
    dump = lab.ssh(source, 'runuser -u postgres -- pg_dump --schema-only --host=%s %s'
                   % (node_path(source, 'run'), lab.USERDB)).stdout
    assert 'CREATE TABLE' in dump, dump[-2000:]
    load = lab.ssh(target, 'pgforest-psql -X -q -v ON_ERROR_STOP=1 -d %s' % lab.USERDB, input_text=dump)
    return load


def upgrade(serverid, app, items_update):
    """serverid moved to the new major while the driver on `app` writes to the other node; returns what that
    driver acknowledged and the recovery's facts."""
    other = 1 - serverid
    name = lab.NODES[serverid]['name']
    driver = lab.AppDriver(app)
    facts = {}
    try:
        driver.wait_acked(10)  # on both nodes
        mark_broken(serverid)
        driver.wait_sees(serverid, -1)
        started = time.monotonic()
        lab.lab('rebuild', name, NEW, timeout=600)
        facts['rebuild_seconds'] = round(time.monotonic() - started, 1)
        assert lab.debian(serverid) == int(NEW) and lab.node_debian(serverid) == NEW
        started = time.monotonic()
        provision = ok(lab.playbook('provision.yml', '--limit', name))
        facts['provision_seconds'] = round(time.monotonic() - started, 1)
        assert lab.chosen(provision.stdout, name) == (17, 'os default')
        # The pair check could not see the other node: it says so (docs/forest_node.md).
        assert ("could not compare this node's PostgreSQL 17 with %s" % lab.NODES[other]['name']) \
            in ' '.join((provision.stdout + provision.stderr).split()), provision.stderr[-4000:]  # warnings: stderr
        # The new cluster is not the node the pair recorded: still -1, in both views; the other keeps serving.
        assert [lab.validity(serverid, view) for view in lab.NODES] == [-1, -1]
        lab.query(other, items_update)  # a change made while the node was out, besides the driver's
        copy_schema(other, serverid)
        driver.wait_acked(10, nodes=[other])
    finally:
        acked = driver.stop()
    lab.end_app_sessions()
    started = time.monotonic()
    recover = ok(lab.playbook('recover.yml', extra_vars=dict(mode='offline')))
    facts['offline_recovery_seconds'] = round(time.monotonic() - started, 1)
    facts['recovery_output'] = [line.strip(' ",') for line in recover.stdout.splitlines()
                                if 'recovered offline' in line][:1]
    assert [lab.validity(serverid, view) for view in lab.NODES] == [1, 1]
    facts['acked'] = len(acked.acked)
    return acked, facts


@pytest.mark.skipif(lab.DEBIAN != OLD, reason='the pair starts on Debian 12 (PostgreSQL 15): make lab-up DEBIAN=12')
def test_the_pair_moves_from_15_to_17_one_node_at_a_time(pair, restore_lab, record):
    assert majors() == ['15', '15']
    for serverid in lab.NODES:
        lab.query(serverid, 'CREATE TABLE IF NOT EXISTS lab_upgrade (id int PRIMARY KEY, v text); '
                            'TRUNCATE lab_upgrade; '
                            "INSERT INTO lab_upgrade SELECT g, 'v' || g FROM generate_series(1, 2000) g")
    acked1, node1 = upgrade(1, 'appa', "UPDATE lab_upgrade SET v = 'on 15' WHERE id <= 100")
    assert majors() == ['15', '17']
    acked0, node0 = upgrade(0, 'appb', "UPDATE lab_upgrade SET v = 'on 17' WHERE id > 1900")
    assert majors() == ['17', '17']
    assert [lab.debian(serverid) for serverid in lab.NODES] == [int(NEW), int(NEW)]

    written = lab.write_counts(acked1, acked0)
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
    record(what='pair on PostgreSQL 15 (Debian 12) with the driver writing: node1 marked -1, its host rebuilt on '
                'Debian 13, provisioned alone (--limit node1: PostgreSQL 17, the pair check warns it could not '
                'compare), schema loaded, driver stopped, recover.yml mode=offline (diff); then the same for node0 '
                'with node1 serving; both on 17, healthy, dbsync EQUAL, no acknowledged write lost',
           lost=written['lost'], duplicated=written['duplicated'], node1=node1, node0=node0)
