"""status.yml -e forest_metrics_file=PATH against the sandbox pair: the file node_exporter's textfile
collector reads, parsed with prometheus_client, says what the pair is; the old file is replaced whole."""
import os

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgforest_dev import sandbox


def metrics(path):
    with open(path) as handle:
        text = handle.read()
    return dict(((one.name, frozenset(one.labels.items())), one.value)
                for family in text_string_to_metric_families(text) for one in family.samples)


def labels(**values):
    return frozenset((key, str(value)) for key, value in values.items())


@pytest.fixture()
def metrics_file():
    path = os.path.join(sandbox.SANDBOX, 'textfile', 'pgforest.prom')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sandbox.reset_pair()
    yield path
    sandbox.reset_pair()
    if os.path.exists(path):
        os.remove(path)


def test_the_metrics_file_says_healthy_then_degraded(metrics_file):
    healthy = sandbox.playbook('status.yml', extra_vars=dict(forest_metrics_file=metrics_file))
    assert healthy.returncode == 0, healthy.stdout[-3000:]
    found = metrics(metrics_file)
    assert found[('pgforest_database_healthy', labels(pair='forest', userdb=sandbox.USERDB))] == 1
    assert found[('pgforest_node_validity', labels(pair='forest', userdb=sandbox.USERDB, serverid=1, view=0))] == 1
    assert found[('pgforest_node_reachable', labels(pair='forest', userdb=sandbox.USERDB, serverid=1))] == 1
    first_inode = os.stat(metrics_file).st_ino

    sandbox.set_views({1: -1}, {1: -1})
    sandbox.on(0, "INSERT INTO broken_log_detail (serverid, client, api_task, err_msg) VALUES "
                  "(1, '127.0.0.1', 'Exec_Task', 'test')", dbname=sandbox.MNGDB)
    degraded = sandbox.playbook('status.yml', extra_vars=dict(forest_metrics_file=metrics_file))
    assert degraded.returncode == 0, degraded.stdout[-3000:]
    found = metrics(metrics_file)
    assert found[('pgforest_database_healthy', labels(pair='forest', userdb=sandbox.USERDB))] == 0
    assert found[('pgforest_database_state', labels(pair='forest', userdb=sandbox.USERDB, state='degraded'))] == 1
    assert found[('pgforest_node_validity', labels(pair='forest', userdb=sandbox.USERDB, serverid=1, view=0))] == -1
    assert 0 <= found[('pgforest_broken_log_age_seconds',
                       labels(pair='forest', userdb=sandbox.USERDB, serverid=1))] < 600
    assert os.stat(metrics_file).st_ino != first_inode  # a new file renamed over the old one, never rewritten in place

    sandbox.pg_ctl(1, 'stop', '-m', 'immediate')
    stopped = sandbox.playbook('status.yml', extra_vars=dict(forest_metrics_file=metrics_file))
    assert stopped.returncode == 0, stopped.stdout[-3000:]
    found = metrics(metrics_file)
    assert found[('pgforest_node_reachable', labels(pair='forest', userdb=sandbox.USERDB, serverid=1))] == 0


def test_without_the_variable_no_file_is_written(metrics_file):
    done = sandbox.playbook('status.yml')
    assert done.returncode == 0, done.stdout[-3000:]
    assert not os.path.exists(metrics_file)


def test_a_recovery_slot_shows_the_wal_it_holds_back(metrics_file):
    """The slot an online recovery streams through (pgforest_recovery_<target>) on its source: the WAL the
    target has not confirmed. One a killed recovery left behind keeps WAL for ever -- the metric shows it grow."""
    slot = 'pgforest_recovery_1'
    sandbox.on(0, "SELECT pg_create_physical_replication_slot('%s', true)" % slot, dbname='postgres')
    try:
        first = sandbox.playbook('status.yml', extra_vars=dict(forest_metrics_file=metrics_file))
        assert first.returncode == 0, first.stdout[-3000:]
        where = labels(pair='forest', userdb=sandbox.USERDB, serverid=0, slot=slot)
        held = metrics(metrics_file)[('pgforest_replication_slot_lag_bytes', where)]
        assert metrics(metrics_file)[('pgforest_replication_slot_active', where)] == 0
        sandbox.on(0, 'CREATE TABLE wal_filler AS SELECT g, repeat(md5(g::text), 8) AS t '
                      'FROM generate_series(1, 20000) g; DROP TABLE wal_filler', dbname=sandbox.USERDB)
        again = sandbox.playbook('status.yml', extra_vars=dict(forest_metrics_file=metrics_file))
        assert again.returncode == 0, again.stdout[-3000:]
        grown = metrics(metrics_file)[('pgforest_replication_slot_lag_bytes', where)]
        assert grown >= held + 5 * 1024 * 1024, (held, grown)  # 20,000 rows of 256 bytes and more
        status = sandbox.module('forest_status')
        assert [node['replication_slots'] for node in status['nodes']][0][0]['name'] == slot
    finally:
        sandbox.on(0, "SELECT pg_drop_replication_slot('%s')" % slot, dbname='postgres')
    done = sandbox.playbook('status.yml', extra_vars=dict(forest_metrics_file=metrics_file))
    assert not [key for key in metrics(metrics_file) if key[0].startswith('pgforest_replication_slot')]
    assert done.returncode == 0
