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
