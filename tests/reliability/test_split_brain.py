"""Split brain (guide §11.1.2, 11.2): both nodes valid, or each marking the other broken, with
writes on each that the other lacks.  It must be flagged, and nothing may pick a source silently."""
import time

import pytest

from pgforest_dev import sandbox
from breakage import load_tables_clean, set_read_duration, start_driver
from pgforest_dev.wait import driver_writes


@pytest.fixture
def split_pair(provisioned_pair):
    sandbox.both('DROP TABLE IF EXISTS split_orders; CREATE TABLE split_orders (id int PRIMARY KEY, item text); '
                 "INSERT INTO split_orders SELECT g, 'item ' || g FROM generate_series(1, 1000) g")
    # Applications cut off from each other: each wrote to the only node it could reach.
    sandbox.on(0, "INSERT INTO split_orders SELECT g, 'only on 0' FROM generate_series(1001, 1010) g")
    sandbox.on(1, "INSERT INTO split_orders SELECT g, 'only on 1' FROM generate_series(2001, 2004) g")
    yield
    sandbox.both('DROP TABLE IF EXISTS split_orders')


def node_rows():
    return [sandbox.query(sid, 'SELECT count(*), sum(id) FROM split_orders', dbname=sandbox.USERDB)
            for sid in sandbox.NODES]


def test_each_node_marking_the_other_broken_is_named_and_no_source_is_picked(split_pair, record):
    sandbox.set_views({1: -1}, {0: -1})
    before = node_rows(), [sandbox.mngdb_rows(sid, 'server_info') for sid in sandbox.NODES]
    # Each call whatever the one before did, as a DBA trying one way out after another.
    status, *refused, online, sync, compared = sandbox.modules(
        [('forest_status', 'forest0', {})]
        + [('forest_recover', 'forest0', dict(mode='offline', **args)) for args in ({}, dict(target=1), dict(method='dump'))]
        + [('forest_recover', 'forest1', dict(mode='online', data_dir=sandbox.data_dir(1))),
           ('forest_dbsync', 'forest0', dict(mode='sync')), ('forest_dbsync', 'forest0', {})])
    after = node_rows(), [sandbox.mngdb_rows(sid, 'server_info') for sid in sandbox.NODES]
    record(cluster_state=status['cluster_state'], action=status['recommended_action']['action'],
           recover=refused[0]['msg'][:200], dbsync_compare='equal=%s' % compared.get('equal'))
    assert status['cluster_state'] == 'split_brain'
    assert status['recommended_action']['action'] == 'resolve_split_brain'
    for result in refused + [online]:
        assert result.get('failed') and 'split_brain' in result['msg'] and 'Nothing was changed' in result['msg']
    assert sync.get('failed') and 'does not guess' in sync['msg'], sync.get('msg')
    assert compared['equal'] is False
    table = [t for t in compared['tables'] if t['table'] == 'public.split_orders'][0]
    assert (table['missing'], table['extra']) == (10, 4), table
    assert after == before


def test_both_valid_but_diverged_is_flagged_by_a_cheap_compare(split_pair, record):
    plain = sandbox.module('forest_status')
    started = time.monotonic()
    status = sandbox.module('forest_status', compare='counts')
    seconds = round(time.monotonic() - started, 2)
    recover = sandbox.module('forest_recover', mode='offline')
    sync = sandbox.module('forest_dbsync', mode='sync')
    record(without_compare=plain['cluster_state'], with_compare=status['cluster_state'], call_seconds=seconds,
           differences=status['user_databases']['differences'], recover=recover['msg'][:160])
    assert plain['cluster_state'] == 'healthy'  # the management databases alone cannot see it
    assert status['cluster_state'] == 'diverged' and status['healthy'] is False
    assert status['user_databases']['differences'] == {'public.split_orders': {'0': 1010, '1': 1004}}
    assert status['user_databases']['rounds'] == 3
    assert 'forest_dbsync mode=compare' in status['recommended_action']['reason']
    assert not recover.get('failed') and recover['changed'] is False  # recovery is for a node marked broken
    assert 'Nothing to recover' in recover['msg'] and 'forest_dbsync mode=compare' in recover['msg']
    assert sync.get('failed') and 'say which node is the source' in sync['msg']
    failing = sandbox.module('forest_status', compare='counts', fail_unless_healthy=True)
    assert failing.get('failed') and 'pair is diverged' in failing['msg']


def test_a_pair_under_load_is_not_reported_diverged(provisioned_pair, record):
    load_tables_clean()
    set_read_duration(1)
    driver = start_driver()
    try:
        driver_writes(driver, 100)  # the load is on before the reads
        states = [sandbox.module('forest_status', compare='counts') for _read in range(4)]
    finally:
        driver.stop()
        load_tables_clean()
    record(reads=len(states), states=[s['cluster_state'] for s in states],
           rounds=[s['user_databases']['rounds'] for s in states], writes_meanwhile=len(driver.acked))
    assert len(driver.acked) > 100
    assert [s['cluster_state'] for s in states] == ['healthy'] * 4
