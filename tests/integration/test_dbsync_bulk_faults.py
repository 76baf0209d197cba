"""Whole-table reloads (forest_dbsync mode=sync scope=all) when one side of the copy fails
(issue 26, finding 6): a lock held on the target table, a VACUUM or autovacuum on it, the source
session killed mid-copy.  Each ends within seconds, with an error naming what failed, or
succeeds; the target table is left as it was on failure; nothing is left running.

Every wait here is for an observable event (a session seen waiting for its lock, a COPY seen
running); the numbers are upper bounds on how long that event may take, never sleeps."""
import os
import signal
import subprocess
import threading
import time

import psycopg
import pytest

from pgforest_dev import REPO, sandbox
from pgforest_dev.wait import wait_for

SCHEMA = 'bulk_faults'
TABLE = SCHEMA + '.t'
GATE = SCHEMA + '.a_gate'
TOOL = 'pgforest.cluster'  # the application_name of every session of the collection
# statement_timeout given to the module; the bulk sessions' lock_timeout is then the larger of
# it and the server's deadlock_timeout (1 s) + 3 s (forest_pg.bulk_lock_timeout): 4 s.
STATEMENT_TIMEOUT = 2000
LOCK_TIMEOUT = 4.0
# Upper bounds on how long an event may take on a loaded machine.
EVENT = 60
HANG = 90  # a module still running after this has hung (the bug: it never ended)

on, both = sandbox.on, sandbox.both
OIDS = {}  # table: its oid on serverid 1 (read before a reload starts)


def measured(what, seconds):
    """A figure for the run's report (pytest -rA shows it)."""
    print('measured: %s: %s s' % (what, seconds))


@pytest.fixture(autouse=True)
def fresh_schema():
    sandbox.reset_pair()
    both('DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s' % (SCHEMA, SCHEMA))
    yield
    both('DROP SCHEMA IF EXISTS %s CASCADE' % SCHEMA)
    sandbox.reset_pair()


# Rows on the source: its COPY output (about 15 MB) is far more than the pipes and the module's own
# buffer hold, so a source side nobody reads any more blocks, as in production.
ROWS = 300000
SUM = ROWS * (ROWS + 1) // 2


def tables(source_rows, target_rows):
    """The same table on both nodes, different content: serverid 0 has source_rows rows, 1 target_rows."""
    both('CREATE TABLE %s (id int PRIMARY KEY, pad text)' % TABLE)
    on(0, "INSERT INTO %s SELECT g, md5(g::text) FROM generate_series(1, %d) g" % (TABLE, source_rows))
    on(1, "INSERT INTO %s SELECT g, 'target' FROM generate_series(1, %d) g" % (TABLE, target_rows))


def content(serverid):
    return sandbox.query(serverid, "SELECT count(*), coalesce(sum(id), 0), count(*) FILTER (WHERE pad = 'target') "
                                   "FROM %s" % TABLE, dbname=sandbox.USERDB)[0]


class Sync(object):
    """forest_dbsync mode=sync scope=all from serverid 0, run in the background (a hung run and its psql
    children can be ended by the test)."""

    def __init__(self, **args):
        args = dict(dict(mode='sync', scope='all', source=0, include=[SCHEMA + '.*'], copy_with='psql',
                         statement_timeout=STATEMENT_TIMEOUT), **args)
        cmd, env = sandbox.module_command('forest_dbsync', **args)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                     cwd=REPO)
        self.ended = None

    def result(self, timeout=HANG):
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError('forest_dbsync hung: still running %d s after it started' % timeout)
        self.ended = time.monotonic()
        return sandbox.module_result('forest0', subprocess.CompletedProcess(self.proc.args, self.proc.returncode,
                                                                            out, err), 'forest_dbsync')

    def kill(self):
        """End a run that hung, and every process it started (its psql children too)."""
        if self.proc.poll() is None:
            for pid in [self.proc.pid] + descendants(self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.communicate()


def descendants(pid):
    """The pids of every process below pid (from /proc's parent pids)."""
    parents = {}
    for entry in os.listdir('/proc'):
        try:
            with open('/proc/%s/stat' % entry) as handle:
                parents[int(entry)] = int(handle.read().rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


@pytest.fixture
def background():
    runs = []

    def start(**args):
        runs.append(Sync(**args))
        return runs[-1]
    yield start
    for run in runs:
        run.kill()


def wait_seen(what, probe, timeout=EVENT, sync=None):
    """probe()'s first true value (pgforest_dev.wait.wait_for); fails at once if the module (sync)
    has ended without the event."""
    def seen():
        found = probe()
        if not found and sync is not None and sync.proc.poll() is not None:
            raise AssertionError('forest_dbsync ended before %s: %s' % (what, sync.result()))
        return found
    return wait_for(what, seen, timeout, interval=0.02)


def tool_sessions(serverid, where='true'):
    return sandbox.query(serverid, 'SELECT pid, state, wait_event_type, left(query, 60) FROM pg_stat_activity '
                                   'WHERE application_name = %s AND ' + where, [TOOL])


def psql_children():
    return sandbox.own_processes(r"psql .*application_name='%s'" % TOOL)


def assert_nothing_left_running():
    """No psql of the module, no session of the tool on either server (their backends end a moment
    after the client: waited for, bounded)."""
    assert psql_children() == []
    wait_seen('no session of %s on either server' % TOOL,
              lambda: not tool_sessions(0) and not tool_sessions(1), timeout=10)


def waiting_for_lock(name=TABLE):
    """The pid of the tool's session on serverid 1 waiting for a lock on table `name`, or None.
    Looked up from the database postgres: a session of the test on userdb would be an application
    to the module's check."""
    relation = OIDS.get(name) or OIDS.setdefault(name, sandbox.query(
        1, 'SELECT %s::regclass::oid', [name], dbname=sandbox.USERDB)[0][0])
    rows = sandbox.query(1, 'SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid '
                            'WHERE NOT l.granted AND l.relation = %s AND a.datname = %s AND a.application_name = %s',
                         [relation, sandbox.USERDB, TOOL])
    return rows[0][0] if rows else None


class Gate(object):
    """A table the reload copies before TABLE (GATE sorts first), held by a session the module does
    not count as an application (as it does not count autovacuum): the reload waits there, past
    its check that no application is connected, until open() lets it go on to TABLE.  A client
    that connects meanwhile and takes TABLE (which the check would have refused) is the case."""

    def __init__(self):
        both('DROP TABLE IF EXISTS {0}; CREATE TABLE {0} (id int PRIMARY KEY)'.format(GATE))
        OIDS.clear()
        for name in (GATE, TABLE):
            waiting_for_lock(name)  # reads the oids now, before the reload
        on(0, 'INSERT INTO %s SELECT generate_series(1, 10)' % GATE)
        self.conn = sandbox.connect(1, sandbox.USERDB, application_name=TOOL)
        self.conn.execute('BEGIN')
        self.conn.execute('LOCK TABLE %s IN ACCESS SHARE MODE' % GATE)

    def reached(self, sync):
        wait_seen('the reload waiting at the gate', lambda: waiting_for_lock(GATE), sync=sync)

    def open(self):
        self.conn.close()  # ends its transaction


@pytest.fixture
def gates():
    made = []

    def make():
        made.append(Gate())
        return made[-1]
    yield make
    for gate in made:
        gate.open()


def client_locks_the_table_during_the_reload(background, gates, **args):
    """(the reload, the connection of a client that took TABLE in ACCESS SHARE mode while it ran)."""
    gate = gates()
    sync = background(**args)
    gate.reached(sync)
    holder = sandbox.connect(1, sandbox.USERDB)  # psycopg: application_name unset
    holder.execute('BEGIN')
    holder.execute('LOCK TABLE %s IN ACCESS SHARE MODE' % TABLE)
    gate.open()
    return sync, holder


@pytest.mark.parametrize('copy_with', ['psql', 'python'])
def test_a_lock_held_past_lock_timeout_ends_the_reload_naming_its_holder(background, gates, copy_with):
    tables(ROWS, 10)
    before = content(1)
    sync, holder = client_locks_the_table_during_the_reload(background, gates, copy_with=copy_with)
    with holder:
        wait_seen('the reload waiting for its lock', waiting_for_lock, sync=sync)
        seen = time.monotonic()
        result = sync.result()
        measured('lock held: lock wait seen to the module\'s end (%s)' % copy_with, round(sync.ended - seen, 2))
        assert result.get('failed'), result
        message = result['msg']
        print('message: %s' % message)
        pid = holder.info.backend_pid
        assert 'pid %d (application_name unset, client 127.0.0.' % pid in message, message
        assert 'holding AccessShareLock' in message and 'idle in transaction' in message, message
        assert 'LOCK TABLE %s IN ACCESS SHARE MODE' % TABLE in message, message
        assert 'waited 4s (lock_timeout) for AccessExclusiveLock on %s' % TABLE in message, message
        assert 'the target table was left as it was' in message and 'pg_terminate_backend' in message, message
        assert 'Traceback' not in message
        # It ended when its lock wait did (4 s), not later.
        assert sync.ended - seen < LOCK_TIMEOUT + 10
        assert content(1) == before
        assert holder.execute('SELECT count(*) FROM %s' % TABLE).fetchone()[0] == before[0]  # still holding it
    assert_nothing_left_running()

    # Released before lock_timeout: the reload waits for it, then succeeds.
    sync, holder = client_locks_the_table_during_the_reload(background, gates, copy_with=copy_with)
    with holder:
        wait_seen('the reload waiting for its lock', waiting_for_lock, sync=sync)
        holder.execute('COMMIT')
        result = sync.result()
    assert not result.get('failed'), result.get('msg')
    assert content(1) == content(0) == (ROWS, SUM, 0)
    assert_nothing_left_running()


VACUUM_EVERY_PAGE = 'VACUUM (DISABLE_PAGE_SKIPPING) %s'


def test_a_long_vacuum_on_the_target_table_ends_the_reload_in_seconds_naming_it(background, gates):
    """A manual VACUUM holds SHARE UPDATE EXCLUSIVE for as long as it runs, which blocks TRUNCATE,
    and unlike autovacuum it does not give way: lock_timeout, and an error naming it."""
    tables(ROWS, 200000)
    # Autovacuum may clean the table first (the DELETE passes its threshold), leaving every page
    # all-visible: a VACUUM that skips them ends in a second (seen once in CI). So autovacuum stays
    # off this table, and the VACUUM reads every page anyway.
    on(1, 'ALTER TABLE %s SET (autovacuum_enabled = off)' % TABLE)
    on(1, 'DELETE FROM %s WHERE id %% 2 = 0' % TABLE)  # work for the VACUUM
    before = content(1)
    gate = gates()
    sync = background()
    gate.reached(sync)
    vacuum = sandbox.connect(1, sandbox.USERDB)
    vacuum_pid = vacuum.info.backend_pid
    # One page per 100 ms: it takes minutes, unless cancelled.
    vacuum.execute('SET vacuum_cost_delay = 100; SET vacuum_cost_limit = 1')
    failures = []

    def run_vacuum():
        try:
            vacuum.execute(VACUUM_EVERY_PAGE % TABLE)
        except psycopg.errors.QueryCanceled:
            pass
        except psycopg.Error as exc:
            failures.append(exc)
    thread = threading.Thread(target=run_vacuum)
    thread.start()
    try:
        wait_seen('the VACUUM running', lambda: sandbox.query(
            1, 'SELECT 1 FROM pg_stat_progress_vacuum WHERE pid = %s', [vacuum_pid]))
        gate.open()
        wait_seen('the reload waiting for its lock', waiting_for_lock, sync=sync)
        seen = time.monotonic()
        result = sync.result()
        measured('manual VACUUM: lock wait seen to the module\'s end', round(sync.ended - seen, 2))
        # When the reload got its lock after all, say where the VACUUM was (it should still be sleeping).
        assert result.get('failed'), (result.get('progress'), failures, sandbox.query(
            1, 'SELECT state, wait_event_type, wait_event, backend_xid FROM pg_stat_activity WHERE pid = %s',
            [vacuum_pid]), sandbox.query(1, 'SELECT phase, heap_blks_scanned, heap_blks_total '
                                            'FROM pg_stat_progress_vacuum WHERE pid = %s', [vacuum_pid]))
        message = result['msg']
        print('message: %s' % message)
        assert 'pid %d (' % vacuum_pid in message and VACUUM_EVERY_PAGE % TABLE in message, message
        assert 'holding ShareUpdateExclusiveLock' in message, message
        assert sync.ended - seen < LOCK_TIMEOUT + 10
        assert content(1) == before
    finally:
        sandbox.query(1, 'SELECT pg_cancel_backend(%s)', [vacuum_pid])
        thread.join(EVENT)
        vacuum.close()
    assert not failures
    assert_nothing_left_running()


@pytest.fixture
def eager_autovacuum():
    """Autovacuum on serverid 1 looks at each database every second (put back afterwards)."""
    sandbox.query(1, "ALTER SYSTEM SET autovacuum_naptime = '1s'")
    sandbox.query(1, 'SELECT pg_reload_conf()')
    yield
    sandbox.query(1, 'ALTER SYSTEM RESET autovacuum_naptime')
    sandbox.query(1, 'SELECT pg_reload_conf()')


def test_autovacuum_on_the_target_table_gives_way_to_the_reload(background, eager_autovacuum):
    """A statement_timeout below deadlock_timeout (500 ms < 1 s) no longer makes the reload give up
    before autovacuum is asked to give way (which a lock request does after deadlock_timeout)."""
    tables(ROWS, 200000)
    # A slow autovacuum of this table only (the same throttle as above), with work to do.
    on(1, 'ALTER TABLE %s SET (autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1, '
          'autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0, '
          'autovacuum_analyze_threshold = 2000000000)' % TABLE)
    on(1, 'DELETE FROM %s WHERE id %% 2 = 0' % TABLE)
    worker = wait_seen('autovacuum of the table', lambda: sandbox.query(
        1, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'autovacuum worker' AND query LIKE %s",
        ['autovacuum: VACUUM %s%%' % TABLE]))[0][0]
    sync = background(statement_timeout=500)
    result = sync.result()
    measured('autovacuum: the reload took (s)', round(sync.ended - sync.started, 2))
    assert not result.get('failed'), result.get('msg')
    assert content(1) == content(0) == (ROWS, SUM, 0)
    assert not sandbox.query(1, 'SELECT 1 FROM pg_stat_activity WHERE pid = %s AND query LIKE %s',
                             [worker, 'autovacuum: VACUUM %s%%' % TABLE])  # it gave way
    assert_nothing_left_running()


def test_the_source_killed_mid_copy_leaves_the_target_as_it_was(background):
    tables(ROWS, 10)
    # The target takes rows slowly (a CHECK that sleeps every 1000 rows: 6 s for the table), so
    # the copy is seen running on both sides, the source blocked writing to the pipe.
    on(1, "CREATE FUNCTION %s.slow_ok(id int) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN "
          "IF id %% 1000 = 0 THEN PERFORM pg_sleep(0.02); END IF; RETURN true; END $$" % SCHEMA)
    on(1, 'ALTER TABLE %s ADD CONSTRAINT slow CHECK (%s.slow_ok(id))' % (TABLE, SCHEMA))
    before = content(1)
    sync = background()
    source = wait_seen('the source COPY running', lambda: tool_sessions(0, "query LIKE 'COPY %%TO STDOUT%%'"),
                       sync=sync)[0][0]
    wait_seen('rows arriving on the target', lambda: sandbox.query(
        1, 'SELECT 1 FROM pg_stat_progress_copy WHERE tuples_processed > 0'), sync=sync)
    assert sandbox.query(0, 'SELECT pg_terminate_backend(%s)', [source])[0][0]
    killed = time.monotonic()
    result = sync.result()
    measured('source killed: pg_terminate_backend to the module\'s end', round(sync.ended - killed, 2))
    assert result.get('failed'), result
    assert content(1) == before  # not the rows that got through
    message = result['msg']
    print('message: %s' % message)
    assert 'the source side (serverid 0, COPY TO STDOUT) failed first: psql exited' in message, message
    assert 'connection' in message, message  # psql's words for its session ended under it
    assert 'the target side (serverid 1, COPY FROM STDIN) was stopped' in message, message
    assert 'Traceback' not in message
    assert sync.ended - killed < 10
    assert_nothing_left_running()
