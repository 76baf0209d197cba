"""forest_tls on the sandbox pair (loopback addresses, one machine): the role turns TLS on (certificates from a
private CA kept in the sandbox) and off again, idempotently; the modules verify the nodes' certificates by
default; plain TCP is refused while it is on. The two-machine version, with online recovery and
pg_stat_ssl of every session, is tests/lab/test_tls.py."""
import os
import subprocess

import psycopg
import pytest

from pgforest_dev import sandbox

CA_DIR = os.path.join(sandbox.SANDBOX, 'tls-ca')


def provision(tls, **extra_vars):
    done = sandbox.playbook('provision.yml', extra_vars=dict(extra_vars, forest_tls=tls, forest_tls_ca_dir=CA_DIR))
    assert done.returncode == 0, done.stdout[-3000:]
    return sandbox.recap(done.stdout)


def tls_dir(serverid):
    return os.path.join(os.path.dirname(sandbox.data_dir(serverid)), 'tls')


# Whether this worker's pair runs with TLS now: the cases share one provision with TLS on (each provision
# costs half a minute of CPU), and the module turns it off at its end, where a case has not already.
_tls = dict(on=False)


@pytest.fixture(scope='module')
def tls_off_afterwards():
    yield
    if _tls['on']:
        provision(False)
        _tls['on'] = False


@pytest.fixture
def tls_on(tls_off_afterwards):  # pylint: disable=redefined-outer-name,unused-argument
    """TLS on, with the pair's certificates from the private CA; provisioned once for the cases that need it."""
    if not _tls['on']:
        provision(True)
        _tls['on'] = True


def test_tls_on_refuses_plain_tcp_and_the_modules_verify_the_nodes(tls_on):
    assert [changes['changed'] for changes in provision(True).values()] == [0, 0]  # idempotent with TLS
    for serverid in sandbox.NODES:
        with pytest.raises(psycopg.OperationalError, match='no encryption'):
            sandbox.connect(serverid, sslmode='disable')
        assert oct(os.stat(os.path.join(tls_dir(serverid), 'server.key')).st_mode & 0o777) == '0o600'
        with sandbox.connect(serverid, sslmode='verify-full', sslrootcert=os.path.join(CA_DIR, 'ca.crt')) as conn:
            assert conn.execute('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()').fetchone() == (True,)
    # status.yml reads from the controller: with forest_tls, verify-full against the pair's CA there
    # (forest_tls_ca_dir's ca.crt, as provision made it).
    status = sandbox.playbook('status.yml', extra_vars=dict(forest_tls=True, forest_tls_ca_dir=CA_DIR,
                                                            fail_unless_healthy=True))
    assert status.returncode == 0, status.stdout[-3000:]
    verified = sandbox.module('forest_status', ssl_mode='verify-full',
                              ssl_rootcert=os.path.join(tls_dir(0), 'ca.crt'))
    assert [(node['ssl'], node['tls_version']) for node in verified['nodes']] == [(True, 'TLSv1.3')] * 2
    # A CA that did not sign them (a node certificate is no CA): refused, and the hint says what to check.
    wrong = sandbox.module('forest_status', ssl_mode='verify-full', ssl_rootcert=os.path.join(tls_dir(0), 'server.crt'))
    assert wrong['cluster_state'] == 'down' and 'ssl_rootcert' in wrong['unreached'][0]['hint']
    plain = sandbox.module('forest_status', ssl_mode='disable')
    assert plain['cluster_state'] == 'down' and 'only encrypted connections' in plain['unreached'][0]['hint']
    # dbsync's psql pipes carry the TLS settings too (a repair copies through them).
    sandbox.both('DROP TABLE IF EXISTS tls_items; CREATE TABLE tls_items (id int PRIMARY KEY, v text)')
    try:
        sandbox.on(0, "INSERT INTO tls_items SELECT g, 'v' || g FROM generate_series(1, 300) g")
        sandbox.set_views({1: -1}, {1: -1})
        synced = sandbox.module('forest_dbsync', mode='sync', source=0, include=['public.tls_items'],
                                ssl_mode='verify-full', ssl_rootcert=os.path.join(tls_dir(0), 'ca.crt'))
        assert not synced.get('failed'), synced.get('msg')
        assert sandbox.query(1, 'SELECT count(*) FROM tls_items', dbname=sandbox.USERDB) == [(300,)]
    finally:
        sandbox.reset_pair()
        sandbox.both('DROP TABLE IF EXISTS tls_items')


def test_a_client_certificate_reaches_the_server(tls_on, tmp_path):
    """ssl_cert / ssl_key: the server verifies the module's client certificate (signed by the pair's CA)."""
    key, cert = str(tmp_path / 'client.key'), str(tmp_path / 'client.crt')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
                    '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=postgres',
                    '-addext', 'extendedKeyUsage=clientAuth', '-CA', os.path.join(CA_DIR, 'ca.crt'),
                    '-CAkey', os.path.join(CA_DIR, 'ca.key')], check=True, capture_output=True)
    os.chmod(key, 0o600)
    options = dict(ssl_mode='verify-full', ssl_rootcert=os.path.join(tls_dir(0), 'ca.crt'), ssl_cert=cert,
                   ssl_key=key)
    status = sandbox.module('forest_status', **options)
    assert [node['tls_client_dn'] for node in status['nodes']] == ['/CN=postgres'] * 2, status['nodes']
    os.chmod(key, 0o644)  # libpq refuses a key others can read, and says so
    refused = sandbox.module('forest_status', **options)
    assert refused['cluster_state'] == 'down'
    assert 'private key file' in refused['unreached'][0]['detail'], refused['unreached']


def serial(path):
    return subprocess.run(['openssl', 'x509', '-noout', '-serial', '-enddate', '-in', path], capture_output=True,
                          text=True, check=True).stdout


def served_serial(serverid):
    """The serial of the certificate the server presents (openssl s_client speaks PostgreSQL's STARTTLS)."""
    node = sandbox.NODES[serverid]
    hello = subprocess.run(['openssl', 's_client', '-starttls', 'postgres', '-connect',
                            '%s:%s' % (node['host'], node['port'])], input='', capture_output=True, text=True,
                           timeout=20, check=False)
    return subprocess.run(['openssl', 'x509', '-noout', '-serial'], input=hello.stdout, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_a_certificate_near_its_end_is_renewed(tls_on):
    installed = os.path.join(tls_dir(1), 'server.crt')
    before = serial(installed)
    # every certificate "ends soon": issued again, installed, the servers reloaded
    assert [changes['changed'] for changes in provision(True, forest_node_tls_renew_days=100000).values()] != [0, 0]
    assert serial(installed) != before
    # 30 days: nothing to renew
    assert [changes['changed'] for changes in provision(True).values()] == [0, 0]
    assert served_serial(1) == serial(installed).splitlines()[0]  # the server reloaded and serves the new one
    status = sandbox.module('forest_status', ssl_mode='verify-full', ssl_rootcert=os.path.join(tls_dir(0), 'ca.crt'))
    assert status['healthy'] is True


def test_tls_off_again_admits_plain_tcp(tls_on):
    provision(False)
    _tls['on'] = False
    for serverid in sandbox.NODES:
        with sandbox.connect(serverid, sslmode='disable') as conn:
            assert conn.execute('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()').fetchone() == (False,)
    assert sandbox.module('forest_status')['healthy'] is True
