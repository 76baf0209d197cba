"""The row hash and the bucket grouping at the speed of a bare scan (module_utils/sync_hash.py), and
forest_dbsync's `jobs`: differences a weak hash would miss, and several sessions per node hashing
block slices of a big table finding exactly what one session finds."""
import pytest

from pgforest_dev import sandbox

SCHEMA = 'hash jobs'
both, on = sandbox.both, sandbox.on


def dbsync(**args):
    args.setdefault('include', [SCHEMA + '.*'])
    return sandbox.module('forest_dbsync', **args)


def found(result):
    """{table: (missing, extra, changed, rows on source, keys listed)} of a compare."""
    return dict((t['table'], (t['missing'], t['extra'], t['changed'], t.get('rows_source'), t['keys']))
                for t in result['tables'])


@pytest.fixture(autouse=True)
def fresh_schema():
    sandbox.reset_pair()
    both('DROP SCHEMA IF EXISTS "%s" CASCADE; CREATE SCHEMA "%s"' % (SCHEMA, SCHEMA))
    yield
    both('DROP SCHEMA IF EXISTS "%s" CASCADE' % SCHEMA)


@pytest.mark.parametrize('change', [
    # values swapped between two rows of one bucket: per-column hashes XORed over rows would cancel
    'UPDATE "hash jobs".t SET b = CASE id WHEN 1 THEN 2 WHEN 2 THEN 1 END WHERE id IN (1, 2)',
    # values moved between columns of one row
    'UPDATE "hash jobs".t SET a = b, b = a WHERE id = 3',
    # NULL in place of a value, and NULLs moved between columns
    'UPDATE "hash jobs".t SET c = NULL WHERE id = 4',
    "UPDATE \"hash jobs\".t SET c = NULL, d = 'x' WHERE id = 5",
    # one byte of a long text, a bytea, a timestamp with time zone by one microsecond
    "UPDATE \"hash jobs\".t SET d = repeat('y', 5000) || 'z' WHERE id = 6",
    "UPDATE \"hash jobs\".t SET e = '\\x00ff'::bytea WHERE id = 7",
    "UPDATE \"hash jobs\".t SET f = f + interval '1 microsecond' WHERE id = 8",
    # the same number written differently: numeric hashed as its text
    'UPDATE "hash jobs".t SET g = 1.50 WHERE id = 9',
])
def test_the_row_hash_sees_each_change(change):
    both('CREATE TABLE "hash jobs".t (id int PRIMARY KEY, a int, b int, c text, d text, e bytea, f timestamptz, '
         'g numeric, h boolean, u uuid, dt date);'
         "INSERT INTO \"hash jobs\".t SELECT g, g, g % 3, 'x', repeat('y', 5000), '\\x00'::bytea, "
         "'2026-01-01 00:00:00+00'::timestamptz, 1.5, g % 2 = 0, md5(g::text)::uuid, 'infinity' "
         'FROM generate_series(1, 100) g')
    assert dbsync()['equal'] is True
    on(1, change)
    result = dbsync()
    assert result['equal'] is False
    (missing, extra, changed, _rows, _keys), = found(result).values()
    assert (missing, extra) == (0, 0) and changed in (1, 2)


def big_tables():
    """A keyed table of about 16 MB and a keyless one of about 9 MB (several block slices each), drifted."""
    both('CREATE TABLE "hash jobs".big (id bigint PRIMARY KEY, v text);'
         "INSERT INTO \"hash jobs\".big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 100000) g;"
         'CREATE TABLE "hash jobs".heap (v text);'
         "INSERT INTO \"hash jobs\".heap SELECT repeat(md5((g % 5000)::text), 4) FROM generate_series(1, 60000) g;"
         'CREATE TABLE "hash jobs"."Texted Ö" (k text PRIMARY KEY, v int);'
         "INSERT INTO \"hash jobs\".\"Texted Ö\" SELECT 'k' || g, g FROM generate_series(1, 20000) g")
    on(1, 'UPDATE "hash jobs".big SET v = \'changed\' WHERE id % 997 = 0;'
          'DELETE FROM "hash jobs".big WHERE id IN (5, 99999);'
          "INSERT INTO \"hash jobs\".big VALUES (100001, 'extra');"
          'DELETE FROM "hash jobs".heap WHERE ctid IN (SELECT ctid FROM "hash jobs".heap LIMIT 1);'
          'UPDATE "hash jobs"."Texted Ö" SET v = -v WHERE v % 1000 = 0')
    sizes = sandbox.query(0, "SELECT pg_relation_size('\"hash jobs\".big') >> 20, "
                             "pg_relation_size('\"hash jobs\".heap') >> 20", dbname=sandbox.USERDB)[0]
    assert sizes[0] >= 8 and sizes[1] >= 8, 'the tables must be big enough to be sliced: %s MB' % (sizes,)


def test_jobs_find_exactly_what_one_session_finds():
    big_tables()
    one = dbsync(jobs=1)
    assert not one.get('failed'), one.get('msg')
    expected = found(one)
    assert expected['"hash jobs".big'][:3] == (2, 1, 100)
    assert expected['"hash jobs".heap'][2:4] == (0, 60000)  # keyless: one bucket, rows counted
    assert expected['"hash jobs"."Texted Ö"'][:3] == (0, 0, 20)
    for jobs in (2, 3, 7):
        result = dbsync(jobs=jobs)
        assert not result.get('failed'), result.get('msg')
        assert found(result) == expected, 'jobs=%d' % jobs
        assert any('sessions per node' in line for line in result['progress'])
    synced = dbsync(mode='sync', source=0, jobs=3)
    assert not synced.get('failed'), synced.get('msg')
    assert dbsync(jobs=3)['equal'] is True


@pytest.mark.parametrize('jobs', [0, -2, 65])
def test_a_jobs_value_out_of_range_is_refused(jobs):
    result = dbsync(jobs=jobs)
    assert result.get('failed') and 'jobs must' in result['msg'] and 'Nothing was changed' in result['msg']


def test_an_online_compare_with_jobs_hashes_in_the_snapshot_taken_in_the_freeze():
    big_tables()
    result = dbsync(online=True, jobs=3, notice_wait=0.2)
    assert not result.get('failed'), result.get('msg')
    assert found(result)['"hash jobs".big'][:3] == (2, 1, 100)
    assert result['freeze_window'] is not None
