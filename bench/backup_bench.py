"""forest_backup / forest_restore (logical) measured against the guide's plain SQL way, in the same run.

The user database of serverid 0 is filled with pgbench (scale 20 is about
300 MB); for each size:

  plain dump     pg_dump userdb > file.sql (the guide's backup, 6.2)
  forest_backup  pg_dump -Fd -j2 of the user and management databases in one
                 snapshot, row counts, SHA-256 of every file (module's seconds)
  plain restore  psql < file.sql into a fresh database on each node, one after
                 the other (the guide's restore of both nodes, 7.2)
  pipe           pg_dump | psql onto one node (the guide's offline recovery)
  forest_restore checksums, four pg_restore -j2 (both databases, both nodes at
                 once), row counts, swap, validity (module's seconds)

    .venv/bin/python bench/backup_bench.py [--scales 20 100] [--jobs 2]
"""
import argparse
import os
import shutil
import subprocess
import time

from pgforest_dev.bench import PGBENCH_TABLES, env, fill, host_args, sandbox

WORK = os.path.join(sandbox.SANDBOX, 'bench-backups')
PLAIN_DB = 'bench_plain_restore'


def timed(argv, stdout=subprocess.DEVNULL):
    started = time.monotonic()
    subprocess.run(argv, env=env(), check=True, stdout=stdout, stderr=subprocess.PIPE)
    return time.monotonic() - started


def fresh_plain_db(serverid):
    sandbox.query(serverid, 'DROP DATABASE IF EXISTS %s' % PLAIN_DB)
    sandbox.query(serverid, 'CREATE DATABASE %s' % PLAIN_DB)


def plain_round():
    dump_file = os.path.join(WORK, 'userdb.sql')
    with open(dump_file, 'w') as out:
        dump = timed([sandbox.PG_BIN + '/pg_dump', *host_args(0), sandbox.USERDB], stdout=out)
    restore = 0.0
    for serverid in sandbox.NODES:
        fresh_plain_db(serverid)
        restore += timed([sandbox.PG_BIN + '/psql', '-q', '-X', '-v', 'ON_ERROR_STOP=1', *host_args(serverid),
                          '-d', PLAIN_DB, '-f', dump_file])
    fresh_plain_db(1)
    started = time.monotonic()
    subprocess.run('%s/pg_dump %s %s | %s/psql -q -X -v ON_ERROR_STOP=1 %s -d %s' % (
        sandbox.PG_BIN, ' '.join(host_args(0)), sandbox.USERDB, sandbox.PG_BIN, ' '.join(host_args(1)), PLAIN_DB),
        shell=True, env=env(), check=True, capture_output=True)
    pipe = time.monotonic() - started
    os.remove(dump_file)
    for serverid in sandbox.NODES:
        sandbox.query(serverid, 'DROP DATABASE IF EXISTS %s' % PLAIN_DB)
    return dict(dump=dump, restore=restore, pipe=pipe)


def module(name, **args):
    started = time.monotonic()
    result = sandbox.module(name, timeout=3600, backup_dir=WORK, **args)
    if result.get('failed'):
        raise SystemExit('%s failed: %s' % (name, result.get('msg')))
    result['wall'] = time.monotonic() - started
    return result


def forest_round(jobs):
    backup = module('forest_backup', jobs=jobs)
    restore = module('forest_restore', jobs=jobs, confirm=True)
    size = sum(os.path.getsize(os.path.join(folder, name)) for folder, _d, files in os.walk(backup['backup'])
               for name in files)
    shutil.rmtree(backup['backup'])
    return dict(backup=backup, restore=restore, size=size)


def report(rows, jobs):
    print('\nlogical backup and restore of both nodes (pg_dump/pg_restore --jobs %d), seconds:' % jobs)
    print('  %-6s %8s | %10s %13s %6s | %13s %6s %14s %6s %8s' % (
        'scale', 'user db', 'plain dump', 'forest_backup', 'ratio', 'plain restore', 'pipe', 'forest_restore',
        'ratio', 'vs pipe'))
    for row in rows:
        forest_backup, forest_restore = row['forest']['backup']['seconds'], row['forest']['restore']['seconds']
        print('  %-6d %6.0fMB | %9.1fs %12.1fs %5.2fx | %12.1fs %5.1fs %13.1fs %5.2fx %7.2fx' % (
            row['scale'], row['size'] / 2 ** 20, row['plain']['dump'], forest_backup,
            forest_backup / row['plain']['dump'], row['plain']['restore'], row['plain']['pipe'], forest_restore,
            forest_restore / row['plain']['restore'], forest_restore / row['plain']['pipe']))
        print('         backup phases %s, %.0f MB on disk; restore phases %s' % (
            row['forest']['backup']['phases'], row['forest']['size'] / 2 ** 20, row['forest']['restore']['phases']))
    print('  ratio < 1: forest is faster.  plain restore = psql < file.sql onto both nodes one after the other (guide '
          '7.2); pipe = pg_dump | psql onto one node.')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--scales', type=int, nargs='+', default=[20], help='pgbench scales (20 is ~300 MB)')
    parser.add_argument('--jobs', type=int, default=2, help='pg_dump / pg_restore jobs')
    args = parser.parse_args()
    sandbox.reset_pair()
    rows = []
    try:
        shutil.rmtree(WORK, ignore_errors=True)
        os.makedirs(WORK)
        for scale in args.scales:
            size = fill(scale)
            rows.append(dict(scale=scale, size=size, plain=plain_round(), forest=forest_round(args.jobs)))
            print('  scale %d measured' % scale, flush=True)
    finally:
        sandbox.reset_pair()
        sandbox.both('DROP TABLE IF EXISTS %s' % PGBENCH_TABLES)
        shutil.rmtree(WORK, ignore_errors=True)
    report(rows, args.jobs)


if __name__ == '__main__':
    main()
