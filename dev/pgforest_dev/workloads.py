"""What else runs on a source in production, for the tests and benchmarks of the write freeze: a
batch job's long transactions and a DBA's VACUUM/ANALYZE loop."""
import threading

from pgforest_dev import sandbox
from pgforest_dev.wait import wait_for


class Batch(threading.Thread):
    """A batch job on serverid 0: `count` transactions of `seconds` each, back to back, each inserting
    a row into batch_rows first (so it holds a transaction id); application_name 'nightly batch'.
    `with Batch(...)` returns once its first transaction is open and stops it at the end."""

    def __init__(self, seconds, count=1):
        super().__init__(daemon=True)
        self.seconds, self.count = seconds, count
        self.committed = 0
        self.open = threading.Event()
        self.stopping = threading.Event()
        sandbox.on(0, 'CREATE TABLE IF NOT EXISTS batch_rows (id serial PRIMARY KEY, n int)')

    def run(self):
        with sandbox.connect(0, sandbox.USERDB, autocommit=False, application_name='nightly batch') as conn:
            for n in range(self.count):
                if self.stopping.is_set():
                    break
                conn.execute('INSERT INTO batch_rows (n) VALUES (%s)', [n])
                self.open.set()
                conn.execute('SELECT pg_sleep(%s)', [self.seconds])
                conn.commit()
                self.committed += 1

    def __enter__(self):
        self.start()
        wait_for('the batch to begin its first transaction', self.open.is_set)
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.join(self.seconds + 30)


class Maintenance(threading.Thread):
    """A DBA's maintenance loop on serverid 0: VACUUM and ANALYZE of `table`, then ANALYZE of the whole
    user database, again and again; `rounds` counts the loops done."""

    def __init__(self, table):
        super().__init__(daemon=True)
        self.table = table
        self.rounds = 0
        self.stopping = threading.Event()

    def run(self):
        with sandbox.connect(0, sandbox.USERDB, application_name='dba maintenance') as conn:
            while not self.stopping.is_set():
                conn.execute('VACUUM %s' % self.table)
                conn.execute('ANALYZE %s' % self.table)
                conn.execute('ANALYZE')
                self.rounds += 1

    def __enter__(self):
        self.start()
        wait_for('the maintenance loop to run 3 rounds', lambda: self.rounds >= 3)
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.join(60)
