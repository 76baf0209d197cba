"""playbooks/metrics.yml in textfile mode on the lab: node0, the monitoring host of lab/inventory.yml, gets the
systemd timer that runs the status playbook and writes the pairs' metrics for node_exporter's textfile
collector; the timer itself (not the test) refreshes the file, which follows a node going down and coming
back."""
import time

from prometheus_client.parser import text_string_to_metric_families

import lab
from test_playbooks import ok

FILE = '/var/lib/prometheus/node-exporter/pgforest.prom'
UNIT = 'pgforest-metrics'
# Not the role's default mode (the exporter, tests/lab/test_exporter.py).
TEXTFILE = dict(forest_metrics_mode='textfile', forest_metrics_interval=10)


def metrics():
    """{(name, frozenset(labels)): value} of the file on node0, {} while it is not there."""
    proc = lab.ssh(0, 'cat %s' % FILE, check=False)
    if proc.returncode != 0:
        return {}
    return dict(((one.name, frozenset(one.labels.items())), one.value)
                for family in text_string_to_metric_families(proc.stdout) for one in family.samples)


def reachable(found, serverid):
    labels = dict(pair='forest', userdb=lab.USERDB, serverid=str(serverid))
    return found.get(('pgforest_node_reachable', frozenset(labels.items())))


def test_the_timer_writes_and_refreshes_the_metrics_on_the_monitoring_host(pair, record):
    try:
        installed = ok(lab.playbook('metrics.yml', '-vvv', extra_vars=TEXTFILE))
        assert lab.password() not in installed.stdout + installed.stderr  # the inventory it writes holds it
        again = ok(lab.playbook('metrics.yml', extra_vars=TEXTFILE))
        assert lab.recap(again.stdout)['node0']['changed'] == 0, again.stdout[-3000:]
        state = lab.ssh(0, 'systemctl is-active %s.timer; systemctl is-enabled %s.timer; '
                           'stat -c %%a /etc/pgforest-metrics/inventory.yml' % (UNIT, UNIT)).stdout.split()
        assert state == ['active', 'enabled', '600'], state
        first = metrics()  # written by the role's first run, before it returned
        assert first[('pgforest_database_healthy', frozenset(dict(pair='forest', userdb=lab.USERDB).items()))] == 1
        assert reachable(first, 1) == 1
        written = first[('pgforest_status_time_seconds', frozenset())]

        # The timer refreshes it on its own, every 10 s here.
        assert lab.wait_for(lambda: metrics()[('pgforest_status_time_seconds', frozenset())] > written, 40), \
            lab.ssh(0, 'journalctl -u %s.service -n 20 --no-pager' % UNIT, check=False).stdout
        # A node stops: the next refreshes say so; it starts again: so do they.
        lab.ssh(1, 'systemctl stop pgforest-node1')
        started = time.monotonic()
        assert lab.wait_for(lambda: reachable(metrics(), 1) == 0, 60), 'the metrics never showed node1 down'
        noticed = time.monotonic() - started
        lab.ssh(1, 'systemctl start pgforest-node1')
        assert lab.wait_for(lambda: reachable(metrics(), 1) == 1, 60), 'the metrics never showed node1 back'
        journal = lab.ssh(0, 'journalctl -u %s.service --no-pager -o cat' % UNIT, check=False).stdout
        runs = journal.count('PLAY RECAP')
        assert runs >= 3 and lab.password() not in journal
        record(what='metrics.yml installs the timer on node0 (monitoring host, interval 10 s), idempotent; the '
                    'file node_exporter reads is refreshed by the timer, shows node1 stopped and back',
               first_run_by_role=True, node1_down_seen_after_seconds=round(noticed, 1), service_runs=runs)
    finally:
        lab.ssh(1, 'systemctl start pgforest-node1', check=False)
        removed = lab.playbook('metrics.yml', extra_vars=dict(forest_metrics_state='absent'))
    assert removed.returncode == 0, removed.stdout[-3000:]
    gone = lab.ssh(0, 'systemctl list-unit-files %s.timer | grep -c %s; test -e %s; echo $?'
                      % (UNIT, UNIT, FILE), check=False).stdout.split()
    assert gone == ['0', '1'], gone
