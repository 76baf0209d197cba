"""forest_dbsync against the seed's jma-dbsync methods, measured in the same run.

Builds a pgbench database (`benchdb`, scale 20 = 2 M accounts by default) on
both sandbox nodes, makes a fraction of the accounts drift by UPDATE on
serverid 1 only (row counts stay equal), then times:

  compare    row counts of every table via psql (the seed's way)  vs  forest_dbsync compare
  repair     drop + pg_dump | psql of the whole database          vs  forest_dbsync mode=sync
  full copy  pg_dump | psql onto an empty database                vs  forest_dbsync scope=all
             (onto the same tables, empty)

Ratios are against the seed's method measured in this run.  forest_dbsync's
time is the module's own (summary.seconds); the wall time through `ansible`
(about 1.5 s of Ansible start-up more) is printed beside it.

    .venv/bin/python bench/dbsync_bench.py [--scale 20] [--drift 0.001]
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests'))
sys.path.insert(0, os.path.join(HERE, '..', 'collections'))

import sandbox  # noqa: E402  (the tests' view of the sandbox)

DB = 'benchdb'
PG_BIN = sandbox.PG_BIN


def env():
    return dict(os.environ, PGPASSWORD=sandbox.password(), PGUSER='postgres', PGCONNECT_TIMEOUT='5')


def host(serverid):
    return ['-h', sandbox.NODES[serverid]['host'], '-p', str(sandbox.NODES[serverid]['port'])]


def psql(serverid, dbname, sql):
    out = subprocess.run([PG_BIN + '/psql', '-XAtq', *host(serverid), '-d', dbname, '-c', sql],
                         env=env(), check=True, capture_output=True, text=True)
    return out.stdout.strip()


def recreate(serverid):
    psql(serverid, 'postgres', 'DROP DATABASE IF EXISTS %s WITH (FORCE)' % DB)
    psql(serverid, 'postgres', 'CREATE DATABASE %s' % DB)


def setup(scale):
    for serverid in (0, 1):
        recreate(serverid)
    procs = [subprocess.Popen([PG_BIN + '/pgbench', '-i', '-q', '-s', str(scale), *host(serverid), DB],
                              env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for serverid in (0, 1)]
    if any(proc.wait() for proc in procs):
        raise SystemExit('pgbench -i failed')
    for name in ('forest0', 'forest1'):
        result = sandbox.module('forest_mngdb', host=name, userdb=DB,
                                servers=['127.0.0.11:5432', '127.0.0.12:5432'])
        if result.get('failed'):
            raise SystemExit(result['msg'])


def drift(fraction):
    every = max(1, int(round(1 / fraction)))
    psql(1, DB, 'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid %% %d = 0' % every)
    return int(psql(1, DB, 'SELECT count(*) FROM pgbench_accounts WHERE abalance <> 0'))


def rowcount_compare():
    """jma-dbsync: SELECT count(*) of every table on both nodes, one psql each."""
    tables = psql(0, DB, "SELECT string_agg(tablename, ' ') FROM pg_tables WHERE schemaname = 'public'").split()
    counts = {}
    for serverid in (0, 1):
        for name in tables:
            counts[(serverid, name)] = int(psql(serverid, DB, 'SELECT count(*) FROM %s' % name))
    return all(counts[(0, name)] == counts[(1, name)] for name in tables)


def dump_restore(schema_only_target=False):
    """drop + pg_dump | psql onto serverid 1; returns bytes of the dump."""
    recreate(1)
    dump = subprocess.Popen([PG_BIN + '/pg_dump', *host(0), DB] + (['--schema-only'] if schema_only_target else []),
                            env=env(), stdout=subprocess.PIPE)
    load = subprocess.Popen([PG_BIN + '/psql', '-Xq', '-v', 'ON_ERROR_STOP=1', *host(1), '-d', DB],
                            env=env(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    size = 0
    for chunk in iter(lambda: dump.stdout.read(1 << 16), b''):
        size += len(chunk)
        load.stdin.write(chunk)
    load.stdin.close()
    if dump.wait() or load.wait():
        raise SystemExit('pg_dump | psql failed')
    return size


def dbsync(**args):
    started = time.monotonic()
    result = sandbox.module('forest_dbsync', userdb=DB, timeout=3600, **args)
    wall = time.monotonic() - started
    if result.get('failed'):
        raise SystemExit('forest_dbsync failed: %s' % result['msg'])
    return result, wall


def timed(function, *args, **kwargs):
    started = time.monotonic()
    value = function(*args, **kwargs)
    return time.monotonic() - started, value


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--scale', type=int, default=20, help='pgbench scale (20 = 2 M accounts)')
    parser.add_argument('--drift', type=float, default=0.001, help='fraction of accounts changed on serverid 1')
    args = parser.parse_args()

    print('setting up pgbench scale %d on both nodes ...' % args.scale, flush=True)
    setup(args.scale)
    rows = int(psql(0, DB, 'SELECT count(*) FROM pgbench_accounts'))
    drifted = drift(args.drift)
    print('%d accounts, %d drifted on serverid 1 by UPDATE (row counts unchanged)\n' % (rows, drifted))

    lines = []
    count_time, count_equal = timed(rowcount_compare)
    cmp_result, cmp_wall = dbsync()
    cmp_time = cmp_result['summary']['seconds']
    found = sum(t['changed'] + t['missing'] + t['extra'] for t in cmp_result['tables'])
    lines.append(('compare', 'row counts (psql per table)', count_time, 'reports %s' % (
        'EQUAL - misses the drift' if count_equal else 'different'), 'forest_dbsync compare', cmp_time, cmp_wall,
        'found %d differing rows%s' % (found, ' (all)' if found == drifted else '')))

    dump_time, dump_bytes = timed(dump_restore)
    drift(args.drift)
    sync_result, sync_wall = dbsync(mode='sync', source=0)
    after, _wall = dbsync()
    lines.append(('repair', 'drop + pg_dump | psql', dump_time, '%.1f MB' % (dump_bytes / 1e6),
                  'forest_dbsync sync', sync_result['summary']['seconds'], sync_wall,
                  '%.2f MB, %d rows; re-compare %s' % (sync_result['summary']['bytes_copied'] / 1e6,
                                                       sync_result['summary']['rows_copied'],
                                                       'equal' if after['equal'] else 'NOT EQUAL')))

    full_time, full_bytes = timed(dump_restore)
    dump_restore(schema_only_target=True)
    all_result, all_wall = dbsync(mode='sync', scope='all', source=0)
    after, _wall = dbsync()
    lines.append(('full copy', 'pg_dump | psql (empty db)', full_time, '%.1f MB' % (full_bytes / 1e6),
                  'forest_dbsync scope=all', all_result['summary']['seconds'], all_wall,
                  '%.1f MB; re-compare %s' % (all_result['summary']['bytes_copied'] / 1e6,
                                              'equal' if after['equal'] else 'NOT EQUAL')))

    print_table(lines, 'seed method')
    print('\nratio = forest_dbsync module seconds / seed method seconds (lower is better)')
    print('compare phases: %s' % cmp_result['phases'])
    print('sync phases:    %s' % sync_result['phases'])
    print('scope=all phases: %s' % all_result['phases'])
    drop_databases()


def print_table(lines, baseline):
    """One row per (task, baseline, its seconds, note, forest_dbsync, module s, wall s, note); ratio = module/baseline."""
    print('%-10s %-28s %9s  %-30s %-24s %9s %9s %7s  %s' % (
        'task', baseline, 'seconds', '', 'forest_dbsync', 'module s', 'wall s', 'ratio', ''))
    for task, seed, seed_s, seed_note, ours, ours_s, wall, note in lines:
        print('%-10s %-28s %9.2f  %-30s %-24s %9.2f %9.2f %6.2fx  %s' % (
            task, seed, seed_s, seed_note, ours, ours_s, wall, ours_s / seed_s, note))


def drop_databases():
    """The bench database and its management database, on both nodes."""
    for serverid in (0, 1):
        psql(serverid, 'postgres', 'DROP DATABASE IF EXISTS %s WITH (FORCE)' % DB)
        psql(serverid, 'postgres', 'DROP DATABASE IF EXISTS %s_pghainfo WITH (FORCE)' % DB)


if __name__ == '__main__':
    main()
