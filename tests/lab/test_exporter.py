"""playbooks/metrics.yml on the lab, both modes in one case (each metrics.yml run and each pair set-up is most
of a minute on a make test that saturates the machine): node0, the monitoring host of lab/inventory.yml, runs
pgforest-exporter as a hardened systemd service under its own user, reading both nodes over TLS (verify-full
with the pair's CA). Prometheus's view, a scrape from the controller over the lab's network, shows the healthy
pair, then node1 stopped at the very next scrape, then node1 back. Then the textfile timer instead: the
exporter's unit and user go, the timer itself (not the test) refreshes the file node_exporter reads, which
follows node1 going down and coming back. Back to the exporter, which removes the timer's units;
forest_metrics_state=absent removes everything."""
import re
import time
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

import lab
from test_playbooks import ok

UNIT = 'pgforest-exporter'
USER = 'pgforest-exporter'
TIMER = 'pgforest-metrics'
FILE = '/var/lib/prometheus/node-exporter/pgforest.prom'
# The textfile mode at its shortest interval, so the timer refreshes the file within the test.
TEXTFILE = dict(forest_metrics_mode='textfile', forest_metrics_interval=10)
CONNECT_TIMEOUT = 5
# Listening on node0's lab address, so the controller scrapes it as a Prometheus server elsewhere would.
EXPORTER = dict(forest_metrics_listen_address=lab.NODES[0]['host'], forest_metrics_connect_timeout=CONNECT_TIMEOUT)
URL = 'http://%s:9716/metrics' % lab.NODES[0]['host']
BASE = dict(pair='forest', userdb=lab.USERDB)


def scrape():
    """{(name, frozenset(labels)): value} of one scrape, and how long it took; ({}, seconds) when it fails."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(URL, timeout=CONNECT_TIMEOUT + 10) as answer:
            text = answer.read().decode()
    except (urllib.error.URLError, OSError):
        return {}, time.monotonic() - started
    found = dict(((one.name, frozenset(one.labels.items())), one.value)
                 for family in text_string_to_metric_families(text) for one in family.samples)
    return found, time.monotonic() - started


def metrics_file():
    """The textfile mode's file on node0, as scrape() gives a scrape; {} while it is not there."""
    proc = lab.ssh(0, 'cat %s' % FILE, check=False)
    if proc.returncode != 0:
        return {}
    return dict(((one.name, frozenset(one.labels.items())), one.value)
                for family in text_string_to_metric_families(proc.stdout) for one in family.samples)


def reachable(found, serverid):
    return found.get(('pgforest_node_reachable', frozenset(dict(BASE, serverid=str(serverid)).items())))


def state(found):
    """The database's state: the one state sample at 1."""
    states = [dict(labels)['state'] for (name, labels), value in found.items()
              if name == 'pgforest_database_state' and value == 1 and dict(labels).get('pair') == 'forest']
    return states[0] if len(states) == 1 else states


def on_node0(command):
    return lab.ssh(0, command, check=False).stdout.split()


def units():
    """[exporter unit files, timer unit files, exporter user lines, metrics files] on node0."""
    return on_node0('systemctl list-unit-files %s.service | grep -c %s; systemctl list-unit-files %s.timer | '
                    'grep -c %s; getent passwd %s | wc -l; ls /var/lib/prometheus/node-exporter/pgforest.prom '
                    '2>/dev/null | wc -l' % (UNIT, UNIT, TIMER, TIMER, USER))


def test_the_exporter_and_the_timer_serve_the_pairs_and_show_a_stopped_node(pair, record):
    try:
        installed = ok(lab.playbook('metrics.yml', '-vvv', extra_vars=EXPORTER))
        assert lab.password() not in installed.stdout + installed.stderr  # the inventory it writes holds it
        again = ok(lab.playbook('metrics.yml', extra_vars=EXPORTER))
        assert lab.recap(again.stdout)['node0']['changed'] == 0, again.stdout[-3000:]

        # The service as installed: its own user without a shell, the inventory that user's alone.
        assert on_node0('systemctl is-active %s; systemctl is-enabled %s; stat -c "%%U %%a" '
                        '/etc/pgforest-metrics/inventory.yml; getent passwd %s | cut -d: -f7'
                        % (UNIT, UNIT, USER)) == ['active', 'enabled', USER, '600', '/usr/sbin/nologin']
        refused = lab.ssh(0, 'runuser -u nobody -- cat /etc/pgforest-metrics/inventory.yml', check=False)
        assert refused.returncode != 0
        shown = lab.ssh(0, 'systemctl show -p User -p ProtectSystem -p NoNewPrivileges -p MainPID %s' % UNIT).stdout
        shown = dict(line.split('=', 1) for line in shown.split())
        assert (shown['User'], shown['ProtectSystem'], shown['NoNewPrivileges']) == (USER, 'strict', 'yes'), shown
        cmdline = lab.ssh(0, "tr '\\0' ' ' < /proc/%s/cmdline" % shown['MainPID']).stdout
        assert '--inventory' in cmdline and lab.password() not in cmdline, cmdline
        analyzed = lab.ssh(0, 'systemd-analyze security --no-pager %s.service' % UNIT, check=False).stdout
        score = re.search(r'Overall exposure level for %s\.service: ([\d.]+)' % UNIT, analyzed)
        # 1.3 by systemd 252's measure (docs/monitoring.md); newer systemd versions weigh a little more.
        assert score and float(score.group(1)) <= 2.5, analyzed[-2000:]

        first, took = scrape()
        assert first, 'no answer from %s' % URL
        assert first[('pgforest_database_healthy', frozenset(BASE.items()))] == 1
        assert state(first) == 'healthy' and reachable(first, 0) == 1 and reachable(first, 1) == 1
        assert any(name == 'pgforest_exporter_scrape_errors_total' for name, _labels in first)
        # Over TLS: every session from the monitoring host's address to node1 is encrypted (the inventory
        # the role wrote says verify-full, with the pair's CA it copied).
        sessions = lab.query(1, "SELECT count(*), coalesce(bool_and(s.ssl), false) FROM pg_stat_activity a "
                                "JOIN pg_stat_ssl s USING (pid) WHERE a.client_addr = %s", [lab.NODES[0]['host']],
                             dbname='postgres')[0]
        assert sessions[0] >= 1 and sessions[1] is True, sessions

        # node1 stops: the very next scrape says so, within the connect timeout.
        lab.ssh(1, 'systemctl stop pgforest-node1')
        down, down_took = scrape()
        assert reachable(down, 1) == 0 and reachable(down, 0) == 1, down
        assert state(down) == 'degraded', state(down)
        assert down_took <= CONNECT_TIMEOUT + 1, down_took
        lab.ssh(1, 'systemctl start pgforest-node1')
        assert lab.wait_for(lambda: reachable(scrape()[0], 1) == 1, 60), 'the exporter never showed node1 back'
        journal = lab.ssh(0, 'journalctl -u %s --no-pager -o cat' % UNIT, check=False).stdout
        assert lab.password() not in journal

        # The textfile timer instead: the exporter, its unit and its user go.
        timer = ok(lab.playbook('metrics.yml', '-vvv', extra_vars=TEXTFILE))
        assert lab.password() not in timer.stdout + timer.stderr  # the inventory it writes holds it
        assert units() == ['0', '1', '0', '1'], units()
        again = ok(lab.playbook('metrics.yml', extra_vars=TEXTFILE))
        assert lab.recap(again.stdout)['node0']['changed'] == 0, again.stdout[-3000:]
        timer_state = lab.ssh(0, 'systemctl is-active %s.timer; systemctl is-enabled %s.timer; '
                                 'stat -c %%a /etc/pgforest-metrics/inventory.yml' % (TIMER, TIMER)).stdout.split()
        assert timer_state == ['active', 'enabled', '600'], timer_state
        written = metrics_file()  # by the role's first run, before it returned
        assert written[('pgforest_database_healthy', frozenset(BASE.items()))] == 1 and reachable(written, 1) == 1
        stamp = written[('pgforest_status_time_seconds', frozenset())]
        # The timer refreshes it on its own, every 10 s here; a node stops: the next refreshes say so; and back.
        assert lab.wait_for(lambda: metrics_file()[('pgforest_status_time_seconds', frozenset())] > stamp, 40), \
            lab.ssh(0, 'journalctl -u %s.service -n 20 --no-pager' % TIMER, check=False).stdout
        lab.ssh(1, 'systemctl stop pgforest-node1')
        stopped = time.monotonic()
        assert lab.wait_for(lambda: reachable(metrics_file(), 1) == 0, 60), 'the metrics never showed node1 down'
        noticed = time.monotonic() - stopped
        lab.ssh(1, 'systemctl start pgforest-node1')
        assert lab.wait_for(lambda: reachable(metrics_file(), 1) == 1, 60), 'the metrics never showed node1 back'
        timer_journal = lab.ssh(0, 'journalctl -u %s.service --no-pager -o cat' % TIMER, check=False).stdout
        timer_runs = timer_journal.count('PLAY RECAP')
        assert timer_runs >= 3 and lab.password() not in timer_journal

        # And back to the exporter: the timer's units and file go.
        ok(lab.playbook('metrics.yml', extra_vars=EXPORTER))
        assert units() == ['1', '0', '1', '0'], units()
        assert lab.wait_for(lambda: state(scrape()[0]) == 'healthy', 30)
        record(what='metrics.yml installs pgforest-exporter on node0 (the monitoring host) listening on its lab '
                    'address, idempotent, hardened (own user, nologin, inventory 0600), TLS to the nodes; the next '
                    'scrape after node1 stops shows it unreachable and the pair degraded; then the timer instead '
                    '(interval 10 s), idempotent, which refreshes the file node_exporter reads and shows node1 '
                    'stopped and back; back to the exporter, each switch removing the other mode',
               first_scrape_seconds=round(took, 3), scrape_with_node1_stopped_seconds=round(down_took, 3),
               systemd_analyze_security=float(score.group(1)), exporter_sessions_to_node1=sessions[0],
               timer_node1_down_seen_after_seconds=round(noticed, 1), timer_service_runs=timer_runs)
    finally:
        lab.ssh(1, 'systemctl start pgforest-node1', check=False)
        removed = lab.playbook('metrics.yml', extra_vars=dict(forest_metrics_state='absent'))
    assert removed.returncode == 0, removed.stdout[-3000:]
    assert units() == ['0', '0', '0', '0'], units()
    assert on_node0('test -e /etc/pgforest-metrics; echo $?') == ['1']
