"""The PostgreSQL of real hosts (issue 28): with no version variable the node runs the major its host
gives (Debian 13: 17, Debian 12: 15), one PostgreSQL server per node (the packages' default cluster
never made, or removed when the DBA's own install made it and it was never used), pgforest-psql
reaches the node, and a server beside the node that holds data is kept and named in a warning."""
import re
import time

import lab

# The postmasters of a host, not their backends ("postgres: 17/main: ..."): the node's, and any other server.
POSTMASTERS = "pgrep -a -f '^/usr/lib/postgresql/[0-9]+/bin/postgres ' || true"


def os_default(serverid):
    """The major Debian's postgresql package depends on, as the node's apt says."""
    out = lab.ssh(serverid, 'apt-cache depends postgresql').stdout
    return int(re.search(r'Depends: postgresql-(\d+)', out).group(1))


def debian(serverid):
    return int(lab.ssh(serverid, 'cut -d. -f1 /etc/debian_version').stdout.strip())


def clusters(serverid):
    """pg_lsclusters as [(version, name)] (Debian's clusters: the node is not one)."""
    out = lab.ssh(serverid, 'pg_lsclusters -h || true').stdout
    return [tuple(line.split()[:2]) for line in out.splitlines() if line.strip()]


def chosen(output, host):
    """The major and reason the role printed for `host`: 'PostgreSQL 17 (os default: ...)'."""
    # ansible.cfg's result_format: yaml ("ok: [node0] =>\n  msg: PostgreSQL 17 (...)"); JSON also read.
    found = re.search(r'ok: \[%s\] =>\s*\{?\s*"?msg"?:\s*"?PostgreSQL (\d+) \(([a-z ]+):' % host, output)
    assert found, output[-3000:]
    return int(found.group(1)), found.group(2)


def test_bare_hosts_get_the_os_major_and_one_server_each(record):
    """node0 bare; on node1 the DBA installed PostgreSQL first, so its package made and started the
    default cluster N/main. One provision: one server per node, the same major on both."""
    started = time.monotonic()
    for serverid in lab.NODES:
        lab.lab('reset', lab.NODES[serverid]['name'])
    lab.ssh(1, 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null',
            timeout=600)
    major = os_default(1)
    assert clusters(1) == [(str(major), 'main')], 'the package made no default cluster: %s' % clusters(1)
    assert 'main' in lab.ssh(1, POSTMASTERS).stdout
    prepared_seconds = time.monotonic() - started

    started = time.monotonic()
    first = lab.playbook('provision.yml')
    provision_seconds = time.monotonic() - started
    assert first.returncode == 0, first.stdout[-4000:]
    assert chosen(first.stdout, 'node0') == (major, 'os default')
    assert chosen(first.stdout, 'node1') == (major, 'installed')
    assert {12: 15, 13: 17}.get(debian(0), major) == major  # Debian 12: 15, Debian 13: 17
    second = lab.playbook('provision.yml')
    assert second.returncode == 0, second.stdout[-4000:]
    assert all(counts['changed'] == 0 for counts in lab.recap(second.stdout).values()), second.stdout[-3000:]
    assert chosen(second.stdout, 'node0') == (major, 'running')

    for serverid in lab.NODES:
        # One PostgreSQL server per node: no default cluster made (node0), the never used one removed (node1).
        assert clusters(serverid) == [], (serverid, clusters(serverid))
        postmasters = lab.ssh(serverid, POSTMASTERS).stdout.strip().splitlines()
        assert len(postmasters) == 1 and '/var/lib/pgforest/node%d/data' % serverid in postmasters[0], postmasters
        assert '/usr/lib/postgresql/%d/bin/postgres' % major in postmasters[0]
        assert 'create_main_cluster = false' in lab.ssh(
            serverid, 'cat /etc/postgresql-common/createcluster.d/pgforest.conf').stdout
        # pgforest-psql reaches the node, as root (it switches to postgres) and as postgres.
        for prefix in ('', 'runuser -u postgres -- '):
            out = lab.ssh(serverid, prefix + "pgforest-psql -XAtc \"SELECT current_user, current_setting("
                                             "'listen_addresses'), current_setting('server_version_num')::int / 10000\""
                                             " userdb")
            assert out.stdout.strip() == 'postgres|%s|%d' % (lab.NODES[serverid]['host'], major), out.stdout
    status = lab.playbook('status.yml', extra_vars=dict(fail_unless_healthy=True))
    assert status.returncode == 0, status.stdout[-3000:]
    record(what='both nodes reset, PostgreSQL installed by hand on node1 (its package made %d/main), '
                'provision.yml twice with no version variable, then status.yml' % major,
           debian=debian(0), major=major, reasons=dict(node0='os default', node1='installed'),
           prepare_seconds=round(prepared_seconds, 1), provision_seconds=round(provision_seconds, 1),
           second_run_changed=sum(counts['changed'] for counts in lab.recap(second.stdout).values()))


def test_a_server_with_data_beside_the_node_is_kept_and_named(pair, record):
    """node1 gets two clusters of its own beside the node: `spare`, never used, is removed; `shop`,
    with a user database, is kept, named in a warning, and its data untouched."""
    major = int(lab.query(1, 'SHOW server_version_num', dbname='postgres')[0][0]) // 10000
    made = []
    try:
        for name, port in (('spare', 5498), ('shop', 5499)):
            lab.ssh(1, 'pg_createcluster %d %s --port %d --start >/dev/null' % (major, name, port), timeout=120)
            made.append(name)
        lab.ssh(1, 'runuser -u postgres -- psql --cluster %d/shop -XAtqc "CREATE DATABASE shop"' % major)
        lab.ssh(1, 'runuser -u postgres -- psql --cluster %d/shop -d shop -XAtqc '
                   '"CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2)"' % major)

        run = lab.playbook('provision.yml')
        assert run.returncode == 0, run.stdout[-4000:]
        text = ' '.join((run.stdout + run.stderr).split())  # Ansible's warnings go to stderr, maybe wrapped
        assert ('%d/shop (PostgreSQL %d, cluster shop, port 5499, data directory /var/lib/postgresql/%d/shop) is a '
                'PostgreSQL server beside the forest node, left as it is: it holds user databases (shop)'
                % (major, major, major)) in text, run.stdout[-3000:]
        assert 'pg_dropcluster --stop %d shop' % major in text
        assert clusters(1) == [(str(major), 'shop')]
        assert lab.ssh(1, 'runuser -u postgres -- psql --cluster %d/shop -d shop -XAtqc "SELECT count(*) FROM orders"'
                       % major).stdout.strip() == '2'

        again = lab.playbook('provision.yml')
        assert again.returncode == 0, again.stdout[-4000:]
        assert all(counts['changed'] == 0 for counts in lab.recap(again.stdout).values()), again.stdout[-3000:]
        assert clusters(1) == [(str(major), 'shop')]
        record(what='node1 with %d/spare (never used) and %d/shop (a user database) beside the node; provision.yml '
                    'twice' % (major, major),
               removed=['%d/spare' % major], kept=['%d/shop' % major],
               second_run_changed=sum(counts['changed'] for counts in lab.recap(again.stdout).values()))
    finally:
        for name in made:
            lab.ssh(1, 'pg_dropcluster --stop %d %s 2>/dev/null || true' % (major, name), check=False)
