"""The write freeze under what runs on a production source, against a quiet source, in the same run.

An online recovery of serverid 1 (broken, marked -1) while the reference driver writes serverid 0
all along, the drivers' interval 1 s (notice 1.25 s), once per workload on the source:

  quiet        nothing else (the baseline)
  batch        a batch transaction of --batch seconds open when the recovery starts
  maintenance  VACUUM and ANALYZE in a loop for the whole recovery

For each: the freeze window (udb_validity 0 -> 1), the driver's longest gap between acknowledged
writes (what the application felt), the time waited before the freeze with writes flowing, the
cut's seconds (the base copy runs first, the workload is open when the cut begins), and
lost/duplicated writes; the freeze and the gap as ratios to the quiet run.
Before this rule, a batch transaction held every driver for idle_wait_timeout (20 s), then failed.

    .venv/bin/python bench/freeze_bench.py [--batch 45] [--rounds 1]
"""
import argparse
import time

from pgforest_dev import sandbox
from pgforest_dev.forest_driver import ForestDriver, lost_or_duplicated
from pgforest_dev.wait import driver_sees, driver_writes
from pgforest_dev.workloads import Batch, Maintenance

TARGET = 1


class Nothing(object):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def one_recovery(workload):
    sandbox.ensure_running(TARGET)
    sandbox.reset_pair()
    for serverid in (0, 1):  # the drivers' interval 1 s: the cut waits no old interval of 30 s first
        sandbox.on(serverid, "UPDATE global_config SET value = '1' WHERE key = 'mngdb_read_duration'",
                   dbname=sandbox.MNGDB)
    nodes = sandbox.driver_nodes()
    driver = ForestDriver(nodes, sandbox.USERDB, sandbox.password(), read_duration=1.0).start()
    try:
        driver_writes(driver, 20)
        sandbox.set_views({TARGET: -1}, {TARGET: -1})
        sandbox.pg_ctl(TARGET, 'stop', '-m', 'immediate')
        driver_sees(driver, {TARGET: -1})
        run = dict(host='forest%d' % TARGET, timeout=900, mode='online', data_dir=sandbox.data_dir(TARGET))
        base = sandbox.module('forest_recover', phase='base', **run)
        if base.get('failed'):
            raise SystemExit('forest_recover phase=base failed: %s' % base['msg'])
        started = time.monotonic()
        with workload:  # open when the cut begins
            result = sandbox.module('forest_recover', phase='cut', idle_wait_timeout=600, **run)
        seconds = time.monotonic() - started
        if not result.get('failed'):
            cleanup = sandbox.module('forest_recover', phase='cleanup', **run)
            if cleanup.get('failed'):
                raise SystemExit('forest_recover phase=cleanup failed: %s' % cleanup['msg'])
        driver_writes(driver)
    finally:
        driver.stop()
    if result.get('failed'):
        raise SystemExit('forest_recover phase=cut failed: %s' % result['msg'])
    problems = lost_or_duplicated(driver, lambda sid: sandbox.connect(sid, sandbox.USERDB)) + driver.errors
    return dict(freeze=result['freeze_window'], gap=driver.longest_gap(), seconds=seconds,
                waited=result['cut']['waited_before_freeze'], undone=len(result['cut']['freezes_undone']),
                acked=len(driver.acked), problems=problems)


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--batch', type=float, default=45, help='seconds the batch transaction stays open')
    parser.add_argument('--rounds', type=int, default=1, help='recoveries per workload (the median is shown)')
    args = parser.parse_args()
    sandbox.both('DROP TABLE IF EXISTS bench_orders; CREATE TABLE bench_orders (id serial PRIMARY KEY, v text);'
                 'INSERT INTO bench_orders (v) SELECT md5(g::text) FROM generate_series(1, 50000) g;'
                 'DROP TABLE IF EXISTS batch_rows')
    sandbox.on(0, 'DELETE FROM bench_orders WHERE id % 3 = 0')
    workloads = [('quiet', Nothing), ('batch %.0fs' % args.batch, lambda: Batch(args.batch)),
                 ('maintenance', lambda: Maintenance('bench_orders'))]
    rows = []
    try:
        for name, make in workloads:
            runs = [one_recovery(make()) for _round in range(args.rounds)]
            rows.append((name, runs))
            print('  %s: %s' % (name, ', '.join('freeze %.3fs gap %.3fs' % (r['freeze'], r['gap']) for r in runs)),
                  flush=True)
    finally:
        sandbox.reset_pair()
        sandbox.both('DROP TABLE IF EXISTS bench_orders, batch_rows, forest_load_items, forest_load')
    base_freeze = median([r['freeze'] for r in rows[0][1]])
    base_gap = median([r['gap'] for r in rows[0][1]])
    print('\nonline recovery under the reference driver, notice 1.25 s (median of %d):' % args.rounds)
    print('  %-13s %8s %6s %9s %6s %11s %7s %9s  %s' % ('source', 'freeze', 'ratio', 'gap', 'ratio', 'waited', 'undone',
                                                        'cut', 'driver'))
    for name, runs in rows:
        freeze, gap = median([r['freeze'] for r in runs]), median([r['gap'] for r in runs])
        print('  %-13s %7.3fs %5.2fx %8.3fs %5.2fx %10.1fs %7d %8.1fs  %s' % (
            name, freeze, freeze / base_freeze, gap, gap / base_gap, median([r['waited'] for r in runs]),
            max(r['undone'] for r in runs), median([r['seconds'] for r in runs]),
            '; '.join(p for r in runs for p in r['problems']) or '%d writes, none lost or doubled'
            % sum(r['acked'] for r in runs)))


if __name__ == '__main__':
    main()
