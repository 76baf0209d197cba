"""The pairs a controller-side reader makes of an inventory (plugin_utils/estate.py), the connections the
exporter keeps (estate_read.KeptConnections), and the exporter's own option checks."""
import threading
import time

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.pgforest.cluster.plugins.filter.forest_pair import (
    STATUS_HEADER, status_failures, status_summaries, status_table)
from ansible_collections.pgforest.cluster.plugins.module_utils import estate_read, exporter
from ansible_collections.pgforest.cluster.plugins.module_utils.forest_pg import ForestPgError
from ansible_collections.pgforest.cluster.plugins.plugin_utils.estate import (
    EstateError, estate_pairs, pair_params, reader_tls, unknown_variables)


def host(serverid, address, **more):
    return dict(forest_serverid=serverid, forest_pg_host=address, forest_pg_password='secret', **more)


HOSTVARS = {
    'a0': host(0, '10.0.0.1', forest_pair='a', forest_userdbs=['orders', 'ledger']),
    'a1': host(1, '10.0.0.2', forest_pair='a', forest_userdbs=['orders', 'ledger'], forest_pg_port=6432),
    'b1': host(1, '10.0.1.2', forest_pair='b'),
    'b0': host(0, '10.0.1.1', forest_pair='b', forest_pg_user='dba'),
}


def test_each_pair_once_by_name_serverid_0_read_with_serverid_1_as_peer():
    pairs = estate_pairs(HOSTVARS, list(HOSTVARS), connect_timeout=4)
    assert [(pair['pair'], pair['hosts'], pair['userdbs']) for pair in pairs] == [
        ('a', ['a0', 'a1'], ['orders', 'ledger']), ('b', ['b0', 'b1'], ['userdb'])]
    a, b = (pair['params'] for pair in pairs)
    assert (a['login_host'], a['login_port'], a['peer_host'], a['peer_port'], a['login_user']) == (
        '10.0.0.1', 5432, '10.0.0.2', 6432, 'postgres')
    assert (a['login_password'], a['connect_timeout'], a['statement_timeout'], a['ssl_mode']) == ('secret', 4, 30000, None)
    assert (b['login_host'], b['peer_host'], b['login_user']) == ('10.0.1.1', '10.0.1.2', 'dba')


def test_only_pairs_with_a_host_in_the_play():
    assert [pair['pair'] for pair in estate_pairs(HOSTVARS, list(HOSTVARS), play_hosts=['b1'])] == ['b']


def test_the_pair_rule_refuses_as_the_playbooks_do():
    bad = dict(HOSTVARS, b1=host(0, '10.0.1.2', forest_pair='b'))
    with pytest.raises(AnsibleFilterError, match='pair b must be two hosts with forest_serverid 0 and 1'):
        estate_pairs(bad, list(bad))
    with pytest.raises(EstateError, match='forest_pg_host'):
        pair_params(dict(forest_serverid=0), host(1, '10.0.0.2'), 3)


def test_tls_files_are_the_readers_given_ones_else_the_pairs_ca_on_the_controller(tmp_path):
    assert reader_tls(host(0, 'x')) == {}
    assert reader_tls(host(0, 'x', forest_pg_ssl_mode='verify-full', forest_pg_ssl_rootcert='/m/ca/a0.crt')) == dict(
        ssl_mode='verify-full', ssl_rootcert='/m/ca/a0.crt')
    assert reader_tls(host(0, 'x', forest_tls=True, forest_tls_ca_dir=str(tmp_path))) == dict(
        ssl_mode='verify-full', ssl_rootcert=str(tmp_path / 'ca.crt'))
    assert reader_tls(host(0, 'x', forest_tls='yes', forest_tls_ca_file='/pki/ca.pem')) == dict(
        ssl_mode='verify-full', ssl_rootcert='/pki/ca.pem')


def test_unknown_forest_variables_are_named_per_host():
    assert unknown_variables(HOSTVARS, list(HOSTVARS)) == ''
    odd = dict(HOSTVARS, a0=dict(HOSTVARS['a0'], forest_pg_prot=1, ansible_connection='local'))
    assert unknown_variables(odd, list(odd)) == 'a0: forest_pg_prot'


class FakeConn(object):
    def __init__(self, number):
        self.number, self.closed, self.broken = number, False, False

    def close(self):
        self.closed = True


class FakeNode(object):
    host, port = 'h', 5432

    def __init__(self, refuse=False):
        self.opened, self.refuse = [], refuse

    def connect(self, dbname, kept=False):
        if self.refuse:
            raise ForestPgError('h', 'connect', 'connection refused', '08001')
        self.opened.append(FakeConn(len(self.opened)))
        return self.opened[-1]


def test_a_connection_is_kept_between_reads_and_a_dead_one_replaced_at_once():
    pool, node = estate_read.KeptConnections(), FakeNode()
    used = []
    assert pool.read(node, 'db', lambda conn: used.append(conn.number) or 'view', None) == 'view'
    pool.read(node, 'db', lambda conn: used.append(conn.number), None)
    assert used == [0, 0] and len(node.opened) == 1 and pool.idle() == 1

    def dies(conn):  # the server restarted since the last read: the first query finds the connection dead
        used.append(conn.number)
        if conn.number == 0:
            conn.broken = True
        return conn.number
    assert pool.read(node, 'db', dies, None) == 1  # read again, at once, over a new connection
    assert used[-2:] == [0, 1] and node.opened[0].closed and not node.opened[1].closed and pool.idle() == 1
    pool.close()
    assert node.opened[1].closed and pool.idle() == 0


def test_a_node_that_refuses_gives_its_unconnected_view_and_nothing_is_kept():
    pool = estate_read.KeptConnections()
    assert pool.read(FakeNode(refuse=True), 'db', None, lambda exc: exc.sqlstate) == '08001'
    assert pool.idle() == 0


def test_a_read_still_hanging_does_not_block_the_next_and_only_one_connection_stays():
    pool, node = estate_read.KeptConnections(), FakeNode()
    pool.read(node, 'db', lambda conn: None, None)
    release, taken = threading.Event(), threading.Event()

    def hangs(conn):
        taken.set()
        release.wait(10)
    slow = threading.Thread(target=pool.read, args=(node, 'db', hangs, None))
    slow.start()
    taken.wait(10)
    pool.read(node, 'db', lambda conn: None, None)  # the kept one is in use: a new one
    assert len(node.opened) == 2
    release.set()
    slow.join(10)
    assert pool.idle() == 1 and sum(conn.closed for conn in node.opened) == 1


def test_read_estate_keeps_a_failing_pairs_error_and_the_others_statuses(monkeypatch):
    def fake(pair, _limit, _pool):
        if pair['pair'] == 'bad':
            raise KeyError('udb_validity')
        return dict(healthy=True)
    monkeypatch.setattr(estate_read, 'read_pair_status', fake)
    found = estate_read.read_estate([dict(pair='good'), dict(pair='bad')])
    assert found == [dict(pair='good', status=dict(healthy=True), error=None),
                     dict(pair='bad', status=None, error="KeyError: 'udb_validity'")]


def test_listen_addresses():
    assert exporter.parse_listen('127.0.0.1:9716') == ('127.0.0.1', 9716)
    assert exporter.parse_listen('[::1]:9716') == ('::1', 9716)
    for bad in ('9716', 'host:', ':9716', 'host:99999', 'host:http'):
        with pytest.raises(exporter.ConfigError, match='--listen must be HOST:PORT'):
            exporter.parse_listen(bad)


def test_bad_options_are_one_line(capsys):
    assert exporter.main(['--listen', '1.2.3.4:80']) == exporter.BAD_CONFIG
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'the following arguments are required: --inventory' in err
    assert exporter.main(['--inventory', '/nonexistent/inventory.yml']) == exporter.BAD_CONFIG
    assert 'cannot read the inventory /nonexistent/inventory.yml' in capsys.readouterr().err


def test_status_table_is_the_playbooks_lines():
    node = dict(serverid=0, validity_name='valid', reachable=True)
    status = dict(databases=[dict(userdb='userdb', cluster_state='degraded', recommended_action=dict(action='x'),
                                  nodes=[node, dict(node, serverid=1, reachable=False)])])
    assert [' '.join(line.split()) for line in status_table([dict(pair='p', status=status)], header=True)] == [
        ' '.join(STATUS_HEADER.split()), 'p userdb degraded 0=valid 1=valid(unreachable) x']


def test_status_summaries_and_failures_name_each_pair():
    def status(state, reason, userdbs):
        return dict(cluster_state=state, healthy=state == 'healthy', unhealthy_userdbs=userdbs,
                    summary=['cluster %s: %s' % (state, reason)], recommended_action=dict(action='a', reason=reason))
    items = [dict(pair='p0', status=status('healthy', 'fine', [])),
             dict(pair='p1', status=status('degraded', 'serverid 1 is marked broken', ['userdb', 'ledger']))]
    assert status_summaries(items) == ['pair p0:', 'cluster healthy: fine', 'recommended action: a',
                                       'pair p1:', 'cluster degraded: serverid 1 is marked broken',
                                       'recommended action: a']
    assert status_failures(items) == ['pair p1 is degraded (not healthy: userdb, ledger): serverid 1 is marked broken']


def test_requests_that_come_during_a_read_take_its_outcome_instead_of_queueing_their_own():
    """Two Prometheus servers and a browser while a node hangs: one read, not three one after the other (each
    would wait the hung node's connect_timeout after the other's)."""
    running = exporter.Exporter([])
    started, release, calls = threading.Event(), threading.Event(), []

    def slow_read():
        calls.append(1)
        started.set()
        release.wait(30)
        return [dict(pair='p', status=None, error='read %d' % len(calls))]
    running.read_now = slow_read
    outcomes = []
    first = threading.Thread(target=lambda: outcomes.append(running.read()))
    first.start()
    assert started.wait(30)
    joiners = [threading.Thread(target=lambda: outcomes.append(running.read())) for _joiner in range(2)]
    for thread in joiners:
        thread.start()
    deadline = time.monotonic() + 30
    while len(running.flight._waiters) < 2 and time.monotonic() < deadline:  # pylint: disable=protected-access
        time.sleep(0.01)  # waits for the event (both joiners waiting), not a fixed time
    release.set()
    for thread in [first] + joiners:
        thread.join(30)
    assert len(calls) == 1 and [item[0]['error'] for item in outcomes] == ['read 1'] * 3
    assert running.read()[0]['error'] == 'read 2'  # a request after it reads anew


def test_a_read_that_raises_reaches_the_requests_that_waited_for_it():
    running = exporter.Exporter([])

    def no_thread():
        raise RuntimeError("can't start new thread")
    running.read_now = no_thread
    with pytest.raises(RuntimeError):
        running.read()
    assert running.reading is False  # the next request is not left waiting for ever
