"""What an online recovery costs when the broken node still holds almost everything: resync (only the
drift moves) against basebackup (the whole server is copied), measured in the same run on the same data.

For each pgbench scale (70 ~ 1 GB, 700 ~ 10 GB) on the sandbox pair, the reference driver writing all along
(mngdb_read_duration 1 s, the sandbox's):

  1. serverid 0 filled, serverid 1 broken; basebackup online recovery of serverid 1 (the whole server);
  2. serverid 1 stopped (immediate) and marked broken by the driver; on serverid 0, --drift of the accounts
     changed: half updated, a quarter deleted, a quarter inserted anew (the applications' writes while it
     was out), every n-th account (--pattern spread) or the newest ones (clustered); the driver's own
     writes go on;
  3. resync online recovery of serverid 1 (method=resync): compare against the slot's snapshot, repair of
     what differs, the subscription's catch-up, the usual freeze;
  4. dbsync compare: both nodes equal; the driver's writes: none lost or doubled.

Bytes: what serverid 0's server sent over TCP during each recovery (an nftables counter on its address
and port: pg_basebackup's stream, the compare's hashes and the repaired rows, the logical replication
stream, and the replies to the driver, whose rate alone is measured first and reported beside).

    .venv/bin/python bench/resync_bench.py [--scales 70,700] [--drift 0.01] [--pattern spread|clustered] [--link-mbit 1000]

Needs the sandbox (make sandbox) and root (nft).
"""
import argparse
import json
import subprocess
import time

from pgforest_dev import sandbox
from pgforest_dev.bench import PGBENCH_TABLES, fill
from pgforest_dev.forest_driver import ForestDriver, lost_or_duplicated
from pgforest_dev.wait import driver_sees, driver_writes_to_every_node

TARGET = 1
TABLE = 'inet pgforest_resync_bench'


class SourceBytes(object):
    """Bytes serverid 0's server sends over TCP, from an nftables counter in the output hook; with
    link_mbit, what exceeds that rate is dropped first (a policer: TCP backs off as over a slower link;
    there is no tc netem here), so that the counter sees what got through."""

    def __init__(self, link_mbit=None):
        self.link_mbit = link_mbit

    def __enter__(self):
        node = sandbox.NODES[0]
        source = ['ip', 'saddr', node['host'], 'tcp', 'sport', str(node['port'])]
        subprocess.run(['nft', 'add', 'table', TABLE], check=True)
        subprocess.run(['nft', 'add', 'chain', TABLE, 'out', '{ type filter hook output priority 0; }'], check=True)
        if self.link_mbit:
            kbytes = int(self.link_mbit * 1e6 / 8 / 1024)
            subprocess.run(['nft', 'add', 'rule', TABLE, 'out'] + source + [
                'limit', 'rate', 'over', '%d' % kbytes, 'kbytes/second', 'burst', '%d' % max(kbytes // 50, 64),
                'kbytes', 'drop'], check=True)
        subprocess.run(['nft', 'add', 'rule', TABLE, 'out'] + source + ['counter'], check=True)
        return self

    def __exit__(self, *exc):
        subprocess.run(['nft', 'delete', 'table', TABLE], check=False)

    @staticmethod
    def now():
        listed = json.loads(subprocess.run(['nft', '-j', 'list', 'table', TABLE], check=True, capture_output=True,
                                           text=True).stdout)
        for item in listed['nftables']:
            for expr in item.get('rule', {}).get('expr', []):
                if 'counter' in expr:
                    return expr['counter']['bytes']
        raise SystemExit('no nftables counter in %s' % TABLE)


def recover(counter, **args):
    before, started = counter.now(), time.monotonic()
    result = sandbox.module('forest_recover', host='forest%d' % TARGET, timeout=7200, mode='online',
                            data_dir=sandbox.data_dir(TARGET), **args)
    if result.get('failed'):
        raise SystemExit('forest_recover %s failed: %s' % (args, result.get('msg')))
    result.update(wall=time.monotonic() - started, sent=counter.now() - before)
    return result


def drift(fraction, pattern):
    """fraction of the accounts changed on serverid 0: half updated, a quarter deleted, a quarter new.
    spread: every n-th account (the worst case for a compare by buckets: most buckets hold a change);
    clustered: the newest accounts (an application that works on recent rows, as most do)."""
    accounts = sandbox.query(0, 'SELECT count(*) FROM pgbench_accounts', dbname=sandbox.USERDB)[0][0]
    every = max(int(round(1 / fraction)), 1)
    if pattern == 'spread':
        updated = 'aid %% %d = 0' % (every * 2)
        deleted = 'aid %% %d = 1' % (every * 4)
    else:
        changed = accounts // every
        updated = 'aid > %d' % (accounts - changed // 2)
        deleted = 'aid > %d AND aid <= %d' % (accounts - changed // 2 - changed // 4, accounts - changed // 2)
    sandbox.on(0, 'UPDATE pgbench_accounts SET abalance = abalance + 7 WHERE ' + updated, dbname=sandbox.USERDB)
    sandbox.on(0, 'DELETE FROM pgbench_accounts WHERE ' + deleted, dbname=sandbox.USERDB)
    sandbox.on(0, 'INSERT INTO pgbench_accounts (aid, bid, abalance, filler) SELECT %d + g, 1, g, md5(g::text) '
                  'FROM generate_series(1, %d) g' % (accounts, accounts // (every * 4)), dbname=sandbox.USERDB)
    return accounts


def driver_rate(counter, driver, seconds=5.0):
    """Bytes per second the source sends with only the driver at work."""
    before, started = counter.now(), time.monotonic()
    driver_writes_to_every_node(driver)
    time.sleep(max(0.0, seconds - (time.monotonic() - started)))  # a bench measures over a span of time
    return (counter.now() - before) / (time.monotonic() - started)


def one_size(counter, scale, fraction, pattern):
    sandbox.reset_pair()
    sandbox.both('DROP TABLE IF EXISTS %s, forest_load_items, forest_load' % PGBENCH_TABLES)
    size = fill(scale)
    # pgbench_history has no primary key, which resync refuses (it would break the source's UPDATEs and
    # DELETEs once published); it is empty after pgbench -i anyway.
    sandbox.on(0, 'DROP TABLE pgbench_history', dbname=sandbox.USERDB)
    sandbox.set_views({TARGET: -1}, {TARGET: -1})
    nodes = sandbox.driver_nodes()
    driver = ForestDriver(nodes, sandbox.USERDB, sandbox.password(), listen=False).start()
    try:
        print('  scale %d: basebackup online recovery ...' % scale, flush=True)
        full = recover(counter, method='basebackup')
        rate = driver_rate(counter, driver)
        sandbox.pg_ctl(TARGET, 'stop', '-m', 'immediate')
        driver_sees(driver, {TARGET: -1})
        accounts = drift(fraction, pattern)
        print('  scale %d: basebackup %.1fs; %.1f %% of %d accounts drifted; resync ...'
              % (scale, full['wall'], fraction * 100, accounts), flush=True)
        resync = recover(counter, method='resync')
        driver_writes_to_every_node(driver)
    finally:
        driver.stop()
    problems = lost_or_duplicated(driver, lambda sid: sandbox.connect(sid, sandbox.USERDB)) + driver.errors
    compared = sandbox.module('forest_dbsync', timeout=7200)
    if not compared.get('equal'):
        raise SystemExit('the resynced node differs: %s' % compared.get('report', compared.get('msg')))
    repaired = resync['resync'][sandbox.USERDB]['summary']
    return dict(scale=scale, gb=size / 2 ** 30, size=size, full=full, resync=resync, rate=rate, acked=len(driver.acked),
                problems=problems, rows=repaired['rows_copied'], summary=repaired)


def report(rows, fraction, pattern):
    print('\nper size (the driver writing all along; bytes = sent by serverid 0\'s server during the recovery):')
    print('%-6s %7s | %8s %7s %10s | %8s %7s %10s %9s | %6s %7s | %s' % (
        'scale', 'GB', 'basebkp', 'freeze', 'MB sent', 'resync', 'freeze', 'MB sent', 'rows', 'time', 'bytes',
        'driver'))
    for row in rows:
        full, resync = row['full'], row['resync']
        print('%-6d %7.2f | %7.1fs %6.3fs %10.1f | %7.1fs %6.3fs %10.1f %9d | %5.2fx %6.2f%% | %s' % (
            row['scale'], row['gb'], full['wall'], full['freeze_window'], full['sent'] / 2 ** 20, resync['wall'],
            resync['freeze_window'], resync['sent'] / 2 ** 20, row['rows'], resync['wall'] / full['wall'],
            100.0 * resync['sent'] / row['size'],
            '%d writes, %s' % (row['acked'], '; '.join(row['problems']) or 'none lost or doubled')))
    print('\ntime = resync / basebackup; bytes = resync\'s bytes sent / the user database\'s size.')
    print('drift: %.1f %% of the accounts (half updated, a quarter deleted, a quarter inserted), %s.'
          % (fraction * 100, pattern))
    for row in rows:
        full, resync = row['full'], row['resync']
        print('scale %d: the driver alone makes serverid 0 send %.0f kB/s; resync phases %s; basebackup phases %s'
              % (row['scale'], row['rate'] / 1024, resync['phases'], full['phases']))
        link = 125e6  # 1 Gbit/s in bytes per second
        print('  on a 1 Gbit/s link the bytes alone take: basebackup %.1f s, resync %.2f s'
              % (full['sent'] / link, resync['sent'] / link))
        compared = dict((key, value) for key, value in row['summary'].items() if not isinstance(value, (list, dict)))
        cut = dict((key, value) for key, value in resync['cut'].items()
                   if not isinstance(value, (list, dict)) or key == 'apply_wait_by_slot')
        print('  resync compare and repair: %s' % compared)
        print('  resync cut: %s' % cut)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--scales', default='70,700', help='pgbench scales, comma separated (70 ~ 1 GB)')
    parser.add_argument('--drift', type=float, default=0.01, help='fraction of the accounts changed while out')
    parser.add_argument('--link-mbit', type=float, default=None,
                        help='limit what serverid 0 sends to this many Mbit/s (e.g. 1000 for a 1 Gbit/s link)')
    parser.add_argument('--pattern', choices=['spread', 'clustered'], default='spread',
                        help='where the drift falls: every n-th account, or the newest ones')
    args = parser.parse_args()
    scales = [int(value) for value in args.scales.split(',')]
    if not 0 < args.drift <= 0.5 or any(scale < 1 for scale in scales) or (args.link_mbit is not None
                                                                           and not 1 <= args.link_mbit <= 100000):
        raise SystemExit('--drift must be in (0, 0.5], every scale at least 1, --link-mbit in [1, 100000]')
    rows = []
    with SourceBytes(args.link_mbit) as counter:
        try:
            for scale in scales:
                rows.append(one_size(counter, scale, args.drift, args.pattern))
        finally:
            sandbox.reset_pair()
            sandbox.both('DROP TABLE IF EXISTS %s, forest_load_items, forest_load' % PGBENCH_TABLES)
    report(rows, args.drift, args.pattern)
    if args.link_mbit:
        print('serverid 0 limited to %g Mbit/s (an nftables policer on its address and port).' % args.link_mbit)


if __name__ == '__main__':
    main()
