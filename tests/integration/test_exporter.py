"""pgforest-exporter (plugins/module_utils/exporter.py) as a real process against the sandbox pair: what a
scrape says follows the pair at the next scrape (a stopped node, a split brain, a lowered read_duration),
/metrics parses with prometheus_client's parser, a node's restart leaks no connection, bad configuration
is one line and exit code 2, and the password is nowhere in the process's command line."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from pgforest_dev import REPO, sandbox
from pgforest_dev.wait import wait_for
from ansible_collections.pgforest.cluster.plugins.module_utils import poll_interval
from ansible_collections.pgforest.cluster.plugins.module_utils.forest_pg import MONITOR_APPLICATION_NAME

MODULE = 'ansible_collections.pgforest.cluster.plugins.module_utils.exporter'
CONNECT_TIMEOUT = 2


def inventory(path, **extra):
    """The pair as the forest_metrics role writes it for the exporter (roles/forest_metrics/templates)."""
    hosts = {}
    for serverid, node in sorted(sandbox.NODES.items()):
        hosts[node['name']] = dict(forest_serverid=serverid, forest_pg_host=node['host'], forest_pg_port=node['port'],
                                   forest_peer_host=sandbox.NODES[1 - serverid]['host'], forest_pg_user='postgres',
                                   forest_pg_password=sandbox.password(), forest_userdb=sandbox.USERDB)
        hosts[node['name']].update(extra)
    with open(path, 'w') as handle:
        yaml.safe_dump(dict(forest=dict(hosts=hosts)), handle)
    os.chmod(path, 0o600)
    return path


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def command(*args):
    return [sys.executable, '-m', MODULE] + list(args)


def environment():
    env = dict(os.environ)
    env['PYTHONPATH'] = os.path.join(REPO, 'collections')
    env['ANSIBLE_HOME'] = sandbox.ANSIBLE_HOME
    return env


class Running(object):
    def __init__(self, inventory_path, host='127.0.0.1'):
        self.port = free_port()
        where = '[%s]:%d' % (host, self.port) if ':' in host else '%s:%d' % (host, self.port)
        self.url = 'http://' + where
        self.stderr = open(inventory_path + '.log', 'w+')
        self.process = subprocess.Popen(command('--inventory', inventory_path, '--listen', where,
                                                '--connect-timeout', str(CONNECT_TIMEOUT)),
                                        env=environment(), stdout=subprocess.DEVNULL, stderr=self.stderr)
        wait_for('the exporter to answer on %s (its stderr: %s)' % (self.url, self.log), self.answers, interval=0.1)

    def log(self):
        self.stderr.seek(0)
        return self.stderr.read()

    def answers(self):
        assert self.process.poll() is None, 'the exporter ended: %s' % self.log()
        try:
            return self.get('/')
        except OSError:
            return None

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=30) as answer:
            return answer.read().decode('utf-8')

    def scrape(self):
        """{(name, frozenset(labels)): value} of one /metrics."""
        text = self.get('/metrics')
        return dict(((one.name, frozenset(one.labels.items())), one.value)
                    for family in text_string_to_metric_families(text) for one in family.samples)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        self.stderr.close()


def labels(**values):
    return frozenset((key, str(value)) for key, value in values.items())


def node(serverid, **more):
    return labels(pair='forest', userdb=sandbox.USERDB, serverid=serverid, **more)


@pytest.fixture()
def exporter(tmp_path):
    sandbox.reset_pair()
    running = Running(inventory(str(tmp_path / 'inventory.yml')))
    try:
        yield running
    finally:
        running.stop()
        for serverid in sandbox.NODES:
            sandbox.ensure_running(serverid)
            sandbox.on(serverid, 'COMMENT ON TABLE global_config IS NULL', dbname=sandbox.MNGDB)
        sandbox.reset_pair()


def exporter_sessions(serverid):
    """The exporter's sessions on the node: its own application_name (never a driver's), the test's own
    connection left out."""
    return sandbox.query(serverid, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                                   "AND backend_type = 'client backend'", [MONITOR_APPLICATION_NAME])[0][0]


def test_a_stopped_node_shows_at_the_next_scrape_and_its_return_too(exporter):
    found = exporter.scrape()
    assert found[('pgforest_database_healthy', labels(pair='forest', userdb=sandbox.USERDB))] == 1
    assert found[('pgforest_node_reachable', node(1))] == 1
    assert found[('pgforest_pair_up', labels(pair='forest'))] == 1
    assert found[('pgforest_exporter_scrape_errors_total', labels())] == 0
    assert 0 < found[('pgforest_exporter_scrape_duration_seconds', labels())] < CONNECT_TIMEOUT + 1
    page = exporter.get('/')
    assert '<td>forest</td><td>userdb</td><td class="healthy">healthy</td>' in page, page

    sandbox.pg_ctl(1, 'stop', '-m', 'fast')
    found = exporter.scrape()  # the very next one: the kept connection to serverid 1 is dead, none can be made
    assert found[('pgforest_node_reachable', node(1))] == 0
    assert found[('pgforest_database_state', labels(pair='forest', userdb=sandbox.USERDB, state='degraded'))] == 1
    assert 'degraded' in exporter.get('/')

    sandbox.ensure_running(1)
    found = exporter.scrape()
    assert found[('pgforest_node_reachable', node(1))] == 1
    assert found[('pgforest_database_healthy', labels(pair='forest', userdb=sandbox.USERDB))] == 1


def test_a_split_brain_and_a_lowered_read_duration_appear(exporter):
    assert exporter.scrape()[('pgforest_database_state', labels(pair='forest', userdb=sandbox.USERDB,
                                                                state='split_brain'))] == 0
    sandbox.set_views({0: 1, 1: -1}, {0: -1, 1: 1})
    record = dict(dba='30', short=1, at=time.time() - 120, by='a killed online recovery')
    with sandbox.connect(0, sandbox.MNGDB) as conn:
        conn.execute("COMMENT ON TABLE global_config IS '%s'"
                     % (poll_interval.MARK + json.dumps(record)).replace("'", "''"))
        conn.execute("UPDATE global_config SET value = '1' WHERE key = 'mngdb_read_duration'")
    found = exporter.scrape()
    assert found[('pgforest_database_state', labels(pair='forest', userdb=sandbox.USERDB, state='split_brain'))] == 1
    assert found[('pgforest_database_healthy', labels(pair='forest', userdb=sandbox.USERDB))] == 0
    assert found[('pgforest_node_validity', node(1, view=0))] == -1
    assert found[('pgforest_read_duration_seconds', node(0))] == 1
    assert found[('pgforest_read_duration_lowered_seconds', node(0))] >= 120
    assert ('pgforest_read_duration_lowered_seconds', node(1)) not in found
    assert 'split_brain' in exporter.get('/')


def test_a_restarted_node_leaks_no_connection(exporter):
    exporter.scrape()
    before = dict((serverid, exporter_sessions(serverid)) for serverid in sandbox.NODES)
    assert before == {0: 1, 1: 1}, before  # one kept connection per node and management database
    for _scrape in range(3):
        exporter.scrape()
    assert dict((serverid, exporter_sessions(serverid)) for serverid in sandbox.NODES) == before
    sandbox.pg_ctl(1, 'stop', '-m', 'fast')
    sandbox.ensure_running(1)  # started with its log file: a server's output on pg_ctl's pipe would never end
    for _scrape in range(5):
        found = exporter.scrape()
        assert found[('pgforest_node_reachable', node(1))] == 1  # the dead connection was replaced at once
    assert dict((serverid, exporter_sessions(serverid)) for serverid in sandbox.NODES) == before


def test_a_dump_recovery_and_a_restore_swap_go_through_the_exporters_kept_sessions(exporter):
    """The exporter sits on both management databases between scrapes; PostgreSQL drops and renames no database
    a session is in.  A dump recovery (DROP DATABASE on the target) must end them and go through, not fail after
    5 s with 55006 on every try; the exporter comes back at its next scrape."""
    exporter.scrape()
    assert exporter_sessions(1) == 1
    sandbox.set_views({1: -1}, {1: -1})
    result = sandbox.module('forest_recover', userdb=sandbox.USERDB, mode='offline', method='dump', target=1)
    assert not result.get('failed'), result.get('msg')
    assert sandbox.module('forest_status')['cluster_state'] == 'healthy'
    wait_for('the exporter to see the recovered pair healthy',
             lambda: exporter.scrape()[('pgforest_database_healthy', labels(pair='forest', userdb=sandbox.USERDB))])
    assert exporter_sessions(1) == 1


def test_a_real_application_session_still_stops_a_dump_recovery(exporter):
    """Only the exporter's own sessions are ended: an application's is named, and nothing is dropped."""
    exporter.scrape()
    sandbox.set_views({1: -1}, {1: -1})
    with sandbox.connect(1, dbname=sandbox.MNGDB, application_name='billing app'):
        result = sandbox.module('forest_recover', userdb=sandbox.USERDB, mode='offline', method='dump', target=1)
    assert result.get('failed') and 'billing app' in result['msg'], result.get('msg')


def test_the_password_is_not_in_the_command_line_nor_the_log(exporter):
    exporter.scrape()
    with open('/proc/%d/cmdline' % exporter.process.pid, 'rb') as handle:
        cmdline = handle.read()
    assert cmdline and sandbox.password().encode() not in cmdline
    assert sandbox.password() not in exporter.log()


def refused(*args, code=2, **env):
    """The one line of a start that fails: exit 2 for a configuration to correct, 1 for a start that may work
    next time (systemd restarts the unit after 1, not after 2)."""
    done = subprocess.run(command(*args), env=dict(environment(), **env), capture_output=True, text=True, timeout=120,
                          check=False)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == code and len(lines) == 1 and 'Traceback' not in done.stderr, \
        (done.returncode, done.stderr)
    return lines[0]


def test_bad_configuration_is_one_line_and_exit_code_2(tmp_path):
    good = inventory(str(tmp_path / 'good.yml'))
    misspelt = inventory(str(tmp_path / 'misspelt.yml'), forest_pg_prot=5433)
    assert 'variables the exporter does not know (forest0: forest_pg_prot; forest1: forest_pg_prot)' in refused(
        '--inventory', misspelt)
    no_ca = inventory(str(tmp_path / 'no_ca.yml'), forest_pg_ssl_mode='verify-full',
                      forest_pg_ssl_rootcert=str(tmp_path / 'ca' / 'forest0.crt'))
    assert 'pair forest: the CA certificate %s (forest_pg_ssl_rootcert' % (tmp_path / 'ca' / 'forest0.crt') in refused(
        '--inventory', no_ca)
    assert 'does not exist' in refused('--inventory', no_ca)
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert 'cannot listen on 127.0.0.1:%d: Address already in use' % port in refused(
            '--inventory', good, '--listen', '127.0.0.1:%d' % port, code=1)
    for timeout in ('0', '-1', '86401', '99999999999'):
        assert '--connect-timeout must be 1 to 86400 seconds' in refused('--inventory', good, '--connect-timeout',
                                                                         timeout)
    assert 'cannot read the inventory' in refused('--inventory', str(tmp_path / 'missing.yml'))
    (tmp_path / 'garbled.yml').write_text('forest: [unclosed\n')
    assert 'cannot use the inventory' in refused('--inventory', str(tmp_path / 'garbled.yml'))
    assert '--listen must be HOST:PORT' in refused('--inventory', good, '--listen', 'nonsense')
    assert 'no group elsewhere' in refused('--inventory', good, '--group', 'elsewhere')


def test_an_ipv6_listen_address_is_served(tmp_path):
    """The role writes --listen [::]:PORT for an IPv6 listen address; the server must bind that family."""
    running = Running(inventory(str(tmp_path / 'inventory.yml')), host='::1')
    try:
        assert running.scrape()[('pgforest_pair_up', labels(pair='forest'))] == 1
    finally:
        running.stop()


def test_a_start_that_fails_outside_the_configuration_is_one_line_too(tmp_path):
    """Ansible's inventory code needs a writable home: where it has none (a unit without ANSIBLE_HOME), the
    start fails with the cause in one line, not a traceback."""
    line = refused('--inventory', inventory(str(tmp_path / 'inventory.yml')), code=1,
                   ANSIBLE_HOME='/proc/pgforest-none', ANSIBLE_LOCAL_TEMP='/proc/pgforest-none/tmp')
    assert line.startswith('pgforest-exporter: cannot start: ') and '/proc/pgforest-none' in line, line


def test_check_says_how_many_pairs_and_serves_nothing(tmp_path):
    """--check (the role validates a new inventory with it before it replaces the one the service reads)."""
    port = free_port()
    done = subprocess.run(command('--inventory', inventory(str(tmp_path / 'inventory.yml')), '--check',
                                  '--listen', '127.0.0.1:%d' % port),
                          env=environment(), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and ': 1 pairs (forest)' in done.stdout, (done.stdout, done.stderr)
    with socket.socket() as probe:
        assert probe.connect_ex(('127.0.0.1', port)) != 0  # nothing listened
    misspelt = inventory(str(tmp_path / 'misspelt.yml'), forest_pg_prot=5433)
    assert 'does not know' in refused('--inventory', misspelt, '--check')
