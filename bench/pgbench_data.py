"""What the benchmarks share: libpq environment and pgbench data in the sandbox's user database."""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, '..', 'tests'), os.path.join(HERE, '..', 'collections')]

import sandbox  # noqa: E402  (the tests' view of the sandbox)

PGBENCH_TABLES = 'pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history'


def env():
    return dict(os.environ, PGPASSWORD=sandbox.password(), PGUSER='postgres', PGCONNECT_TIMEOUT='5')


def host_args(serverid):
    return ['-h', sandbox.NODES[serverid]['host'], '-p', str(sandbox.NODES[serverid]['port'])]


def fill(scale, serverid=0):
    """pgbench tables in the user database of serverid (without the vacuum step, for speed)."""
    started = time.monotonic()
    subprocess.run([sandbox.PG_BIN + '/pgbench', '-i', '-q', '-I', 'dtgp', '-s', str(scale), *host_args(serverid),
                    sandbox.USERDB], env=env(), check=True, capture_output=True)
    size = sandbox.query(serverid, 'SELECT pg_database_size(current_database())', dbname=sandbox.USERDB)[0][0]
    print('  filled serverid %d: pgbench scale %d, user database %.0f MB (%.0fs)'
          % (serverid, scale, size / 2 ** 20, time.monotonic() - started), flush=True)
    return size
