"""An inventory of two pairs (docs/inventory.md: a child group per pair with forest_pair),
each pair with two user databases: provision, status of every pair and database at once, one node
of one pair broken, recover.yml -> every pair healthy and the other untouched.  Two pairs, not more:
each pair provisioned from scratch costs about 35 CPU-s of a saturated make test, and a third adds no
path the second does not take (the broken pair is the first one: the recovery goes on past it to the other)."""
import os
import re

import pytest

from pgforest_dev import pairs, sandbox

COUNT = 2
USERDBS = ('userdb', 'ledger')
BROKEN_PAIR = 0


@pytest.fixture(scope='module')
def inventory():
    path = pairs.write_inventory(COUNT, os.path.join(sandbox.SANDBOX, 'pairs-inventory.yml'), USERDBS)
    try:
        provisioned = pairs.playbook('provision.yml', path)
        assert provisioned.returncode == 0, provisioned.stdout[-3000:]
        yield path
    finally:
        pairs.down(COUNT)
        os.remove(path)


def fingerprint(pair):
    """What a pair holds and how its servers run: content of each database's table, validities, start time."""
    found = []
    for serverid in (0, 1):
        for userdb in USERDBS:
            found += pairs.query(pair, serverid, "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM things t",
                                 dbname=userdb)
            found += pairs.query(pair, serverid, 'SELECT serverid, udb_validity FROM server_info ORDER BY 1',
                                 dbname=userdb + '_pghainfo')
        found += pairs.query(pair, serverid, 'SELECT pg_postmaster_start_time()')
    return found


def status_lines(output):
    """status.yml's table: one line per pair and database, spaces squeezed."""
    found = re.findall(r'"(pair\d +\S+ +\S+ +0=\S+ 1=\S+ +\S+)"', output)
    return sorted(set(' '.join(line.split()) for line in found))


def test_two_pairs_provision_status_break_one_recover(inventory):
    for pair in range(COUNT):
        for serverid in (0, 1):
            for userdb in USERDBS:
                pairs.query(pair, serverid, 'CREATE TABLE things (id int PRIMARY KEY, pair int, db text);'
                            'INSERT INTO things SELECT g, %d, current_database() FROM generate_series(1, 100) g'
                            % pair, dbname=userdb)
    # every pair registered its own servers, same order on both nodes, for each database
    for pair in range(COUNT):
        for serverid in (0, 1):
            for userdb in USERDBS:
                assert pairs.query(pair, serverid, 'SELECT udb_url FROM server_info ORDER BY serverid',
                                   dbname=userdb + '_pghainfo') == [
                    ('%s:5432/%s' % (pairs.address(pair, sid), userdb),) for sid in (0, 1)]
    healthy = pairs.playbook('status.yml', inventory, extra_vars=dict(fail_unless_healthy=True))
    assert healthy.returncode == 0, healthy.stdout[-3000:]
    assert status_lines(healthy.stdout) == sorted('pair%d %s healthy 0=valid 1=valid none' % (pair, userdb)
                                                  for pair in range(COUNT) for userdb in USERDBS)
    untouched = dict((pair, fingerprint(pair)) for pair in range(COUNT) if pair != BROKEN_PAIR)

    # serverid 1 of pair0 crashes; its drivers mark it broken in ledger only (no writes to userdb meanwhile)
    pairs.pg_ctl(BROKEN_PAIR, 1, 'stop', '-m', 'immediate')
    pairs.query(BROKEN_PAIR, 0, 'UPDATE server_info SET udb_validity = -1 WHERE serverid = 1', dbname='ledger_pghainfo')
    pairs.query(BROKEN_PAIR, 0, "INSERT INTO things VALUES (101, %d, 'written while degraded')" % BROKEN_PAIR,
                dbname='ledger')
    degraded = pairs.playbook('status.yml', inventory, extra_vars=dict(fail_unless_healthy=True))
    assert degraded.returncode == 2, degraded.stdout[-2000:]
    assert 'pair pair0 is degraded (not healthy: userdb, ledger)' in degraded.stdout
    lines = status_lines(degraded.stdout)
    assert 'pair0 ledger degraded 0=valid 1=broken(unreachable) online_recovery' in lines, lines
    assert 'pair0 userdb degraded 0=valid 1=valid(unreachable) mark_broken' in lines, lines
    assert 'pair1 ledger healthy 0=valid 1=valid none' in lines, lines

    # online recovery covers both forest databases: userdb is still valid on the target, so it must be named
    refused = pairs.playbook('recover.yml', inventory, extra_vars=dict(notice_wait=0.2))
    assert refused.returncode == 2 and 'userdb: serverid 1 is still valid there' in refused.stdout, \
        refused.stdout[-3000:]
    recovered = pairs.playbook('recover.yml', inventory, extra_vars=dict(notice_wait=0.2, include_valid=['userdb']))
    assert recovered.returncode == 0, recovered.stdout[-4000:]
    assert 'recovered online (basebackup) from serverid 0 (ledger, userdb)' in recovered.stdout
    assert 'Nothing to recover: the pair is healthy (pair1: ' in recovered.stdout
    after = pairs.playbook('status.yml', inventory, extra_vars=dict(fail_unless_healthy=True))
    assert after.returncode == 0, after.stdout[-3000:]
    assert pairs.query(BROKEN_PAIR, 1, 'SELECT db FROM things WHERE id = 101', dbname='ledger') == [
        ('written while degraded',)]
    for pair, before in untouched.items():
        assert fingerprint(pair) == before, 'pair%d changed' % pair
    # every pair and database compared by content, each by its own pair's leader
    compared = pairs.playbook('dbsync.yml', inventory)
    assert compared.returncode == 0, compared.stdout[-3000:]
    assert sorted(re.findall(r'=> EQUAL \((pair\d \w+),', compared.stdout)) == sorted(
        'pair%d %s' % (pair, userdb) for pair in range(COUNT) for userdb in USERDBS)
    # the role admits the applications to every user database of the pair and its management database
    with open(os.path.join(pairs.data_dir(0, 0), 'pg_hba.conf')) as handle:
        hba = handle.read()
    assert 'host    "userdb","userdb_pghainfo","ledger","ledger_pghainfo"    all      127.0.0.1/32' in hba
