"""What TLS costs: the same work on the sandbox pair without TLS (the baseline) and with forest_tls on
(provision.yml turns it on, then off again at the end), measured in the same run.

Builds a pgbench database (`benchdb`, scale 20 = 2 M accounts by default) on both nodes, then, for each of
plain TCP and TLS (verify-full against the pair's private CA), takes the median of --rounds of:

  compare     forest_dbsync compare, nothing differs (hashes travel, not rows)      module seconds
  full copy   forest_dbsync mode=sync scope=all onto the same tables emptied         module seconds
              (every row through psql ... COPY pipes)
  basebackup  pg_basebackup -X stream of serverid 0 (what online recovery copies)    wall seconds
  status      forest_status (connections and a handful of queries to both nodes)   wall seconds

Ratios are TLS / plain (1.00x: TLS costs nothing). Both servers and the client share this machine's CPUs, so
encryption on both ends is paid from the same cores: on two real hosts each pays half.

    .venv/bin/python bench/tls_bench.py [--scale 20] [--rounds 3]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from pgforest_dev import sandbox
from pgforest_dev.bench import DB, dbsync, drop_databases, env as bench_env, pgbench_pair, psql

CA_DIR = os.path.join(sandbox.SANDBOX, 'tls-bench-ca')


def provision(tls):
    done = sandbox.playbook('provision.yml', extra_vars=dict(forest_tls=tls, forest_tls_ca_dir=CA_DIR))
    if done.returncode != 0:
        raise SystemExit('provision.yml forest_tls=%s failed:\n%s' % (tls, done.stdout[-3000:]))


def tls_options(tls):
    if not tls:
        return dict(ssl_mode='disable')
    return dict(ssl_mode='verify-full', ssl_rootcert=os.path.join(CA_DIR, 'ca.crt'))


def basebackup(tls):
    target = tempfile.mkdtemp(prefix='tls-bench-', dir=sandbox.SANDBOX)
    conninfo = 'host=127.0.0.11 port=5432 user=postgres sslmode=%s' % tls_options(tls)['ssl_mode']
    if tls:
        conninfo += ' sslrootcert=%s' % tls_options(tls)['ssl_rootcert']
    started = time.monotonic()
    try:
        subprocess.run([sandbox.PG_BIN + '/pg_basebackup', '-d', conninfo, '-D', target, '-X', 'stream',
                        '--checkpoint=fast', '--no-sync'], env=bench_env(), check=True, capture_output=True)
        return time.monotonic() - started
    finally:
        shutil.rmtree(target, ignore_errors=True)


def measure(tls, rounds):
    options = tls_options(tls)
    times = dict(compare=[], full_copy=[], basebackup=[], status=[])
    for _round in range(rounds):
        result, _wall = dbsync(**options)
        assert result['equal'], result['tables']
        times['compare'].append(result['summary']['seconds'])
        psql(1, DB, 'TRUNCATE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history')
        result, _wall = dbsync(mode='sync', scope='all', source=0, **options)
        times['full_copy'].append(result['summary']['seconds'])
        times['basebackup'].append(basebackup(tls))
        started = time.monotonic()
        status = sandbox.module('forest_status', userdb=DB, **options)
        times['status'].append(time.monotonic() - started)
        if tls and not all(node['ssl'] for node in status['nodes']):
            raise SystemExit('TLS was asked for but a session was not encrypted: %s' % status['nodes'])
    return dict((name, statistics.median(values)) for name, values in times.items())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--scale', type=int, default=20, help='pgbench scale (20 = 2 M accounts)')
    parser.add_argument('--rounds', type=int, default=3, help='rounds of each measure (the median is shown)')
    args = parser.parse_args()
    print('setting up pgbench scale %d on both nodes ...' % args.scale, flush=True)
    pgbench_pair(args.scale)
    size = int(psql(0, DB, 'SELECT pg_database_size(current_database())'))
    print('%.0f MB per node, median of %d rounds\n' % (size / 2 ** 20, args.rounds), flush=True)
    try:
        plain = measure(False, args.rounds)
        provision(True)
        tls = measure(True, args.rounds)
    finally:
        provision(False)
        drop_databases()
    print('%-12s %12s %12s %8s' % ('task', 'plain s', 'TLS s', 'ratio'))
    for name in ('compare', 'full_copy', 'basebackup', 'status'):
        print('%-12s %12.2f %12.2f %7.2fx' % (name, plain[name], tls[name], tls[name] / plain[name]))
    print('\nratio = with forest_tls (verify-full) / plain TCP, same run (lower is better; 1.00x costs nothing)')


if __name__ == '__main__':
    main()
