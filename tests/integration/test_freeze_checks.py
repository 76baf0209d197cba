"""The freeze's checks against a real server: the transaction ids another session took (committed or
still open), and what its WAL records changed (freeze_writes)."""
import pytest

from pgforest_dev import sandbox
from ansible_collections.pgforest.cluster.plugins.module_utils import freeze_writes
from ansible_collections.pgforest.cluster.plugins.module_utils.quiesce import OWN_XID_SQL, Quiesce
from ansible_collections.pgforest.cluster.plugins.module_utils.forest_pg import run


@pytest.fixture
def checked_table():
    sandbox.on(0, 'DROP TABLE IF EXISTS freeze_checked; CREATE TABLE freeze_checked (id int PRIMARY KEY, v text);'
                  'INSERT INTO freeze_checked SELECT g, md5(g::text) FROM generate_series(1, 2000) g')
    yield
    sandbox.on(0, 'DROP TABLE IF EXISTS freeze_checked')


def own_xid(conn):
    return run(conn, OWN_XID_SQL)[0]['xid']


def test_a_write_still_open_counts_as_a_transaction_since_the_idle_check():
    """The snapshot's xmax moves only when a transaction ends: it missed a driver's write still open
    at the second look (a false difference in an online compare when the driver commits the target first)."""
    with sandbox.connect(0, sandbox.MNGDB) as watch, sandbox.connect(0, sandbox.USERDB, autocommit=False) as writer:
        freeze = Quiesce({}, [], 1, 0, 1, watch=watch)
        freeze.own_xid = freeze._own_xid()
        assert freeze.wrote_since_idle() is False
        freeze.own_xid = freeze._own_xid()
        writer.execute('CREATE TEMP TABLE w (i int); INSERT INTO w VALUES (1)')  # takes an id, stays open
        assert freeze.wrote_since_idle() is True
        writer.rollback()


def forest_dbs(admin, conn):
    oid = run(admin, 'SELECT oid::int8 AS oid FROM pg_database WHERE datname = %s', [sandbox.USERDB])[0]['oid']
    return {oid: (sandbox.USERDB, conn)}


def test_analyze_and_vacuum_are_not_a_lost_write_and_a_row_is(checked_table):
    with sandbox.connect(0) as admin, sandbox.connect(0, sandbox.USERDB) as user, \
            sandbox.connect(0, sandbox.USERDB) as other:
        dbs = forest_dbs(admin, user)
        position = run(admin, 'SELECT pg_current_wal_lsn()::text AS lsn')[0]['lsn']
        before = own_xid(admin)
        other.execute('DELETE FROM freeze_checked WHERE id > 1900')  # a client's write: 100 rows out
        lost, seen, still_open = freeze_writes.look(admin, before, own_xid(admin), position, dbs)
        assert lost == {sandbox.USERDB: [('freeze_checked', 100)]}, lost
        assert still_open == [] and seen['committed'] == 1
        # statistics and vacuum only
        position = run(admin, 'SELECT pg_current_wal_lsn()::text AS lsn')[0]['lsn']
        before = own_xid(admin)
        other.execute('VACUUM freeze_checked')
        other.execute('ANALYZE freeze_checked')
        other.execute('ANALYZE')
        lost, seen, still_open = freeze_writes.look(admin, before, own_xid(admin), position, dbs)
        assert lost == {} and still_open == [], lost
        assert seen['committed'] >= 2 and seen['wal_records'] > 0, seen


def test_a_transaction_still_open_in_a_forest_database_is_named(checked_table):
    with sandbox.connect(0) as admin, sandbox.connect(0, sandbox.USERDB) as user, \
            sandbox.connect(0, sandbox.USERDB, autocommit=False, application_name='late driver') as late:
        dbs = forest_dbs(admin, user)
        position = run(admin, 'SELECT pg_current_wal_lsn()::text AS lsn')[0]['lsn']
        before = own_xid(admin)
        late.execute("UPDATE freeze_checked SET v = 'late' WHERE id = 1")
        lost, _seen, still_open = freeze_writes.look(admin, before, own_xid(admin), position, dbs)
        assert lost == {}
        assert [(s['application_name'], s['datname']) for s in still_open] == [('late driver', sandbox.USERDB)]
        assert 'late driver' in freeze_writes.describe_open(still_open)
        late.rollback()
    assert sandbox.query(0, "SELECT 1 FROM pg_extension WHERE extname = 'pg_walinspect'") == []
