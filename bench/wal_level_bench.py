"""What wal_level = logical (the forest_node role's setting, for method=resync) adds to the WAL volume
against wal_level = replica: the same write load, run once under each, the WAL written measured as the
difference of pg_current_wal_lsn() before and after.

A throwaway server of its own (initdb in a temporary directory, Unix socket only, no TCP port), so it
touches neither the sandbox nor the lab.  For each wal_level: a fresh copy of the filled database,
a CHECKPOINT (so full-page images start alike), then each load with one client and a fixed number of
transactions (the same work both times):

  tpcb        pgbench's built-in TPC-B-like script: 3 UPDATEs by primary key, 1 SELECT, 1 INSERT
  mixed       UPDATE of a text column, DELETE and INSERT by primary key on a 200-byte-row table

    .venv/bin/python bench/wal_level_bench.py [--transactions 20000] [--scale 10] [--pg-bindir DIR]

Run as root (the server runs as the postgres OS user).  Prints one line per load and wal_level,
and the ratio.
"""
import argparse
import glob
import os
import shutil
import subprocess
import tempfile

MIXED = """\\set id random(1, 100000)
BEGIN;
UPDATE wal_bench SET payload = md5(random()::text) || payload, n = n + 1 WHERE id = :id;
DELETE FROM wal_bench WHERE id = :id + 1;
INSERT INTO wal_bench VALUES (:id + 1, 0, repeat('x', 200)) ON CONFLICT (id) DO NOTHING;
END;
"""


def as_postgres(argv, **kwargs):
    return subprocess.run(['runuser', '-u', 'postgres', '--'] + argv, check=True, **kwargs)


def psql(bindir, sock, query, dbname='bench'):
    return as_postgres([os.path.join(bindir, 'psql'), '-h', sock, '-p', '5499', '-d', dbname, '-XAtq',
                        '-v', 'ON_ERROR_STOP=1', '-c', query], capture_output=True, text=True).stdout.strip()


def lsn(bindir, sock):
    return psql(bindir, sock, 'SELECT pg_current_wal_lsn()')


def measure(bindir, sock, workdir, load, transactions):
    """Bytes of WAL the load wrote."""
    psql(bindir, sock, 'CHECKPOINT')
    before = lsn(bindir, sock)
    argv = [os.path.join(bindir, 'pgbench'), '-h', sock, '-p', '5499', '-n', '-c', '1', '-t', str(transactions)]
    if load == 'mixed':
        script = os.path.join(workdir, 'mixed.sql')
        argv += ['-f', script]
    as_postgres(argv + ['bench'], capture_output=True)
    after = lsn(bindir, sock)
    return int(psql(bindir, sock, "SELECT pg_wal_lsn_diff('%s', '%s')::int8" % (after, before)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--transactions', type=int, default=20000)
    parser.add_argument('--scale', type=int, default=10)
    parser.add_argument('--pg-bindir', default=sorted(glob.glob('/usr/lib/postgresql/*/bin'))[-1])
    args = parser.parse_args()
    bindir = args.pg_bindir
    workdir = tempfile.mkdtemp(prefix='pgforest-wal-bench-')
    shutil.chown(workdir, 'postgres', 'postgres')
    data, sock = os.path.join(workdir, 'data'), workdir
    with open(os.path.join(workdir, 'mixed.sql'), 'w') as handle:
        handle.write(MIXED)
    os.chmod(os.path.join(workdir, 'mixed.sql'), 0o644)
    results = {}
    try:
        as_postgres([os.path.join(bindir, 'initdb'), '-D', data, '-A', 'trust', '--no-sync'], capture_output=True)
        for wal_level in ('replica', 'logical'):
            with open(os.path.join(data, 'postgresql.auto.conf'), 'w') as handle:
                handle.write("listen_addresses = ''\nunix_socket_directories = '%s'\nport = 5499\nwal_level = %s\n"
                             "max_wal_size = '4GB'\ncheckpoint_timeout = '1h'\n" % (sock, wal_level))
            as_postgres([os.path.join(bindir, 'pg_ctl'), '-D', data, '-w', '-l', os.path.join(workdir, 'log'),
                         'start'], capture_output=True)
            try:
                assert psql(bindir, sock, 'SHOW wal_level', 'postgres') == wal_level
                psql(bindir, sock, 'DROP DATABASE IF EXISTS bench', 'postgres')
                psql(bindir, sock, 'CREATE DATABASE bench', 'postgres')
                as_postgres([os.path.join(bindir, 'pgbench'), '-h', sock, '-p', '5499', '-i', '-q', '-s',
                             str(args.scale), 'bench'], capture_output=True)
                psql(bindir, sock, "CREATE TABLE wal_bench (id int PRIMARY KEY, n int, payload text); "
                                   "INSERT INTO wal_bench SELECT g, 0, repeat('x', 200) FROM generate_series(1, 100001) g")
                psql(bindir, sock, 'VACUUM ANALYZE')
                for load in ('tpcb', 'mixed'):
                    results[(load, wal_level)] = measure(bindir, sock, workdir, load, args.transactions)
                    print('%-6s wal_level=%-8s %8.1f MB WAL for %d transactions (%.0f bytes each)' % (
                        load, wal_level, results[(load, wal_level)] / 1048576.0, args.transactions,
                        results[(load, wal_level)] / float(args.transactions)), flush=True)
            finally:
                as_postgres([os.path.join(bindir, 'pg_ctl'), '-D', data, '-w', '-m', 'fast', 'stop'],
                            capture_output=True)
        for load in ('tpcb', 'mixed'):
            print('%-6s logical/replica = %.3f' % (load, results[(load, 'logical')] / float(results[(load, 'replica')])))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    main()
