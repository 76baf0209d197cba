"""First contact with two bare Debian hosts over SSH: what failed before the
first module ran (LAB.md: no psycopg on the nodes, pg_hba refusing the modules'
own connections, a fresh host's apt cache skipped) must work through the playbooks."""
import time

import pytest

import lab


def bare(serverid):
    """What a freshly built host lacks: PostgreSQL, psycopg, apt's package lists."""
    probe = lab.ssh(serverid, 'ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 && echo pg; '
                              'python3 -c "import psycopg" 2>/dev/null && echo psycopg; '
                              'ls /var/lib/apt/lists | grep -c _Packages || true').stdout.split()
    return probe == ['0']


@pytest.mark.smoke
def test_provision_bare_hosts_then_status(record):
    """node0 bare; on node1 the DBA installed PostgreSQL first, so its package made and started Debian's
    default cluster N/main. With no version variable: the host's major on both, one server per node."""
    started = time.monotonic()
    for serverid in lab.NODES:
        lab.lab('reset', lab.NODES[serverid]['name'])
    assert all(bare(serverid) for serverid in lab.NODES), 'the reset nodes are not bare'
    reset_seconds = time.monotonic() - started
    lab.ssh(1, 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null',
            timeout=600)
    major = lab.os_default(1)
    assert lab.clusters(1) == [(str(major), 'main')], 'the package made no default cluster: %s' % lab.clusters(1)
    assert 'main' in lab.ssh(1, lab.POSTMASTERS).stdout

    started = time.monotonic()
    first = lab.playbook('provision.yml')
    provision_seconds = time.monotonic() - started
    assert first.returncode == 0, first.stdout[-4000:]
    assert lab.chosen(first.stdout, 'node0') == (major, 'os default')
    assert lab.chosen(first.stdout, 'node1') == (major, 'installed')
    assert {12: 15, 13: 17}.get(lab.debian(0), major) == major  # Debian 12: 15, Debian 13: 17
    started = time.monotonic()
    second = lab.playbook('provision.yml')
    second_seconds = time.monotonic() - started
    assert second.returncode == 0, second.stdout[-4000:]
    assert all(counts['changed'] == 0 for counts in lab.recap(second.stdout).values()), second.stdout[-3000:]
    assert lab.chosen(second.stdout, 'node0') == (major, 'running')

    for serverid in lab.NODES:
        # One PostgreSQL server per node: no default cluster made (node0), the never used one removed (node1).
        assert lab.clusters(serverid) == [], (serverid, lab.clusters(serverid))
        postmasters = lab.ssh(serverid, lab.POSTMASTERS).stdout.strip().splitlines()
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

    for serverid in lab.NODES:
        # What the modules need is on the node, and the systemd unit runs PostgreSQL.
        lab.ssh(serverid, 'python3 -c "import psycopg"')
        state = lab.ssh(serverid, 'systemctl is-active pgforest-node%d; systemctl is-enabled pgforest-node%d'
                        % (serverid, serverid)).stdout.split()
        assert state == ['active', 'enabled'], state

    # The module runs on each node and connects to both servers from that node's address.
    adhoc, results = lab.adhoc('forest', 'forest_status', dict(userdb='userdb'))
    assert adhoc.returncode == 0, adhoc.stdout + adhoc.stderr
    assert sorted(results) == ['node0', 'node1'], adhoc.stdout + adhoc.stderr
    assert [(result['cluster_state'], result['userdb']) for result in results.values()] == \
        [('healthy', 'userdb')] * 2, adhoc.stdout
    status = lab.playbook('status.yml', extra_vars=dict(fail_unless_healthy=True))
    assert status.returncode == 0, status.stdout[-3000:]
    assert 'recommended action: none' in status.stdout, status.stdout[-2000:]
    lab.PAIR_PROVISIONED.append(True)  # as the inventory says, twice: the next cases' fixture need not again
    record(what='both nodes reset to the bare image, PostgreSQL installed by hand on node1 (its package made '
                '%d/main), provision.yml twice over SSH with become and no version variable, then forest_status '
                'ad hoc on both nodes and status.yml' % major,
           debian=lab.debian(0), major=major, reasons=dict(node0='os default', node1='installed'),
           reset_seconds=round(reset_seconds, 1), provision_bare_seconds=round(provision_seconds, 1),
           second_run_seconds=round(second_seconds, 1),
           second_run_changed=sum(counts['changed'] for counts in lab.recap(second.stdout).values()))
