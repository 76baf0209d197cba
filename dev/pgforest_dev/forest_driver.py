"""A small stand-in for the PostgresForest JDBC driver.

It reads server_info every mngdb_read_duration seconds (global_config, read again at every
read as the JDBC driver does; `read_duration` until the first read; 0 or less stops the polling
for good, guide §10.2.1) and, unless listen=False, at once on NOTIFY,
writes each transaction to every valid node (commits them one after the
other), starts none while a node is 0, and on an error whose SQLSTATE starts
with one of broken_error_prefix marks that node -1 in the management databases
and writes a broken_log_detail row.  It counts every write it had acknowledged.
"""
import argparse
import json
import os
import signal
import threading
import time
import uuid

import psycopg

from pgforest_dev.wait import TIMEOUT, wait_for

# How far beyond its notice a write freeze may last in the cases that run on a saturated machine (make test's
# timing cases, with CPU hogs beside its other chains; the lab's upgrade).  A freeze lasts the notice plus about
# 1 s on a machine with cycles to spare (docs/recovery.md, bench/recovery_bench.py); at a load average of 8 to 13
# on 2 cores that second stretches: measured 2.32 s with a notice of 1.25 s (a resync's cut, which applies every
# subscription up to the source's position, the sequences and the management databases inside the freeze) and
# 2.41 s (a physical copy's, test_mess.py, after a 45-s batch transaction), and 3.05 s for one freeze over two
# databases (test_many_userdbs.py, whose bound was a literal 3 s before every timing case took this one).
LOADED_FREEZE_BEYOND_NOTICE = 2.0

LOAD_DDL = """
CREATE TABLE IF NOT EXISTS {table} (id bigserial PRIMARY KEY, payload text NOT NULL);
CREATE TABLE IF NOT EXISTS {table}_items (load_id bigint NOT NULL, n int NOT NULL, PRIMARY KEY (load_id, n));
"""


class ForestDriver(object):
    def __init__(self, nodes, userdb, password, read_duration=1.0, pause=0.002,
                 broken_prefixes=('08', '53', '57P', '3D'), table='forest_load', listen=True, reverse=False):
        self.nodes = nodes  # {serverid: (host, port)}
        # Each application its own tables (and sequence), so two drivers never interleave ids.
        self.table = table
        self.userdb = userdb
        self.mngdb = userdb + '_pghainfo'
        self.password = password
        self.read_duration = read_duration
        self.polling = True       # False for good once mngdb_read_duration was 0 or less
        self.listen = listen      # the JDBC driver only polls; NOTIFY is this stand-in's extra
        self.read_durations = []  # (monotonic time, seconds) each time the interval changed
        self.pause = pause
        self.broken_prefixes = broken_prefixes
        self.validity = {}
        self.acked = []       # ids acknowledged to the "application"
        self.acked_on = {}    # {(serverid, ...): writes acknowledged after committing on exactly those nodes}
        self.ack_times = []   # monotonic time of each acknowledgement (longest_gap)
        self.reverse = reverse  # write and commit the nodes from the highest serverid down
        self.errors = []
        self.suppressed_waits = 0
        self._stop = threading.Event()
        self._notified = threading.Event()
        self._conns = {}
        self._threads = []

    def connect(self, serverid, dbname, **kwargs):
        host, port = self.nodes[serverid]
        # A cut cable must end in an error, not a write that waits for TCP's 15 minutes:
        # unacknowledged data and silent peers fail within about 3 s, as a real driver's timeouts would.
        return psycopg.connect(host=host, port=port, user='postgres', password=self.password, dbname=dbname,
                               connect_timeout=2, application_name='forest-driver', tcp_user_timeout=3000,
                               keepalives=1, keepalives_idle=2, keepalives_interval=1, keepalives_count=2,
                               **kwargs)

    # --- management information ---------------------------------------------
    def read_server_info(self):
        views = []
        config = None
        for serverid in self.nodes:
            try:
                with self.connect(serverid, self.mngdb, autocommit=True) as conn:
                    # One round trip: a slower read would widen the gap between two reads.
                    rows = conn.execute("SELECT serverid, udb_validity, coalesce((SELECT value FROM global_config "
                                        "WHERE key = 'mngdb_read_duration'), '30') FROM server_info").fetchall()
                    views.append(dict((row[0], row[1]) for row in rows))
                    if config is None and rows:  # global_config from the first node that answers, as the guide says
                        config = rows[0][2]
            except psycopg.Error:
                continue
        self.take_read_duration(config)
        merged = {}
        for serverid in self.nodes:
            values = [view.get(serverid) for view in views if view.get(serverid) is not None]
            merged[serverid] = -1 if -1 in values else 0 if 0 in values else 1 if values else -1
        self.validity = merged
        self._last_read = time.monotonic()
        for serverid, value in merged.items():  # a node taken out: its sessions are stale when it comes back
            if value != 1 and serverid in self._conns:
                self._conns.pop(serverid).close()

    def take_read_duration(self, value):
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            return
        if seconds <= 0:
            self.polling = False
        elif seconds != self.read_duration:
            self.read_duration = seconds
            self.read_durations.append((time.monotonic(), seconds))

    def _listen(self, serverid):
        """NOTIFY from either management database wakes the writer (one listener per node)."""
        try:
            with self.connect(serverid, self.mngdb, autocommit=True) as conn:
                conn.execute('LISTEN pgforest_server_info')
                for _note in conn.notifies(timeout=0.5):
                    self._notified.set()
                while not self._stop.is_set():
                    for _note in conn.notifies(timeout=0.2, stop_after=1):
                        self._notified.set()
        except psycopg.Error:
            pass  # polling still works

    def mark_broken(self, serverid, exc):
        for owner in self.nodes:
            try:
                with self.connect(owner, self.mngdb, autocommit=True) as conn:
                    conn.execute('UPDATE server_info SET udb_validity = -1 WHERE serverid = %s', [serverid])
                    conn.execute("INSERT INTO broken_log_detail (serverid, client, api_task, err_msg, err_type, "
                                 "err_state) VALUES (%s, '127.0.0.1', 'Exec_Task', %s, %s, %s)",
                                 [serverid, str(exc)[:200], type(exc).__name__, getattr(exc, 'sqlstate', None)])
                    conn.execute("SELECT pg_notify('pgforest_server_info', 'broken')")
            except psycopg.Error:
                continue
        self.validity[serverid] = -1
        self._conns.pop(serverid, None)

    # --- writing ----------------------------------------------------------------
    def _conn(self, serverid):
        if serverid not in self._conns:
            self._conns[serverid] = self.connect(serverid, self.userdb)
        return self._conns[serverid]

    def _is_broken_error(self, exc):
        state = getattr(exc, 'sqlstate', None) or '08'  # connection lost: no SQLSTATE
        return any(state.startswith(prefix) for prefix in self.broken_prefixes)

    def write_once(self):
        due = self.polling and time.monotonic() - self._last_read >= self.read_duration
        if self._notified.is_set() or due:
            self._notified.clear()
            self.read_server_info()
        if 0 in self.validity.values():
            self.suppressed_waits += 1
            time.sleep(0.01)
            return None
        valid = [sid for sid, value in sorted(self.validity.items(), reverse=self.reverse) if value == 1]
        payload = uuid.uuid4().hex  # unique: a repeated payload means a write applied twice
        ids, done = set(), []
        for serverid in valid:
            try:
                conn = self._conn(serverid)
                row = conn.execute('INSERT INTO %s (payload) VALUES (%%s) RETURNING id' % self.table,
                                   [payload]).fetchone()
                conn.execute('INSERT INTO %s_items (load_id, n) SELECT %%s, g FROM generate_series(1, 3) g'
                             % self.table, [row[0]])
                ids.add(row[0])
                done.append(serverid)
            except psycopg.Error as exc:
                self._fail(serverid, exc)
        for serverid in list(done):
            try:
                self._conns[serverid].commit()
            except psycopg.Error as exc:
                self._fail(serverid, exc)
                done.remove(serverid)
        if len(ids) > 1:
            self.errors.append('nodes handed out different ids %s for one write' % sorted(ids))
        if done:
            self.acked.append((ids.pop(), payload))
            key = tuple(sorted(done))
            self.acked_on[key] = self.acked_on.get(key, 0) + 1
            self.ack_times.append(time.monotonic())
            return True
        return None

    def _fail(self, serverid, exc):
        conn = self._conns.get(serverid)
        if conn is not None and not conn.closed:
            try:
                conn.rollback()
            except psycopg.Error:
                pass
        if self._is_broken_error(exc):
            self.mark_broken(serverid, exc)
        else:
            self.errors.append('serverid %d: %s' % (serverid, exc))

    def _run(self):
        while not self._stop.is_set():
            self.write_once()
            time.sleep(self.pause)

    def start(self):
        with self.connect(0, self.userdb, autocommit=True) as conn:
            conn.execute(LOAD_DDL.format(table=self.table))
        with self.connect(1, self.userdb, autocommit=True) as conn:
            conn.execute(LOAD_DDL.format(table=self.table))
        self.read_server_info()
        listeners = [(self._listen, (sid,)) for sid in sorted(self.nodes)] if self.listen else []
        for target, args in listeners + [(self._run, ())]:
            thread = threading.Thread(target=target, args=args, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def acked_count_on(self, nodes=None):
        """Writes acknowledged so far that were committed on every node of `nodes` (default: every node;
        none: every write acknowledged)."""
        return count_acked_on(self.acked_on, self.nodes if nodes is None else nodes)

    def wait_acked(self, count=10, nodes=None, timeout=TIMEOUT):
        """Until `count` more writes than now were acknowledged after committing on every node of `nodes`
        (default: every node), at most `timeout` seconds; the number of such writes then."""
        return wait_acked(self, count, nodes, timeout)

    def longest_gap(self):
        """The longest time between two acknowledged writes: what a freeze cost this application."""
        times = list(self.ack_times)
        return max([b - a for a, b in zip(times, times[1:])] or [0.0])

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        for conn in self._conns.values():
            conn.close()
        return self


def count_acked_on(acked_on, nodes):
    """From {(serverid, ...): writes}: the writes whose nodes include every one of `nodes`."""
    wanted = set(int(sid) for sid in nodes)
    return sum(count for key, count in acked_on.items() if wanted <= set(key))


def wait_acked(driver, count, nodes, timeout):
    """ForestDriver.wait_acked for any driver with acked_count_on(nodes) and validity (the lab's process too)."""
    nodes = sorted(driver.nodes if nodes is None else nodes)
    start = driver.acked_count_on(nodes)
    by = 'serverids %s' % ', '.join(map(str, nodes)) if nodes else 'any node'
    return wait_for(lambda: '%d more writes acknowledged by %s (%d so far, the driver sees %s, errors %s)'
                    % (count, by, driver.acked_count_on(nodes) - start, driver.validity, driver.errors[:3]),
                    lambda: driver.acked_count_on(nodes) >= start + count and driver.acked_count_on(nodes),
                    timeout)


def write_counts(driver, connect, serverids=None):
    """The driver's acknowledged writes checked on each node (serverids: those nodes only; default every
    node), as measured counts for the reports: {acked, lost, duplicated, other_contents, problems}.

    lost: acknowledged writes missing, duplicated: writes applied more than once, other_contents: writes
    whose row or items differ, each summed over the nodes checked; problems: one line per kind and node
    ([] when every acknowledged write is there exactly once).  connect(serverid) opens a connection to
    that node's user database."""
    table = getattr(driver, 'table', 'forest_load')
    ids = [write_id for write_id, _payload in driver.acked]
    expected = dict(driver.acked)
    counts = dict(acked=len(ids), lost=0, duplicated=0, other_contents=0, problems=[])
    problems = counts['problems']
    for serverid in sorted(driver.nodes if serverids is None else serverids):
        with connect(serverid) as conn:
            rows = conn.execute('SELECT l.id, l.payload, (SELECT count(*) FROM %s_items i WHERE i.load_id = l.id) '
                                'FROM %s l WHERE l.id = ANY(%%s)' % (table, table), [ids]).fetchall()
            twice = conn.execute('SELECT payload, count(*) FROM %s WHERE payload = ANY(%%s) '
                                 'GROUP BY payload HAVING count(*) > 1' % table, [list(expected.values())]).fetchall()
        found = dict((row[0], row[1:]) for row in rows)
        missing = [write_id for write_id in ids if write_id not in found]
        wrong = [write_id for write_id, (payload, items) in found.items()
                 if payload != expected[write_id] or items != 3]
        counts['lost'] += len(missing)
        counts['other_contents'] += len(wrong)
        counts['duplicated'] += len(twice)
        if missing:
            problems.append('serverid %d lost %d acknowledged writes, e.g. ids %s'
                            % (serverid, len(missing), missing[:5]))
        if wrong:
            problems.append('serverid %d has %d writes with other contents, e.g. ids %s'
                            % (serverid, len(wrong), wrong[:5]))
        if twice:
            problems.append('serverid %d applied %d writes twice, e.g. %s' % (serverid, len(twice), twice[:3]))
    return counts


def lost_or_duplicated(driver, connect):
    """Problems with the driver's acknowledged writes on each node: [] when every one is there exactly once.

    connect(serverid) opens a connection to that node's user database."""
    return write_counts(driver, connect)['problems']


def main(argv=None):
    """Run the driver as a process (on an application host of the lab) until SIGTERM or SIGINT,
    then write what it acknowledged as JSON: {acked: [[id, payload], ...], errors, validity}."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--node', action='append', required=True, help='SERVERID=HOST:PORT, once per node')
    parser.add_argument('--userdb', default='userdb')
    parser.add_argument('--password-file', required=True)
    parser.add_argument('--read-duration', type=float, default=1.0)
    parser.add_argument('--out', required=True, help='JSON file written when the driver stops')
    parser.add_argument('--table', default='forest_load', help='the application\'s table (and <table>_items)')
    parser.add_argument('--no-listen', action='store_true', help='only poll, as the JDBC driver does')
    args = parser.parse_args(argv)
    nodes = {}
    for item in args.node:
        serverid, address = item.split('=', 1)
        host, port = address.rsplit(':', 1)
        nodes[int(serverid)] = (host, int(port))
    with open(args.password_file) as handle:
        password = handle.read().strip()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_args: stop.set())
    driver = ForestDriver(nodes, args.userdb, password, read_duration=args.read_duration, table=args.table,
                          listen=not args.no_listen).start()
    print('started', flush=True)
    reported = None
    while not stop.wait(0.1):
        # What it acknowledged so far, one JSON line when it changed (lab.AppDriver.wait_acked reads it).
        progress = dict(acked_on=dict((','.join(map(str, key)), count) for key, count in driver.acked_on.items()),
                        validity=driver.validity, errors=len(driver.errors))
        if progress != reported:
            print(json.dumps(progress), flush=True)
            reported = progress
    driver.stop()
    with open(args.out + '.tmp', 'w') as handle:
        json.dump(dict(acked=driver.acked, errors=driver.errors, validity=driver.validity,
                       suppressed_waits=driver.suppressed_waits), handle)
    os.replace(args.out + '.tmp', args.out)


if __name__ == '__main__':
    main()
