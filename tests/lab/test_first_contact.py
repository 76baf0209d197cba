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
    started = time.monotonic()
    for serverid in lab.NODES:
        lab.lab('reset', lab.NODES[serverid]['name'])
    assert all(bare(serverid) for serverid in lab.NODES), 'the reset nodes are not bare'
    reset_seconds = time.monotonic() - started

    started = time.monotonic()
    first = lab.playbook('provision.yml')
    provision_seconds = time.monotonic() - started
    assert first.returncode == 0, first.stdout[-4000:]
    started = time.monotonic()
    second = lab.playbook('provision.yml')
    second_seconds = time.monotonic() - started
    assert second.returncode == 0, second.stdout[-4000:]
    assert all(counts['changed'] == 0 for counts in lab.recap(second.stdout).values()), second.stdout[-3000:]

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
    record(what='both nodes reset to the bare image, provision.yml twice over SSH with become, then forest_status '
                'ad hoc on both nodes and status.yml',
           reset_seconds=round(reset_seconds, 1), provision_bare_seconds=round(provision_seconds, 1),
           second_run_seconds=round(second_seconds, 1),
           second_run_changed=sum(counts['changed'] for counts in lab.recap(second.stdout).values()))
