"""How the cost of compare, repair and online recovery grows with the database, each size measured
against its baselines in the same run.

For each pgbench scale (20 ~ 300 MB, 200 ~ 3 GB, 700 ~ 10 GB): serverid 0's user database is
filled; serverid 1 is marked broken; the reference driver writes to serverid 0 all along, polling
only (as the JDBC driver does) with the DBA's mngdb_read_duration (--read-duration, the guide's
default 30 s).  Then:

  bare copy      pg_basebackup -X stream of serverid 0 alone (the floor of any online recovery)
  online         forest_recover mode=online, the driver writing; its write freeze; what it waited
                 before the freeze for the drivers to take the shorter poll interval (overlapping
                 the copy: only what the copy did not cover); acknowledged writes lost or doubled
  floor          bit_xor(hash_record_extended(row, 0)) over every table, both nodes at once
  compare        forest_dbsync compare of the two (now equal) nodes
  sync           forest_dbsync mode=sync after 0.1 % of the accounts drifted on serverid 1
  dump | psql    pg_dump of the user database piped into psql (a new database on serverid 1):
                 the guide's way of repairing, the baseline of sync

    .venv/bin/python bench/scaling_bench.py [--scales 20,200,700] [--read-duration 30] [--drift 0.001]
"""
import argparse
import shutil
import subprocess
import time

from pgforest_dev import sandbox
from pgforest_dev.bench import PGBENCH_TABLES, env, fill, hash_floor, host_args
from pgforest_dev.forest_driver import ForestDriver, lost_or_duplicated

from recovery_bench import BARE_DIR, TARGET, bare_copy, recover, set_target

DUMP_DB = 'scaling_dump'


def module(name, **args):
    started = time.monotonic()
    result = sandbox.module(name, timeout=7200, **args)
    if result.get('failed'):
        raise SystemExit('%s failed: %s' % (name, result.get('msg')))
    result['wall'] = time.monotonic() - started
    return result


def set_read_duration(seconds):
    sandbox.set_read_duration(seconds)


def dump_psql():
    """pg_dump of the user database on serverid 0 | psql into a new database on serverid 1; seconds."""
    sandbox.query(1, 'DROP DATABASE IF EXISTS %s WITH (FORCE)' % DUMP_DB)
    sandbox.query(1, 'CREATE DATABASE %s' % DUMP_DB)
    started = time.monotonic()
    dump = subprocess.Popen([sandbox.PG_BIN + '/pg_dump', *host_args(0), sandbox.USERDB], env=env(),
                            stdout=subprocess.PIPE)
    load = subprocess.Popen([sandbox.PG_BIN + '/psql', '-Xq', '-v', 'ON_ERROR_STOP=1', *host_args(1), '-d', DUMP_DB],
                            env=env(), stdin=dump.stdout, stdout=subprocess.DEVNULL)
    dump.stdout.close()
    if load.wait() or dump.wait():
        raise SystemExit('pg_dump | psql failed')
    seconds = time.monotonic() - started
    sandbox.query(1, 'DROP DATABASE %s WITH (FORCE)' % DUMP_DB)
    return seconds


def one_size(scale, read_duration, fraction):
    sandbox.reset_pair()
    sandbox.both('DROP TABLE IF EXISTS %s, forest_load_items, forest_load' % PGBENCH_TABLES)
    set_read_duration(read_duration)
    size = fill(scale)
    set_target(-1)
    nodes = sandbox.driver_nodes()
    driver = ForestDriver(nodes, sandbox.USERDB, sandbox.password(), listen=False).start()
    try:
        time.sleep(1)
        bare = bare_copy()
        print('  scale %d: bare copy %.1fs; online recovery ...' % (scale, bare), flush=True)
        online = recover(mode='online', data_dir=sandbox.data_dir(TARGET))
        time.sleep(1)
    finally:
        driver.stop()
    problems = lost_or_duplicated(driver, lambda sid: sandbox.connect(sid, sandbox.USERDB)) + driver.errors
    print('  scale %d: online %.1fs, freeze %.3fs; compare ...' % (scale, online['seconds'], online['freeze_window']),
          flush=True)
    floor = hash_floor(sandbox.USERDB)
    compared = module('forest_dbsync')
    if not compared['equal']:
        raise SystemExit('the recovered node differs: %s' % compared['report'])
    every = max(int(round(1 / fraction)), 1)
    sandbox.on(TARGET, 'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid %% %d = 0' % every)
    synced = module('forest_dbsync', mode='sync', source=0)
    print('  scale %d: compare %.1fs, sync %.1fs; pg_dump | psql ...' % (
        scale, compared['summary']['seconds'], synced['summary']['seconds']), flush=True)
    dump = dump_psql()
    return dict(scale=scale, gb=size / 2 ** 30, bare=bare, online=online['seconds'], freeze=online['freeze_window'],
                waited=(online.get('read_duration') or {}).get('waited', 0.0), acked=len(driver.acked),
                problems=problems, floor=floor, compare=compared['summary']['seconds'],
                sync=synced['summary']['seconds'], rows_synced=synced['summary']['rows_copied'], dump=dump)


def report(rows, read_duration, fraction):
    print('\nper size (seconds; "/GB" = seconds per GB of the user database):')
    print('%-6s %8s | %8s %8s %8s | %8s %8s %10s | %9s %9s %7s %8s %7s | %s' % (
        'scale', 'GB', 'floor', 'compare', '/GB', 'sync', '/GB', 'dump|psql', 'basebkp', 'online', 'ratio',
        'waited', 'freeze', 'driver'))
    for row in rows:
        work = row['online'] - row['waited']
        print('%-6d %8.2f | %8.2f %8.2f %8.2f | %8.2f %8.2f %10.1f | %9.1f %9.1f %6.2fx %8.1f %7.3f | %s' % (
            row['scale'], row['gb'], row['floor'], row['compare'], row['compare'] / row['gb'], row['sync'],
            row['sync'] / row['gb'], row['dump'], row['bare'], row['online'], work / row['bare'], row['waited'],
            row['freeze'], '%d writes, %s' % (row['acked'], '; '.join(row['problems']) or 'none lost or doubled')))
    print('\nratio = (online recovery - what it waited before the freeze for the drivers) / bare pg_basebackup;')
    print('the drivers poll every %d s until the recovery lowers it, so a copy shorter than that waits the rest.'
          % read_duration)
    print('sync: %.1f %% of the accounts drifted; compare / floor: %s; sync vs dump|psql: %s' % (
        fraction * 100, ', '.join('%.2fx' % (row['compare'] / row['floor']) for row in rows),
        ', '.join('%.1fx faster' % (row['dump'] / row['sync']) for row in rows)))
    for row in rows:
        row['online_work'] = row['online'] - row['waited']
    for key, label in (('compare', 'compare'), ('sync', 'sync'), ('online_work', 'online recovery (without the wait)')):
        per_gb = [row[key] / row['gb'] for row in rows if row['gb'] >= 1] or [row[key] / row['gb'] for row in rows]
        print('%s per GB from 1 GB up: %s (spread %.0f %%)' % (
            label, ', '.join('%.2f' % value for value in per_gb), 100 * (max(per_gb) / min(per_gb) - 1)))
    freezes = [row['freeze'] for row in rows]
    print('freeze window: %s (spread %.3f s)' % (', '.join('%.3f' % f for f in freezes), max(freezes) - min(freezes)))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--scales', default='20,200,700', help='pgbench scales, comma separated')
    parser.add_argument('--read-duration', type=int, default=30, help="the DBA's mngdb_read_duration (seconds)")
    parser.add_argument('--drift', type=float, default=0.001, help='fraction of accounts drifted before the sync')
    args = parser.parse_args()
    rows = []
    try:
        for scale in [int(value) for value in args.scales.split(',')]:
            rows.append(one_size(scale, args.read_duration, args.drift))
    finally:
        sandbox.reset_pair()
        set_read_duration(1)  # the sandbox's own value
        sandbox.both('DROP TABLE IF EXISTS %s, forest_load_items, forest_load' % PGBENCH_TABLES)
        shutil.rmtree(BARE_DIR, ignore_errors=True)
    report(rows, args.read_duration, args.drift)


if __name__ == '__main__':
    main()
