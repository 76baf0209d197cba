"""forest_recover measured against its baselines, in the same run.

Online (applications keep writing): the user database of serverid 0 is filled
with pgbench (scale 20 is about 300 MB, scale 200 about 3 GB); serverid 1 is
marked broken; the reference driver writes to serverid 0 all along.  For each
size:

  bare copy   pg_basebackup -X stream of serverid 0 alone (the floor)
  online      forest_recover mode=online phase=all (module's own seconds)
  freeze      its write freeze (udb_validity 0 -> 1), against the drivers'
              notice time (mngdb_read_duration = 1 s here) + 1 s
  driver      acknowledged writes lost or applied twice (must be none)

Offline (applications stopped), at both sizes with 0.1 % of the accounts
drifted on serverid 1:  method=dump (the guide's way)  vs  method=diff.

    .venv/bin/python bench/recovery_bench.py [--small 20] [--large 200] [--drift 0.001]
"""
import argparse
import os
import shutil
import subprocess
import time

from pgforest_dev.bench import PGBENCH_TABLES, env, fill, host_args, sandbox
from pgforest_dev.forest_driver import ForestDriver, lost_or_duplicated

TARGET = 1
NOTICE = 1.0
BARE_DIR = os.path.join(sandbox.SANDBOX, 'bench-bare-copy')


def set_target(validity):
    sandbox.on(0, 'UPDATE server_info SET udb_validity = %d WHERE serverid = %d' % (validity, TARGET),
               dbname=sandbox.MNGDB)
    try:
        sandbox.on(TARGET, 'UPDATE server_info SET udb_validity = %d WHERE serverid = %d' % (validity, TARGET),
                   dbname=sandbox.MNGDB)
    except Exception:  # the target may be down; the source's view is what counts
        pass


def bare_copy():
    shutil.rmtree(BARE_DIR, ignore_errors=True)
    os.makedirs(BARE_DIR)
    shutil.chown(BARE_DIR, 'postgres', 'postgres')
    os.chmod(BARE_DIR, 0o700)
    started = time.monotonic()
    subprocess.run(['runuser', '-u', 'postgres', '--', sandbox.PG_BIN + '/pg_basebackup', '-D', BARE_DIR,
                    '-X', 'stream', '--checkpoint=fast', *host_args(0), '-U', 'postgres', '--no-password'],
                   env=env(), check=True, capture_output=True)
    seconds = time.monotonic() - started
    shutil.rmtree(BARE_DIR)
    return seconds


def recover(**args):
    started = time.monotonic()
    result = sandbox.module('forest_recover', host='forest%d' % TARGET, timeout=3600, **args)
    if result.get('failed'):
        raise SystemExit('forest_recover failed: %s' % result.get('msg'))
    result['wall'] = time.monotonic() - started
    return result


def online_round(scale):
    size = fill(scale)
    set_target(-1)
    nodes = sandbox.driver_nodes()
    driver = ForestDriver(nodes, sandbox.USERDB, sandbox.password(), read_duration=NOTICE).start()
    try:
        time.sleep(1)
        bare = bare_copy()
        result = recover(mode='online', data_dir=sandbox.data_dir(TARGET))
        time.sleep(1)
    finally:
        driver.stop()
    problems = lost_or_duplicated(driver, lambda sid: sandbox.connect(sid, sandbox.USERDB)) + driver.errors
    return dict(scale=scale, size=size, bare=bare, online=result['seconds'], wall=result['wall'],
                freeze=result['freeze_window'], cut=result['cut'], phases=result['phases'],
                copied=result['bytes_copied'], acked=len(driver.acked), problems=problems)


def drift(fraction):
    every = max(int(round(1 / fraction)), 1)
    sandbox.on(TARGET, 'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid %% %d = 0' % every)
    set_target(-1)


def offline_round(fraction):
    times = {}
    for method in ('dump', 'diff'):
        drift(fraction)
        times[method] = recover(mode='offline', method=method)
    return times


def report(online, offline, fraction):
    print('\nonline recovery under the reference driver (notice time %.0f s):' % NOTICE)
    heading = ('scale', 'user db', 'bare copy', 'online', 'ratio', 'freeze', 'goal', 'lag@cut', 'driver')
    print('  %-7s %9s %10s %10s %7s %9s %9s %8s %s' % heading)
    for row in online:
        print('  %-7d %7.0fMB %9.1fs %9.1fs %6.2fx %8.3fs %8s %7dB %s' % (
            row['scale'], row['size'] / 2 ** 20, row['bare'], row['online'], row['online'] / row['bare'],
            row['freeze'], '<= %.1fs' % (NOTICE + 1), row['cut']['lag_at_cut'],
            '%d writes, %s' % (row['acked'], '; '.join(row['problems']) or 'none lost or doubled')))
        print('          phases %s, %.0f MB copied, through ansible %.1fs' % (
            row['phases'], row['copied'] / 2 ** 20, row['wall']))
    if len(online) > 1:
        print('  freeze at the large size / small size: %.2fx (it must not grow with the size)'
              % (online[-1]['freeze'] / online[0]['freeze']))
    print('\noffline recovery, %.1f %% of pgbench_accounts drifted on serverid %d:' % (fraction * 100, TARGET))
    for row, times in zip(online, offline):
        dump, diff = times['dump']['seconds'], times['diff']['seconds']
        print('  scale %-5d dump (guide) %7.2fs   diff %7.2fs   diff is %.1fx faster (goal >= 5x); diff phases %s'
              % (row['scale'], dump, diff, dump / diff, times['diff']['dbsync']['phases']))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--small', type=int, default=20, help='pgbench scale of the small round (~15 MB each)')
    parser.add_argument('--large', type=int, default=200, help='pgbench scale of the large round; 0 skips it')
    parser.add_argument('--drift', type=float, default=0.001, help='fraction of accounts drifted for offline')
    args = parser.parse_args()
    sandbox.reset_pair()
    for serverid in (0, 1):
        sandbox.on(serverid, "UPDATE global_config SET value = '%d' WHERE key = 'mngdb_read_duration'" % NOTICE,
                   dbname=sandbox.MNGDB)
    online, offline = [], []
    try:
        for scale in [args.small] + ([args.large] if args.large else []):
            online.append(online_round(scale))
            offline.append(offline_round(args.drift))
    finally:
        sandbox.reset_pair()
        sandbox.both('DROP TABLE IF EXISTS %s, forest_load_items, forest_load' % PGBENCH_TABLES)
        shutil.rmtree(BARE_DIR, ignore_errors=True)
    report(online, offline, args.drift)


if __name__ == '__main__':
    main()
