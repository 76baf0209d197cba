"""forest_dbsync against the sandbox pair: tricky data, localization, repair, online compare."""
import pytest

from pgforest_dev import sandbox
from pgforest_dev.forest_driver import LOADED_FREEZE_BEYOND_NOTICE, ForestDriver
from pgforest_dev.wait import driver_writes

SCHEMA = 'Sync Tëst'
INCLUDE = [SCHEMA + '.*']


both, on = sandbox.both, sandbox.on


def dbsync(**args):
    args.setdefault('include', INCLUDE)
    return sandbox.module('forest_dbsync', **args)


def shown(name):
    """How results name a table of SCHEMA: each part quoted only where SQL needs it."""
    part = name if name.isascii() and name.isidentifier() and name.islower() else '"%s"' % name.replace('"', '""')
    return '"%s".%s' % (SCHEMA, part)


def table(result, name):
    return [t for t in result['tables'] if t['table'] == shown(name)][0]


def source_fingerprint():
    """Everything of the schema on serverid 0 (data, sequences, columns, constraints),
    to prove the source is never written."""
    ddl = sandbox.query(0, """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = %s AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), NULL, NULL
        FROM pg_constraint WHERE connamespace = %s::regnamespace ORDER BY 1, 2""",
                        [SCHEMA, '"%s"' % SCHEMA], dbname=sandbox.USERDB)
    rows = sandbox.query(0, """
        SELECT c.relname, (xpath('/row/h/text()', query_to_xml(format(
            'SELECT md5(coalesce(string_agg(t::text, %%L ORDER BY t::text), %%L)) AS h FROM (SELECT * FROM %%I.%%I) t',
            '|', '', n.nspname, c.relname), false, false, '')))[1]::text
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'S') ORDER BY 1""", [SCHEMA], dbname=sandbox.USERDB)
    return ddl, rows


@pytest.fixture(autouse=True)
def fresh_schema():
    sandbox.reset_pair()
    both('DROP SCHEMA IF EXISTS "%s" CASCADE; CREATE SCHEMA "%s"' % (SCHEMA, SCHEMA))
    yield
    sandbox.reset_pair()
    both('DROP SCHEMA IF EXISTS "%s" CASCADE' % SCHEMA)


TRICKY = [
    ('text', "'NULL'", 'NULL'),
    ('text', "''", 'NULL'),
    ('float8', "'NaN'", "'Infinity'"),
    ('float8', "'-0'", "'0'"),
    ('float8', "'1e308'", "'-Infinity'"),
    ('float8', '0.1::float8 + 0.2::float8', '0.3'),
    ('numeric', '1.0', '1.00'),
    ('timestamptz', "'2024-03-01 12:00:00+09'", "'2024-03-01 12:00:00+08'"),
    ('interval', "'1 day'", "'24 hours'"),
    ('bytea', "'\\x00ff'", "'\\x00fe'"),
    ('int[]', "'{1,2}'", "'{2,1}'"),
    ('text[]', "'{a,NULL}'", "'{a,\"NULL\"}'"),
    ('jsonb', "'{\"a\": 1}'", "'{\"a\": 2}'"),
    ('json', "'{\"a\":1}'", "'{\"a\": 1}'"),
    ('text', "E'tab\\there\\nnew line'", "E'tab here\\nnew line'"),
    ('text', "E'back\\\\slash'", "'back/slash'"),
    ('text', "'a,b)(\"x'", "'a,b)(x'"),
    ('text', "'日本語'", "'日本后'"),
]


@pytest.mark.parametrize('kind, value, other', TRICKY)
def test_tricky_values_compare_equal_when_equal_and_differ_when_not(kind, value, other):
    both('CREATE TABLE "{s}".t (id int PRIMARY KEY, v {k}); '
         'INSERT INTO "{s}".t VALUES (1, {v}), (2, {o}), (3, NULL)'.format(s=SCHEMA, k=kind, v=value, o=other))
    assert dbsync()['equal'] is True
    on(1, 'UPDATE "{s}".t SET v = {o} WHERE id = 1'.format(s=SCHEMA, o=other))
    result = dbsync()
    found = table(result, 't')
    assert result['equal'] is False
    assert (found['missing'], found['extra'], found['changed']) == (0, 0, 1)
    assert found['keys'] == {'changed': [{'id': '1'}]}


def test_timezone_of_the_servers_does_not_matter():
    both('CREATE TABLE "%s".t (id int PRIMARY KEY, at timestamptz, d date, ts timestamp)' % SCHEMA)
    both("INSERT INTO \"%s\".t VALUES (1, '2024-06-01 00:30:00+00', '2024-06-01', '2024-06-01 00:30')" % SCHEMA)
    on(1, 'ALTER DATABASE userdb SET TimeZone = %s' % "'Asia/Tokyo'")
    on(1, "ALTER DATABASE userdb SET DateStyle = 'SQL, DMY'")
    try:
        assert dbsync()['equal'] is True
    finally:
        on(1, 'ALTER DATABASE userdb RESET TimeZone')
        on(1, 'ALTER DATABASE userdb RESET DateStyle')


def test_row_count_equal_drift_is_found_and_repaired_without_touching_the_source():
    both('CREATE TABLE "{s}".acc (id int PRIMARY KEY, bal int, note text);'
         'INSERT INTO "{s}".acc SELECT g, g * 10, $$n$$ || g FROM generate_series(1, 20000) g;'
         'CREATE SEQUENCE "{s}".ids; SELECT nextval($$"{s}".ids$$)'.format(s=SCHEMA))
    # Same row counts: two rows' values swapped, UPDATEs, one delete + one insert.
    on(1, 'UPDATE "{s}".acc SET bal = CASE id WHEN 10 THEN 200 ELSE 100 END WHERE id IN (10, 20);'
          'UPDATE "{s}".acc SET note = NULL WHERE id BETWEEN 500 AND 502;'
          'DELETE FROM "{s}".acc WHERE id = 7; INSERT INTO "{s}".acc VALUES (20001, 0, $$x$$);'
          'SELECT nextval($$"{s}".ids$$)'.format(s=SCHEMA))
    before = source_fingerprint()
    assert len(before[0]) >= 4 and len(before[1]) == 2, before  # columns + pkey; table + sequence
    result = dbsync()
    acc = table(result, 'acc')
    assert acc['rows_source'] == acc['rows_target'] == 20000
    assert (acc['missing'], acc['extra'], acc['changed']) == (1, 1, 5)
    assert sorted(k['id'] for k in acc['keys']['changed']) == ['10', '20', '500', '501', '502']
    assert result['sequences'][0]['sequence'] == shown('ids')

    synced = dbsync(mode='sync', source=0)
    assert synced['changed'] and table(synced, 'acc')['status'] == 'repaired'
    assert table(synced, 'acc')['method'] == 'keys' and table(synced, 'acc')['rows_copied'] == 6
    assert dbsync()['equal'] is True
    assert source_fingerprint() == before
    assert sandbox.query(1, 'SELECT last_value FROM "%s".ids' % SCHEMA, dbname='userdb') == [(1,)]


def test_check_mode_sync_reports_and_changes_nothing():
    both('CREATE TABLE "%s".t (id int PRIMARY KEY, v int); INSERT INTO "%s".t VALUES (1, 1)' % (SCHEMA, SCHEMA))
    on(1, 'UPDATE "%s".t SET v = 2' % SCHEMA)
    result = dbsync(mode='sync', source=0, check=True)
    assert result['changed'] and table(result, 't')['status'] == 'would_repair'
    assert sandbox.query(1, 'SELECT v FROM "%s".t' % SCHEMA, dbname='userdb') == [(2,)]


def test_structures_generated_partitioned_quoted_fk_cycle_and_no_pk():
    both('''
      CREATE TABLE "{s}"."Mixed Case Ä" ("Key Col" int PRIMARY KEY, "Val""ue" text, g int GENERATED ALWAYS AS
        ("Key Col" * 2) STORED);
      CREATE TABLE "{s}".part (id int, region text, v int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
      CREATE TABLE "{s}".part_a PARTITION OF "{s}".part FOR VALUES IN ('a');
      CREATE TABLE "{s}".part_b PARTITION OF "{s}".part FOR VALUES IN ('b');
      CREATE TABLE "{s}".ca (id int PRIMARY KEY, cb int);
      CREATE TABLE "{s}".cb (id int PRIMARY KEY, ca int REFERENCES "{s}".ca);
      ALTER TABLE "{s}".ca ADD FOREIGN KEY (cb) REFERENCES "{s}".cb;
      CREATE TABLE "{s}".nopk (a int, b text);
      INSERT INTO "{s}"."Mixed Case Ä" VALUES (1, 'x'), (2, 'y');
      INSERT INTO "{s}".part VALUES (1, 'a', 1), (2, 'b', 2);
      INSERT INTO "{s}".ca VALUES (1, NULL); INSERT INTO "{s}".cb VALUES (1, 1); UPDATE "{s}".ca SET cb = 1;
      INSERT INTO "{s}".nopk VALUES (1, 'a'), (1, 'a'), (2, NULL);
    '''.format(s=SCHEMA))
    assert dbsync()['equal'] is True
    on(1, '''
      UPDATE "{s}"."Mixed Case Ä" SET "Val""ue" = 'changed' WHERE "Key Col" = 2;
      UPDATE "{s}".part SET v = 20 WHERE id = 2;
      SET session_replication_role = replica;
      DELETE FROM "{s}".ca; DELETE FROM "{s}".cb;
      SET session_replication_role = DEFAULT;
      DELETE FROM "{s}".nopk WHERE b IS NULL; INSERT INTO "{s}".nopk VALUES (2, 'NULL');
    '''.format(s=SCHEMA))
    result = dbsync()
    statuses = dict((name, table(result, name)['status']) for name in ('Mixed Case Ä', 'part', 'ca', 'cb', 'nopk'))
    assert len(result['tables']) == 5
    assert statuses == {'Mixed Case Ä': 'different', 'part': 'different', 'ca': 'different',
                        'cb': 'different', 'nopk': 'different'}
    assert table(result, 'Mixed Case Ä')['keys'] == {'changed': [{'Key Col': '2'}]}
    assert table(result, 'nopk')['method'] == 'reload'
    synced = dbsync(mode='sync', source=0)
    assert not synced.get('failed'), synced.get('msg')
    assert dbsync()['equal'] is True
    assert sandbox.query(1, 'SELECT g FROM "%s"."Mixed Case Ä" WHERE "Key Col" = 2' % SCHEMA,
                         dbname='userdb') == [(4,)]


def test_schema_differences_are_reported_and_never_synced():
    both('CREATE TABLE "{s}".t (id int PRIMARY KEY, v int); CREATE TABLE "{s}".u (id int PRIMARY KEY)'.format(
        s=SCHEMA))
    on(1, 'ALTER TABLE "%s".t ALTER COLUMN v TYPE bigint' % SCHEMA)
    on(0, 'CREATE TABLE "%s".only_here (id int)' % SCHEMA)
    result = dbsync(mode='sync', source=0)
    assert table(result, 't')['status'] == 'schema_differs'
    assert 'v: integer on source, bigint on target' in table(result, 't')['detail']
    assert table(result, 'only_here')['status'] == 'only_on_source'
    assert result['equal'] is False
    assert sandbox.query(1, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_here'", dbname='userdb') == [(0,)]


def test_column_order_is_a_schema_difference_and_never_synced():
    on(0, 'CREATE TABLE "%s".t (id int PRIMARY KEY, a int, b int)' % SCHEMA)
    on(1, 'CREATE TABLE "%s".t (id int PRIMARY KEY, b int, a int)' % SCHEMA)
    # What a driver sends: the same statement, no column list, to both nodes.
    both('INSERT INTO "%s".t VALUES (1, 10, 20)' % SCHEMA)
    result = dbsync(mode='sync', source=0)
    assert table(result, 't')['status'] == 'schema_differs'
    assert table(result, 't')['detail'].startswith('column order differs: (id, a, b) on source, (id, b, a) on target')
    assert result['equal'] is False and not result['changed']
    assert sandbox.query(1, 'SELECT a, b FROM "%s".t' % SCHEMA, dbname='userdb') == [(20, 10)]


@pytest.mark.parametrize('key_ddl, via', [
    ('code text NOT NULL UNIQUE', 'unique index'),
    ('code text NOT NULL CONSTRAINT "Code Key" UNIQUE', 'unique index'),
    ('code text NOT NULL, CONSTRAINT code_ri UNIQUE (code)', 'replica identity index'),
])
def test_a_unique_not_null_key_localizes_and_repairs_by_that_key(key_ddl, via):
    both('CREATE TABLE "{s}".k (v int, {ddl}, maybe int UNIQUE)'.format(s=SCHEMA, ddl=key_ddl))
    if via == 'replica identity index':
        both('ALTER TABLE "%s".k REPLICA IDENTITY USING INDEX code_ri' % SCHEMA)
    both('INSERT INTO "%s".k SELECT g, \'c\' || g FROM generate_series(1, 2000) g' % SCHEMA)
    on(1, 'UPDATE "{s}".k SET v = -1 WHERE code = \'c7\'; DELETE FROM "{s}".k WHERE code = \'c8\';'
          'INSERT INTO "{s}".k VALUES (0, \'extra\')'.format(s=SCHEMA))
    result = dbsync()
    found = table(result, 'k')
    assert found['status'] == 'different'
    assert found['keys'] == {'changed': [{'code': 'c7'}], 'missing': [{'code': 'c8'}], 'extra': [{'code': 'extra'}]}
    synced = dbsync(mode='sync', source=0)
    assert not synced.get('failed'), synced.get('msg')
    assert table(synced, 'k')['method'] == 'keys' and table(synced, 'k')['rows_copied'] == 2
    assert dbsync()['equal'] is True


def test_a_unique_key_on_one_node_only_is_a_schema_difference():
    both('CREATE TABLE "%s".k (code text NOT NULL, v int)' % SCHEMA)
    on(1, 'ALTER TABLE "%s".k ADD UNIQUE (code)' % SCHEMA)
    found = table(dbsync(), 'k')
    assert found['status'] == 'schema_differs'
    assert found['detail'] == ('row keys differ: no primary key or unique NOT NULL key on source, '
                               'unique index k_code_key (code) on target')


@pytest.mark.parametrize('copy_with', ['psql', 'python'])
def test_scope_all_copy_longer_than_statement_timeout_succeeds(copy_with):
    """Bulk copies are not bounded by statement_timeout (only their lock waits are)."""
    both('CREATE TABLE "%s".big (id int PRIMARY KEY, pad text)' % SCHEMA)
    on(0, 'INSERT INTO "%s".big SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 600000) g' % SCHEMA)
    result = dbsync(mode='sync', scope='all', source=0, copy_with=copy_with, statement_timeout=200, timeout=300)
    assert not result.get('failed'), result.get('msg')
    assert table(result, 'big')['rows_copied'] == 600000
    assert result['summary']['seconds'] > 0.2  # the copy did outlast statement_timeout
    assert dbsync(statement_timeout=200)['equal'] is True


LARGE_OBJECT_ROLE = 'Lo Öwner "x"'


@pytest.fixture
def large_objects():
    """Large objects 424240-424244 on both nodes (removed after the test), and a role to own them."""
    oids = list(range(424240, 424245))
    drop = 'SELECT lo_unlink(oid::oid) FROM unnest(%s::int8[]) AS oid WHERE oid::oid IN ' \
           '(SELECT oid FROM pg_largeobject_metadata)' % ('ARRAY%s' % oids)
    both(drop)
    role = '"%s"' % LARGE_OBJECT_ROLE.replace('"', '""')
    for sid in sandbox.NODES:
        sandbox.query(sid, 'DROP ROLE IF EXISTS %s; CREATE ROLE %s' % (role, role))
    yield oids, role
    both(drop)
    for sid in sandbox.NODES:
        sandbox.query(sid, 'DROP ROLE IF EXISTS %s' % role)


def large_object_state(sid, oids):
    return sandbox.query(sid, 'SELECT m.oid::int8, pg_get_userbyid(m.lomowner), m.lomacl::text, md5(lo_get(m.oid)) '
                              'FROM pg_largeobject_metadata m WHERE m.oid::int8 = ANY(%s) ORDER BY 1', [oids],
                         dbname=sandbox.USERDB)


def test_large_objects_are_compared_and_repaired(large_objects):
    oids, role = large_objects
    big = "(SELECT string_agg(md5(g::text), '')::bytea FROM generate_series(1, 20000) g)"  # 640 kB, 313 pages
    both("SELECT lo_from_bytea(424240, 'same'); SELECT lo_from_bytea(424241, %s);"
         "SELECT lo_from_bytea(424242, 'owner and grants')" % big)
    sandbox.query(0, "SELECT lo_from_bytea(424243, 'only on the source')", dbname=sandbox.USERDB)
    sandbox.query(0, 'ALTER LARGE OBJECT 424242 OWNER TO %s; GRANT SELECT ON LARGE OBJECT 424242 TO %s'
                  % (role, role), dbname=sandbox.USERDB)
    # Same sizes, other content; a hole (sparse object); an extra one; owner and grants not copied.
    on(1, "SELECT lo_put(424241, 600000, 'X'); SELECT lo_put(424240, 0, 'SAME');"
          "SELECT lo_from_bytea(424244, 'only on the target')")
    sandbox.query(0, "SELECT lo_put(424240, 100000, 'sparse')", dbname=sandbox.USERDB)
    result = dbsync(include=['pg_catalog.pg_largeobject'])
    found = [t for t in result['tables'] if t['table'] == 'pg_catalog.pg_largeobject'][0]
    assert found['status'] == 'different' and result['equal'] is False
    assert found['keys'] == {'missing': [{'oid': '424243'}], 'extra': [{'oid': '424244'}],
                             'changed': [{'oid': '424240'}, {'oid': '424241'}, {'oid': '424242'}]}
    assert 'large object 424242: owner %s on source, postgres on target' % LARGE_OBJECT_ROLE in found['detail']
    synced = dbsync(mode='sync', source=0, include=['pg_catalog.pg_largeobject'])
    assert not synced.get('failed'), synced.get('msg')
    assert synced['changed'] and synced['tables'][0]['rows_copied'] == 4
    assert large_object_state(1, oids) == large_object_state(0, oids)
    assert sandbox.query(1, "SELECT lo_get(424240, 100000, 6)", dbname=sandbox.USERDB) == [(b'sparse',)]
    assert dbsync(include=['pg_catalog.pg_largeobject'])['equal'] is True
    again = dbsync(mode='sync', source=0, include=['pg_catalog.pg_largeobject'])
    assert again['changed'] is False


def test_a_failing_table_is_rolled_back_and_the_report_says_which():
    both('CREATE TABLE "{s}".a1 (id int PRIMARY KEY, v int); CREATE TABLE "{s}".b2 (id int PRIMARY KEY, v int);'
         'CREATE TABLE "{s}".c3 (id int PRIMARY KEY, v int);'
         'INSERT INTO "{s}".a1 VALUES (1, 1); INSERT INTO "{s}".b2 VALUES (1, 1), (2, 5);'
         'INSERT INTO "{s}".c3 VALUES (1, 1)'.format(s=SCHEMA))
    on(1, 'UPDATE "{s}".a1 SET v = 9; DELETE FROM "{s}".b2 WHERE id = 2; UPDATE "{s}".b2 SET v = 2;'
          'ALTER TABLE "{s}".b2 ADD CHECK (v < 5); UPDATE "{s}".c3 SET v = 9'.format(s=SCHEMA))
    result = dbsync(mode='sync', source=0)
    assert result.get('failed')
    assert [table(result, name)['status'] for name in ('a1', 'b2', 'c3')] == ['repaired', 'failed', 'different']
    assert 'untouched' in result['msg']
    assert sandbox.query(1, 'SELECT id, v FROM "%s".b2 ORDER BY id' % SCHEMA, dbname='userdb') == [(1, 2)]
    assert sandbox.query(1, 'SELECT v FROM "%s".a1' % SCHEMA, dbname='userdb') == [(1,)]


@pytest.mark.parametrize('copy_with, method', [('psql', 'reload (psql)'), ('python', 'reload')])
def test_scope_all_copies_everything(copy_with, method):
    both('CREATE TABLE "{s}".t (id int PRIMARY KEY, v int); CREATE TABLE "{s}".r (id int REFERENCES "{s}".t)'.format(
        s=SCHEMA))
    on(0, 'INSERT INTO "{s}".t SELECT g, g FROM generate_series(1, 1000) g; INSERT INTO "{s}".r VALUES (5)'.format(
        s=SCHEMA))
    on(1, 'INSERT INTO "%s".t VALUES (5000, 1)' % SCHEMA)
    result = dbsync(mode='sync', scope='all', source=0, copy_with=copy_with)
    assert not result.get('failed'), result.get('msg')
    assert table(result, 't')['status'] == 'repaired' and table(result, 't')['rows_copied'] == 1000
    assert table(result, 't')['method'] == method and table(result, 't')['bytes_copied'] > 1000 * 8
    assert dbsync()['equal'] is True


def test_piped_copy_that_fails_leaves_the_table_untouched():
    both('CREATE TABLE "%s".t (id int PRIMARY KEY, v int)' % SCHEMA)
    on(0, 'INSERT INTO "%s".t SELECT g, g FROM generate_series(1, 1000) g' % SCHEMA)
    on(1, 'INSERT INTO "{s}".t VALUES (1, 1); ALTER TABLE "{s}".t ADD CHECK (v < 500)'.format(s=SCHEMA))
    result = dbsync(mode='sync', scope='all', source=0, copy_with='psql')
    assert result.get('failed') and table(result, 't')['status'] == 'failed'
    assert 'violates check constraint' in table(result, 't')['detail']
    assert sandbox.query(1, 'SELECT id, v FROM "%s".t' % SCHEMA, dbname='userdb') == [(1, 1)]


def test_offline_compare_refuses_while_applications_are_connected():
    both('CREATE TABLE "%s".t (id int PRIMARY KEY)' % SCHEMA)
    node = sandbox.NODES[1]
    with sandbox.psycopg.connect(host=node['host'], port=node['port'], user='postgres', dbname='userdb',
                                 password=sandbox.password(), application_name='some-app'):
        result = dbsync()
    assert result.get('failed') and 'some-app' in result['msg'] and 'online=true' in result['msg']


@pytest.mark.parametrize('args, message', [
    ({'mode': 'sync'}, 'say which node is the source'),
    ({'source': 1, 'target': 1}, 'give two different nodes'),
    ({'mode': 'sync', 'online': True, 'source': 0}, 'online=true is for mode=compare'),
    ({'reload_fraction': 0}, 'reload_fraction must be above 0'),
    ({'mode': 'resync'}, 'value of mode must be one of'),
])
def test_bad_input_is_refused(args, message):
    result = dbsync(**args)
    assert result.get('failed') and message in result['msg'], result.get('msg')


@pytest.fixture
def driver():
    both('DROP TABLE IF EXISTS public.forest_load, public.forest_load_items')
    nodes = sandbox.driver_nodes()
    with sandbox.connect(0, sandbox.MNGDB) as conn:
        conn.execute("UPDATE global_config SET value = '1' WHERE key = 'mngdb_read_duration'")
    load = ForestDriver(nodes, sandbox.USERDB, sandbox.password(), read_duration=1.0).start()
    yield load
    load.stop()
    both('DROP TABLE IF EXISTS public.forest_load, public.forest_load_items')


def test_online_compare_under_write_load_finds_no_false_difference(driver):
    driver_writes(driver)  # the load is on before the compare starts
    result = dbsync(online=True, include=['public.forest_load*'], notice_wait=1.2)
    assert not result.get('failed'), result.get('msg')
    driver_writes(driver)  # the driver kept writing after the freeze
    assert result['equal'] is True, result['tables']
    assert result['freeze_window'] <= 1.2 + LOADED_FREEZE_BEYOND_NOTICE
    assert driver.suppressed_waits > 0, 'the driver saw the freeze'
    assert not driver.errors
    assert [row[0] for row in sandbox.mngdb_rows(0, 'server_info')] == [0, 1]
    assert [row[2] for row in sandbox.mngdb_rows(1, 'server_info')] == [1, 1]


def test_target_connection_lost_midway_leaves_each_table_repaired_or_untouched():
    both('CREATE TABLE "{s}".a1 (id int PRIMARY KEY, v int); CREATE TABLE "{s}".b2 (id int PRIMARY KEY, v int);'
         'CREATE TABLE "{s}".c3 (id int PRIMARY KEY, v int);'
         'INSERT INTO "{s}".a1 VALUES (1, 1); INSERT INTO "{s}".b2 SELECT g, g FROM generate_series(1, 500) g;'
         'INSERT INTO "{s}".c3 VALUES (1, 1)'.format(s=SCHEMA))
    # The target dies under the sync while it copies b2: an ALWAYS trigger fires even in replica mode.
    on(1, '''UPDATE "{s}".a1 SET v = 9; DELETE FROM "{s}".b2 WHERE id > 100; UPDATE "{s}".c3 SET v = 9;
             CREATE FUNCTION "{s}".die() RETURNS trigger LANGUAGE plpgsql AS
               $$BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END$$;
             CREATE TRIGGER die BEFORE INSERT ON "{s}".b2 FOR EACH ROW EXECUTE FUNCTION "{s}".die();
             ALTER TABLE "{s}".b2 ENABLE ALWAYS TRIGGER die;'''.format(s=SCHEMA))
    result = dbsync(mode='sync', source=0)
    assert result.get('failed')
    assert [table(result, name)['status'] for name in ('a1', 'b2', 'c3')] == ['repaired', 'failed', 'different']
    assert 'untouched' in result['msg']
    assert sandbox.query(1, 'SELECT v FROM "%s".a1' % SCHEMA, dbname='userdb') == [(1,)]
    assert sandbox.query(1, 'SELECT count(*) FROM "%s".b2' % SCHEMA, dbname='userdb') == [(100,)]
    assert sandbox.query(1, 'SELECT v FROM "%s".c3' % SCHEMA, dbname='userdb') == [(9,)]


def test_a_hung_node_is_refused_in_words_not_a_dict():
    import os
    import signal
    pid = sandbox.postmaster_pid(1)
    os.kill(pid, signal.SIGSTOP)
    try:
        result = dbsync(connect_timeout=1)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert result.get('failed')
    assert result['msg'].startswith('both nodes must answer to be compared: serverid 1 ('), result['msg']
    assert 'what to do:' in result['msg'] and "{'" not in result['msg'] and 'Nothing was read' in result['msg']


def test_online_compare_never_reports_a_write_that_straddles_its_snapshots():
    """A writer that ignores the freeze (a driver too slow to see it) writes both nodes in one
    transaction each and commits them only when both are written, as a PostgresForest driver does,
    back to back. The snapshots must never see its write on one node and not the other: the compare
    retries them, or fails saying so -- never a false difference. (A client that commits one node
    before it writes the other is no driver: for a moment the nodes really differ, and no look at
    either node can tell that moment from a real difference; the freeze is what keeps drivers out.)"""
    import threading
    both('CREATE TABLE "{s}".w (id bigint PRIMARY KEY)'.format(s=SCHEMA))
    stop = threading.Event()

    def write():
        conns = [sandbox.connect(sid, sandbox.USERDB, autocommit=False) for sid in (0, 1)]
        n = 0
        while not stop.is_set():
            n += 1
            for conn in conns:
                conn.execute('INSERT INTO "%s".w VALUES (%%s)' % SCHEMA, [n])
            for conn in conns:
                conn.commit()
            stop.wait(0.004)
        for conn in conns:
            conn.close()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        results = [dbsync(online=True, notice_wait=0.01, idle_wait_timeout=5) for _run in range(8)]
    finally:
        stop.set()
        writer.join(5)
    for result in results:
        if result.get('failed'):  # the writer never let a freeze hold: said so, nothing compared
            assert 'kept writing' in result['msg'] or 'quiesce timed out' in result['msg'], result['msg']
        else:
            assert result['equal'] is True, result['tables']
            assert result['freeze']['window'] <= 0.01 + 1.0 + 0.3, result['freeze']
    assert any(not result.get('failed') for result in results)
    # the writer did straddle them (the retry ran), so equal above means the retry works
    assert any('taking them again' in line for result in results for line in result.get('progress', []))


def test_online_compare_works_beside_another_database_that_writes():
    """The straddle check counts the server's transaction ids, every database's: a moderately busy other
    database (about 40 transactions a second) costs a retry now and then, never the compare."""
    import threading
    both('CREATE TABLE "{s}".t (id int PRIMARY KEY); INSERT INTO "{s}".t SELECT generate_series(1, 100)'.format(
        s=SCHEMA))
    stop = threading.Event()
    writes = []

    def write():
        with sandbox.connect(0, 'postgres') as conn:
            conn.execute('CREATE TEMP TABLE busy (n int)')
            while not stop.is_set():
                conn.execute('INSERT INTO busy VALUES (1)')
                writes.append(1)
                stop.wait(0.025)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        results = [dbsync(online=True, notice_wait=0.01) for _run in range(3)]
    finally:
        stop.set()
        writer.join(5)
    assert len(writes) > 20
    for result in results:
        assert not result.get('failed'), result['msg']
        assert result['equal'] is True
