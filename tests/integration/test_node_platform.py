"""The PostgreSQL major of a node follows its host (role forest_node, module forest_node_pg), the
pair runs one major, pgforest-psql reaches the node, and a server beside the node is removed only
when it was never used: checked on the sandbox's servers and on throwaway servers of this machine's
PostgreSQL (never on this machine's own clusters: pg_lsclusters is replaced by a stand-in that
lists only the test's servers)."""
import json
import os
import re
import shutil
import stat
import subprocess

import pytest

from pgforest_dev import sandbox
from ansible_collections.pgforest.cluster.plugins.module_utils import pg_platform


def data_dir_major(serverid):
    with open(os.path.join(sandbox.data_dir(serverid), 'PG_VERSION')) as handle:
        return int(handle.read().strip())


def test_the_major_is_the_data_directorys_and_the_run_says_why():
    major = data_dir_major(0)
    run = sandbox.playbook('provision.yml', '--tags', 'node')
    assert run.returncode == 0, run.stdout[-3000:]
    line = 'PostgreSQL %d (running: the major of the data directory %s)' % (major, sandbox.data_dir(0))
    assert line in run.stdout, run.stdout[-3000:]
    assert {host: counts['changed'] for host, counts in sandbox.recap(run.stdout).items()} == \
        {'forest0': 0, 'forest1': 0}


def test_a_version_other_than_the_data_directorys_is_refused_and_nothing_changes():
    major = data_dir_major(0)
    before = sandbox.query(0, "SELECT pg_postmaster_start_time()")
    run = sandbox.playbook('provision.yml', '--tags', 'node', extra_vars={'forest_node_pg_version': major + 2})
    assert run.returncode != 0
    assert ("forest_node_pg_version is %d, but the node's data directory is PostgreSQL %d" % (major + 2, major)) \
        in run.stdout, run.stdout[-3000:]
    assert 'mark it -1' in run.stdout
    assert all(counts['changed'] == 0 for counts in sandbox.recap(run.stdout).values())
    assert sandbox.query(0, "SELECT pg_postmaster_start_time()") == before  # not restarted


def node_pg(python, **args):
    """forest_node_pg ad hoc on this machine with the given Python for the module; its result."""
    args.setdefault('data_dir', sandbox.data_dir(0))
    done = subprocess.run([os.path.join(sandbox.BIN, 'ansible'), 'localhost', '-m', 'pgforest.cluster.forest_node_pg',
                           '-a', json.dumps(args), '-e', 'ansible_python_interpreter=' + python],
                          capture_output=True, text=True, env=sandbox.ansible_env(), check=False)
    assert ' => ' in done.stdout, done.stdout + done.stderr
    return json.loads(done.stdout.split(' => ', 1)[1])


def test_one_module_run_says_what_the_role_would_install():
    """What the role asked with a task each (pg_ctl, psycopg for the modules' Python, apt's lists, an initialized
    data directory) comes from the module that chooses the major, for the Python the modules run with."""
    major = data_dir_major(0)
    lists = sum(1 for name in os.listdir('/var/lib/apt/lists') if '_Packages' in name)
    with_psycopg = node_pg(os.path.join(sandbox.BIN, 'python'))
    assert (with_psycopg['pg_version'], with_psycopg['data_dir_version'], with_psycopg['pg_ctl'],
            with_psycopg['psycopg'], with_psycopg['apt_lists'], with_psycopg['apt_lists_read'],
            with_psycopg['data_dir_initialized'], with_psycopg['changed']) == \
        (major, major, True, True, lists, False, True, False), with_psycopg
    # Debian's own Python (which has psycopg only if python3-psycopg is installed), a bindir without pg_ctl, a
    # new node: the newest server installed here, nothing read or changed.
    system_has_psycopg = subprocess.run(['/usr/bin/python3', '-c', 'import psycopg'], capture_output=True,
                                        check=False).returncode == 0
    bare = node_pg('/usr/bin/python3', bindir='/nonexistent/bin', data_dir='/nonexistent/data',
                   read_apt_lists=True)
    assert (bare['pg_version'], bare['reason'], bare['data_dir_version'], bare['data_dir_initialized'], bare['pg_ctl'],
            bare['psycopg'], bare['apt_lists_read'], bare['changed']) == \
        (max(pg_platform.installed_majors()), 'installed', None, False, False, system_has_psycopg, False, False), bare


@pytest.fixture
def spare_pair(tmp_path):
    """An inventory of a new pair on 127.0.0.13/14 (no data directories yet), under the sandbox."""
    bases = dict((name, os.path.join(sandbox.SANDBOX, 'spare-' + name)) for name in ('a', 'b'))
    for base in bases.values():
        shutil.rmtree(base, ignore_errors=True)
    inventory = tmp_path / 'inventory.yml'

    def write(a=None, b=None):
        hosts = {}
        for name, serverid, extra in (('a', 0, a), ('b', 1, b)):
            hosts['spare_' + name] = dict(forest_serverid=serverid, forest_pg_host='127.0.0.%d' % (13 + serverid),
                                          forest_peer_host='127.0.0.%d' % (14 - serverid),
                                          forest_node_base_dir=bases[name], forest_pg_password='spare-password-1',
                                          **(extra or {}))
        inventory.write_text(json.dumps({'forest': {
            'vars': {'ansible_connection': 'local', 'ansible_python_interpreter': '{{ ansible_playbook_python }}',
                     'forest_node_stray_clusters': 'keep', 'forest_node_psql_helper': ''},
            'hosts': hosts}}))
        return str(inventory)

    yield write, bases
    for base in bases.values():
        shutil.rmtree(base, ignore_errors=True)


def test_a_pair_on_two_majors_is_refused_on_both_hosts_before_anything_changes(spare_pair):
    write, bases = spare_pair
    installed = pg_platform.installed_majors()[-1]
    # spare_b's host keeps a data directory of another major (only its PG_VERSION: the choice reads nothing else).
    other = installed + 1
    data_b = os.path.join(bases['b'], 'data')
    os.makedirs(data_b)
    with open(os.path.join(data_b, 'PG_VERSION'), 'w') as handle:
        handle.write('%d\n' % other)
    run = sandbox.playbook('provision.yml', '--tags', 'node', inventory=write())
    assert run.returncode != 0
    message = ('spare_a would run %d (installed) and spare_b %d (running)' % (installed, other),
               'spare_b would run %d (running) and spare_a %d (installed)' % (other, installed))
    assert message[0] in run.stdout and message[1] in run.stdout, run.stdout[-3000:]
    assert 'Nothing was changed' in run.stdout
    assert not os.path.exists(bases['a']) and os.listdir(data_b) == ['PG_VERSION']


def test_a_major_apt_does_not_offer_is_refused_before_anything_changes(spare_pair):
    """forest_node_pg_version: 99 used to write postgresql-common's createcluster.d drop-in, then fail in apt."""
    write, bases = spare_pair
    dropin = '/etc/postgresql-common/createcluster.d/pgforest.conf'
    before = os.path.exists(dropin) and os.stat(dropin).st_mtime
    run = sandbox.playbook('provision.yml', '--tags', 'node', inventory=write(a={'forest_node_pg_version': 99},
                                                                              b={'forest_node_pg_version': 99}))
    assert run.returncode != 0
    refusal = 'forest_node_pg_version is 99, but PostgreSQL 99 is not installed here and the OS packages do not offer it'
    for host in ('spare_a', 'spare_b'):
        assert re.search(r'fatal: \[%s\].*%s' % (host, re.escape(refusal)), run.stdout), run.stdout[-3000:]
    assert not any(os.path.exists(base) for base in bases.values())
    assert (os.path.exists(dropin) and os.stat(dropin).st_mtime) == before


def test_a_peer_left_out_with_limit_is_named_in_a_warning(spare_pair):
    """Provisioning one node of a pair (--limit, as the upgrade between majors does) cannot compare the majors:
    the run says so instead of passing the pair check silently."""
    write, _bases = spare_pair
    run = sandbox.playbook('provision.yml', '--tags', 'node', '--limit', 'spare_a', '--check', inventory=write())
    assert "could not compare this node's PostgreSQL %d with spare_b" % pg_platform.installed_majors()[-1] \
        in ' '.join((run.stdout + run.stderr).split()), run.stderr[-3000:]  # Ansible's warnings go to stderr


@pytest.mark.parametrize('serverid', [0, 1])
def test_pgforest_psql_reaches_the_node_through_its_socket(serverid):
    helper = os.path.join(os.path.dirname(sandbox.data_dir(serverid)), 'pgforest-psql')
    mode = os.stat(helper).st_mode
    assert mode & stat.S_IXOTH and not mode & stat.S_IWOTH
    done = subprocess.run([helper, '-XAtc', "SELECT current_user, current_setting('listen_addresses'), "
                                            "inet_server_addr() IS NULL"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    # As the server's OS user (peer authentication), to this node, over its Unix socket.
    assert done.stdout.strip() == 'postgres|%s|t' % sandbox.NODES[serverid]['host']


# --- servers beside the node ------------------------------------------------------------------------
@pytest.fixture
def strays(tmp_path):
    """Three throwaway servers of this machine's PostgreSQL (Unix sockets only, in the sandbox), a
    pg_lsclusters stand-in that lists them, and a pg_dropcluster stand-in that records its calls and
    stops the server it names."""
    major = pg_platform.installed_majors()[-1]
    top = os.path.join(sandbox.SANDBOX, 'strays')
    shutil.rmtree(top, ignore_errors=True)
    os.makedirs(top)
    shutil.chown(top, 'postgres', 'postgres')
    servers = {}
    # main: what the packages make (never used); used: one with data; spare: empty, but made by somebody.
    for index, name in enumerate(('main', 'used', 'spare')):
        data, sockets = os.path.join(top, name), os.path.join(top, name + '-run')
        os.makedirs(sockets)
        shutil.chown(sockets, 'postgres', 'postgres')
        as_postgres = ['runuser', '-u', 'postgres', '--']
        subprocess.run(as_postgres + [pg_platform.bindir(major) + '/initdb', '-D', data, '--auth=peer'],
                       capture_output=True, check=True)
        port = 6400 + index
        subprocess.run(as_postgres + [pg_platform.bindir(major) + '/pg_ctl', '-D', data, '-w', '-l',
                                      data + '.log', '-o', "-c listen_addresses='' -c port=%d "
                                      "-c unix_socket_directories='%s'" % (port, sockets), 'start'],
                       capture_output=True, check=True)
        servers[name] = dict(version=major, cluster=name, port=port, running=1, pgdata=data, socketdir=sockets,
                             owneruid=0)
    tools = tmp_path / 'bin'
    tools.mkdir()
    listing = tmp_path / 'clusters.json'
    listing.write_text(json.dumps(list(servers.values())))
    dropped = tmp_path / 'dropped'
    (tools / 'pg_lsclusters').write_text('#!/bin/sh\ncat %s\n' % listing)
    (tools / 'pg_dropcluster').write_text(
        '#!/bin/sh\necho "$@" >> %s\nrunuser -u postgres -- %s/pg_ctl -D %s/$3 -m fast -w stop >/dev/null\n'
        % (dropped, pg_platform.bindir(major), top))
    for tool in ('pg_lsclusters', 'pg_dropcluster'):
        (tools / tool).chmod(0o755)

    def psql(name, sql):
        server = servers[name]
        return subprocess.run(['runuser', '-u', 'postgres', '--', pg_platform.bindir(major) + '/psql', '-XAtq',
                               '-h', server['socketdir'], '-p', str(server['port']), '-d', 'postgres', '-c', sql],
                              capture_output=True, text=True, check=True).stdout

    def module(check=False, **args):
        env = sandbox.ansible_env()
        env['PATH'] = '%s:%s' % (tools, env.get('PATH', os.environ['PATH']))
        args.setdefault('data_dir', sandbox.data_dir(0))
        done = subprocess.run([os.path.join(sandbox.BIN, 'ansible'), 'localhost', '-m',
                               'pgforest.cluster.forest_node_pg', '-a', json.dumps(args)]
                              + (['--check'] if check else []),
                              capture_output=True, text=True, env=env, check=False)
        # Not -o: the one-line callback drops the module's warnings, which the DBA sees in a playbook.
        result = json.loads(done.stdout.split(' => ', 1)[1])
        calls = dropped.read_text().splitlines() if dropped.exists() else []
        return result, done.stdout + done.stderr, calls

    yield servers, psql, module
    for server in servers.values():
        subprocess.run(['runuser', '-u', 'postgres', '--', pg_platform.bindir(major) + '/pg_ctl', '-D',
                        server['pgdata'], '-m', 'immediate', 'stop'], capture_output=True, check=False)
    shutil.rmtree(top, ignore_errors=True)


def test_what_a_fresh_server_holds_reads_as_never_used_and_any_use_as_kept(strays):
    servers, psql, _module = strays
    cluster = pg_platform.parse_clusters(json.dumps([servers['main']]))[0]
    assert pg_platform.stray_verdict(cluster, pg_platform.inspect_cluster(cluster)) == \
        ('remove', 'it holds only what initdb made (no user database, role or object)')
    for use, undo, why in (('CREATE TABLE t (i int)', 'DROP TABLE t', '1 relations in postgres'),
                           ('CREATE SCHEMA s', 'DROP SCHEMA s', '1 schemas in postgres'),
                           ('CREATE ROLE app', 'DROP ROLE app', 'roles of its own (app)'),
                           ('CREATE DATABASE shop', 'DROP DATABASE shop', 'user databases (shop)'),
                           ('SELECT lo_create(0)', 'SELECT lo_unlink(oid) FROM pg_largeobject_metadata',
                            '1 large objects in postgres')):
        psql('main', use)
        verdict, reason = pg_platform.stray_verdict(cluster, pg_platform.inspect_cluster(cluster))
        assert (verdict, why in reason) == ('keep', True), (use, reason)
        psql('main', undo)
    # A table dropped again leaves nothing behind in the catalogs: the server reads as never used again.
    assert pg_platform.stray_verdict(cluster, pg_platform.inspect_cluster(cluster))[0] == 'remove'
    # Its port changed in postgresql.conf but not restarted: another (empty) server answers there. It is not
    # the cluster pg_dropcluster would stop and delete, so nothing is judged from it.
    moved = dict(cluster, port=servers['spare']['port'], socketdir=servers['spare']['socketdir'])
    verdict, reason = pg_platform.stray_verdict(moved, pg_platform.inspect_cluster(moved))
    assert verdict == 'keep' and 'is not it (data directory %s)' % servers['spare']['pgdata'] in reason, reason


def test_the_module_removes_the_never_used_server_and_warns_about_the_one_with_data(strays):
    servers, psql, module = strays
    psql('used', 'CREATE DATABASE shop')
    major = servers['main']['version']
    checked, _output, calls = module(check=True, strays='remove')
    assert (checked['changed'], checked['removed'], sorted(checked['kept']), calls) == (
        True, ['%d/main' % major], ['%d/spare' % major, '%d/used' % major], [])

    kept_alone, _output, calls = module(strays='keep')
    assert (kept_alone['changed'], kept_alone['removed'], calls) == (False, [], [])
    assert [entry['action'] for entry in kept_alone['clusters']] == ['untouched'] * 3

    result, output, calls = module(strays='remove')
    assert result['changed'] and result['removed'] == ['%d/main' % major]
    assert sorted(result['kept']) == ['%d/spare' % major, '%d/used' % major]
    assert calls == ['--stop %d main' % major]
    text = ' '.join(output.split())
    assert ('[WARNING]: %d/used (PostgreSQL %d, cluster used, port %d, data directory %s) is a PostgreSQL server beside '
            'the forest node, left as it is: ' % (major, major, servers['used']['port'], servers['used']['pgdata'])
            ) in text, output
    # Empty, but not what the packages make: somebody made it, so it is theirs.
    assert ('%d/spare (PostgreSQL %d, cluster spare, port %d, data directory %s) is a PostgreSQL server beside the '
            'forest node, left as it is: the OS packages did not make it'
            % (major, major, servers['spare']['port'], servers['spare']['pgdata'])) in text, output
    assert psql('used', "SELECT datname FROM pg_database WHERE datname = 'shop'").strip() == 'shop'
    assert psql('spare', 'SELECT 1').strip() == '1'
    assert result['pg_version'] == data_dir_major(0) and result['reason'] == 'running'
