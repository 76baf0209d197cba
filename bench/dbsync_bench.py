"""forest_dbsync against the guide's jma-dbsync methods and pg_comparator, measured in the same run.

Builds a pgbench database (`benchdb`, scale 20 = 2 M accounts by default) on
both sandbox nodes, then times, with no drift and again after a fraction of the
accounts drifted by UPDATE on serverid 1 only (row counts stay equal):

  compare    the floor: bit_xor(hash_record_extended(row, 0)) over every table on
             both nodes at once (no compare can read less); row counts via psql (the
             guide's way); pg_comparator (Debian package postgresql-comparator, its C
             checksums, installed by the bench); forest_dbsync compare.  Median of
             --rounds, each tool in turn within a round.
  repair     drop + pg_dump | psql of the whole database          vs  forest_dbsync mode=sync
  full copy  pg_dump | psql onto an empty database                vs  forest_dbsync scope=all
             (onto the same tables, empty)

Ratios are against the guide's method measured in this run.  forest_dbsync's
time is the module's own (summary.seconds); the wall time through `ansible`
(about 1.5 s of Ansible start-up more) is printed beside it.

    .venv/bin/python bench/dbsync_bench.py [--scale 20] [--drift 0.001] [--rounds 3] [--jobs 1]
"""
import argparse
import statistics

from pgforest_dev.bench import (DB, dbsync, drop_databases, dump_restore, hash_floor, pg_comparator, pgbench_pair,
                                print_table, psql, timed)


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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--scale', type=int, default=20, help='pgbench scale (20 = 2 M accounts)')
    parser.add_argument('--drift', type=float, default=0.001, help='fraction of accounts changed on serverid 1')
    parser.add_argument('--rounds', type=int, default=3, help='rounds of each compare (the median is shown)')
    parser.add_argument('--jobs', type=int, default=1, help='forest_dbsync jobs')
    args = parser.parse_args()

    print('setting up pgbench scale %d on both nodes ...' % args.scale, flush=True)
    pgbench_pair(args.scale)
    rows = int(psql(0, DB, 'SELECT count(*) FROM pgbench_accounts'))
    size = int(psql(0, DB, 'SELECT pg_database_size(current_database())'))
    print('%d accounts, %.0f MB per node; drift: UPDATE of %g %% of them on serverid 1 (row counts unchanged)\n'
          % (rows, size / 2 ** 20, args.drift * 100))

    print('compare (median of %d rounds, seconds)' % args.rounds)
    print('%-12s %8s %10s %14s %14s %9s %12s  %s' % ('drift', 'floor', 'row counts', 'pg_comparator', 'forest_dbsync',
                                                     '/ floor', 'pgc / ours', 'found'))
    cmp_result = None
    for label, fraction in (('none', 0), ('%g %%' % (args.drift * 100), args.drift)):
        drifted = drift(fraction) if fraction else 0
        rounds = dict(floor=[], counts=[], pgc=[], ours=[])
        for _round in range(args.rounds):
            rounds['floor'].append(hash_floor(DB))
            count_time, count_equal = timed(rowcount_compare)
            rounds['counts'].append(count_time)
            pgc_time, pgc_found = pg_comparator(DB)
            rounds['pgc'].append(pgc_time)
            cmp_result, _wall = dbsync(jobs=args.jobs)
            rounds['ours'].append(cmp_result['summary']['seconds'])
        found = sum(t['changed'] + t['missing'] + t['extra'] for t in cmp_result['tables'])
        med = dict((name, statistics.median(values)) for name, values in rounds.items())
        print('%-12s %8.2f %10.2f %14.2f %14.2f %8.2fx %11.1fx  forest_dbsync %d of %d drifted rows, pg_comparator %d, '
              'row counts say %s' % (label, med['floor'], med['counts'], med['pgc'], med['ours'],
                                     med['ours'] / med['floor'], med['pgc'] / med['ours'], found, drifted, pgc_found,
                                     'equal' if count_equal else 'different'))
    print('compare phases: %s\n' % cmp_result['phases'])

    lines = []
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

    print_table(lines, 'the guide\'s method')
    print('\nratio = forest_dbsync module seconds / the guide\'s method seconds (lower is better)')
    print('sync phases:    %s' % sync_result['phases'])
    print('scope=all phases: %s' % all_result['phases'])
    drop_databases()


if __name__ == '__main__':
    main()
