"""TLS on every connection: lab/inventory.yml sets forest_tls (a private CA on the controller issues each
node's certificate, pg_hba.conf admits TCP clients only over TLS, the modules connect verify-full). Every
other lab test (status, dbsync, online and offline recovery, backup and restore, the application drivers)
therefore runs over TLS too; this one proves that nothing gets through in clear and that the sessions the
tools open -- the modules', pg_basebackup's and the recovered standby's -- are encrypted."""
import os
import threading

import psycopg
import pytest

import lab
from test_playbooks import ok, stop_node1_under_load

CA_FILE = os.path.join(lab.STATE, 'tls-ca', 'ca.crt')
WALSENDERS = ("SELECT a.application_name, s.ssl, s.version FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
              "WHERE a.backend_type = 'walsender'")


def plain_tcp_from(serverid, target):
    """psql from node `serverid` to node `target` without TLS (the peer's own entries in pg_hba.conf); refused
    before any password is asked."""
    return lab.ssh(serverid, "psql -w 'host=%s user=postgres dbname=userdb sslmode=disable' -c 'SELECT 1'"
                   % lab.NODES[target]['host'], check=False)


def test_plain_tcp_is_refused_and_every_tool_session_is_encrypted(pair, record):
    # Nothing in clear: from the DBA's workstation, and from the peer node (its replication and module entries).
    for serverid in lab.NODES:
        with pytest.raises(psycopg.OperationalError, match='no encryption'):
            lab.connect(serverid, lab.USERDB, sslmode='disable')
    peer = plain_tcp_from(1, 0)
    assert peer.returncode != 0 and 'no encryption' in peer.stderr, peer.stderr
    # The certificate names the node's address and chains to the private CA.
    for serverid in lab.NODES:
        with lab.connect(serverid, lab.USERDB, sslmode='verify-full', sslrootcert=CA_FILE) as conn:
            assert conn.execute('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()').fetchone() == (True,)

    # The modules' own sessions, as the servers saw them (pg_stat_ssl).
    status = lab.module('forest_status')
    assert not status.get('failed'), status
    assert [(node['ssl'], node['tls_version']) for node in status['nodes']] == [(True, 'TLSv1.3')] * 2, status
    refused = lab.module('forest_status', ssl_mode='disable')
    assert refused['cluster_state'] == 'down'
    assert 'only encrypted connections' in refused['unreached'][0]['hint'], refused['unreached']
    # A root certificate that did not sign the nodes' (node0's own certificate, not a CA): refused, and told why.
    wrong = lab.module('forest_status', ssl_rootcert='/var/lib/pgforest/node0/tls/server.crt')
    assert wrong['cluster_state'] == 'down'
    assert 'ssl_rootcert' in wrong['unreached'][0]['hint'], wrong['unreached']

    # Online recovery: pg_basebackup's and the standby's replication sessions on the source, and the standby's
    # primary_conninfo, watched while recover.yml runs.
    seen, conninfos, stop = [], [], threading.Event()

    # Sampled every 0.1 s while recover.yml runs (a pace, not a wait for something); stop ends them at once.
    def watch():
        while not stop.is_set():
            try:
                with lab.connect(0, 'postgres', sslmode='verify-full', sslrootcert=CA_FILE) as conn:
                    while not stop.is_set():
                        seen.extend(tuple(row) for row in conn.execute(WALSENDERS).fetchall())
                        stop.wait(0.1)
            except psycopg.Error:
                stop.wait(0.2)

    def watch_standby():
        while not stop.is_set():
            try:
                with lab.connect(1, 'postgres', timeout=1) as conn:
                    conninfos.extend(row[0] for row in conn.execute('SELECT conninfo FROM pg_stat_wal_receiver'))
            except psycopg.Error:
                pass
            stop.wait(0.1)

    driver = stop_node1_under_load()
    # The application host's driver (libpq's default sslmode, prefer) is encrypted too.
    app_sessions = lab.query(0, "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
                                "WHERE a.application_name = 'forest-driver'", dbname='postgres')
    assert app_sessions and all(row[0] for row in app_sessions), app_sessions
    watchers = [threading.Thread(target=target, daemon=True) for target in (watch, watch_standby)]
    try:
        for thread in watchers:
            thread.start()
        proc = ok(lab.playbook('recover.yml'))
        driver.wait_acked(10)  # the driver writes to both nodes again
    finally:
        stop.set()
        for thread in watchers:
            thread.join(10)
        acked = driver.stop()
    assert acked.validity == {0: 1, 1: 1}, (acked.validity, proc.stdout[-2000:])
    written = lab.write_counts(acked)
    record(lost=written['lost'], duplicated=written['duplicated'])
    assert written['problems'] == []
    names = set(name for name, _ssl, _version in seen)
    assert 'pgforest_basebackup' in names, seen[:20]
    assert len(names) >= 2, names  # the standby's walreceiver too (the collection's application name)
    assert all(ssl for _name, ssl, _version in seen), [row for row in seen if not row[1]]
    assert conninfos and all('sslmode=verify-full' in info and 'sslrootcert=' in info for info in conninfos), \
        conninfos[:3]
    ok(lab.playbook('status.yml', extra_vars=dict(fail_unless_healthy=True)))
    record(what='forest_tls on: plain TCP refused from the workstation and from the peer; forest_status sessions '
                'TLSv1.3; during an online recovery under the driver every walsender session on the source '
                '(pg_basebackup, the standby) encrypted, the standby streaming with sslmode=verify-full',
           walsender_sessions=sorted(names), samples=len(seen), driver_sessions_encrypted=len(app_sessions),
           acked=len(acked.acked))
