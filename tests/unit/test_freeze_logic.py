"""The write freeze's pure rules: what step 0 waits for, and what counts as a write
in the freeze (WAL records by type and relation)."""
from ansible_collections.pgforest.cluster.plugins.module_utils.freeze_writes import (
    changes_data, data_writes, describe_lost, xid32)
from ansible_collections.pgforest.cluster.plugins.module_utils.quiesce import (
    blocking_before_freeze, describe_blockers)


def session(pid, seconds, **extra):
    return dict(dict(pid=pid, open_seconds=seconds, usename='app', application_name='', client_addr=None,
                     state='idle in transaction', query='UPDATE t SET v = 1'), **extra)


def test_step_zero_waits_for_transactions_longer_than_the_notice_and_for_earlier_blockers():
    sessions = [session(1, 0.2), session(2, 45.0), session(3, 1.25), session(4, 0.0)]
    assert [s['pid'] for s in blocking_before_freeze(sessions, 1.25, {})] == [2, 3]
    # pid 4 made an earlier freeze give up: any transaction of it is waited for, however young
    assert [s['pid'] for s in blocking_before_freeze(sessions, 1.25, {4: {}})] == [2, 3, 4]
    assert blocking_before_freeze([], 1.25, {4: {}}) == []
    assert blocking_before_freeze(sessions, 100, {}) == []


def test_blockers_are_named_for_people():
    text = describe_blockers([session(7, 45.0, application_name='nightly batch', client_addr='10.0.0.5')])
    assert text == ('pid 7 app (nightly batch) from 10.0.0.5, idle in transaction, transaction open 45.0s: '
                    'UPDATE t SET v = 1')
    assert 'from local socket' in describe_blockers([session(8, 1.0)])
    assert '(no name)' in describe_blockers([session(8, 1.0)])


def test_only_records_that_change_rows_or_relation_files_count():
    for rmgr, kind in (('Heap', 'INSERT'), ('Heap', 'INSERT+INIT'), ('Heap', 'HOT_UPDATE'), ('Heap', 'UPDATE'),
                       ('Heap', 'DELETE'), ('Heap', 'TRUNCATE'), ('Heap2', 'MULTI_INSERT+INIT'), ('Storage', 'CREATE')):
        assert changes_data(rmgr, kind), (rmgr, kind)
    for rmgr, kind in (('Heap', 'INPLACE'), ('Heap', 'LOCK'), ('Heap2', 'PRUNE'), ('Heap2', 'VACUUM'),
                       ('Heap2', 'FREEZE_PAGE'), ('Heap2', 'VISIBLE'), ('Heap2', 'PRUNE_VACUUM_SCAN'),
                       ('Btree', 'INSERT_LEAF'), ('Standby', 'LOCK'), ('Storage', 'TRUNCATE'), ('XLOG', 'FPI_FOR_HINT'),
                       ('Transaction', 'COMMIT'), ('Sequence', 'LOG'), ('Heap', None)):
        assert not changes_data(rmgr, kind), (rmgr, kind)


def record(rmgr, kind, refs):
    return dict(resource_manager=rmgr, record_type=kind, refs=refs)


def test_statistics_vacuum_and_other_databases_are_not_a_lost_write():
    stats = {16384: {2619, 2840}}
    records = [
        record('Heap', 'HOT_UPDATE', 'blkref #0: rel 1663/16384/2619 fork main blk 3'),       # ANALYZE: pg_statistic
        record('Heap', 'INSERT', 'blkref #0: rel 1663/16384/2840 fork main blk 0'),           # its TOAST
        record('Heap', 'INPLACE', 'blkref #0: rel 1663/16384/1259 fork main blk 1'),          # pg_class counters
        record('Heap2', 'PRUNE', 'blkref #0: rel 1663/16384/16390 fork main blk 7'),          # vacuum
        record('Btree', 'INSERT_LEAF', 'blkref #0: rel 1663/16384/2696 fork main blk 1'),     # statistic's index
        record('Heap', 'INSERT', 'blkref #0: rel 1663/16500/16600 fork main blk 2'),          # another database
        record('Heap', 'INSERT', 'blkref #0: rel 1664/0/1262 fork main blk 0'),               # shared catalog
        record('Transaction', 'COMMIT', ' COMMIT 2026-11-22 11:00:00.000000+00'),
    ]
    assert data_writes(records, [16384], stats) == {}
    rogue = records + [record('Heap', 'INSERT', 'blkref #0: rel 1663/16384/16390 fork main blk 0 off 3'),
                       record('Heap', 'INSERT', 'blkref #0: rel 1663/16384/16390 fork main blk 0 off 4'),
                       record('Storage', 'CREATE', ' base/16700/16800')]
    assert data_writes(rogue, [16384, 16700], stats) == {16384: {16390: 2}, 16700: {16800: 1}}
    assert data_writes(rogue, ['16500'], {}) == {16500: {16600: 1}}
    assert data_writes(rogue, [], stats) == {}


def test_lost_writes_are_named_by_database_and_relation():
    assert describe_lost({'billing': [('public.invoices', 3)], 'userdb': [('t', 1)]}) == \
        'billing: public.invoices (3 WAL records); userdb: t (1 WAL record)'


def test_full_transaction_ids_match_the_32_bit_ids_of_the_wal_and_pg_stat_activity():
    assert xid32(5) == 5
    assert xid32((3 << 32) + 17) == 17
