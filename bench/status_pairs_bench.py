"""status.yml over many pairs against one pair, in the same run.

Provisions N sandbox pairs (pgforest_dev.pairs: 127.0.<k>.1/2, each pair its own child group with
forest_pair, two user databases each) in a network namespace of its own, then times
`ansible-playbook playbooks/status.yml` (each pair read by its leader, all pairs at once):

  1 pair        --limit pair0
  N pairs       the whole inventory, Ansible's default forks (5)
  N pairs, -f   the whole inventory, forks = 2N (every host at once)

Each case runs --rounds times; the table prints the median and the ratio to one pair.

    .venv/bin/python bench/status_pairs_bench.py [--pairs 10] [--rounds 3]
"""
import argparse
import hashlib
import os
import statistics
import sys
import time

from pgforest_dev.bench_namespace import run_inside_own_namespace

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TOP = '/var/lib/pgforest-sandbox'
TAG = hashlib.sha256(os.path.realpath(REPO).encode()).hexdigest()[:8]
NAMESPACE = 'pgf-%s-pairs' % TAG
SANDBOX_DIR = os.path.join(TOP, '%s-pairs-bench' % TAG)


def timed_status(pairs, inventory, *args):
    started = time.monotonic()
    run = pairs.playbook('status.yml', inventory, *args, extra_vars=dict(fail_unless_healthy=True))
    seconds = time.monotonic() - started
    if run.returncode != 0:
        raise SystemExit('status.yml failed:\n' + run.stdout[-3000:])
    return seconds


def bench(count, rounds):
    from pgforest_dev import pairs
    inventory = pairs.write_inventory(count, os.path.join(SANDBOX_DIR, 'inventory.yml'), ('userdb', 'ledger'))
    try:
        started = time.monotonic()
        provisioned = pairs.playbook('provision.yml', inventory, '-f', str(2 * count), timeout=3600)
        if provisioned.returncode != 0:
            raise SystemExit('provision failed:\n' + provisioned.stdout[-3000:])
        print('provisioned %d pairs (%d servers, 2 user databases each) in %.0f s'
              % (count, 2 * count, time.monotonic() - started), flush=True)
        cases = [('1 pair (--limit pair0)', ('--limit', 'pair0')),
                 ('%d pairs, default forks (5)' % count, ()),
                 ('%d pairs, -f %d' % (count, 2 * count), ('-f', str(2 * count)))]
        seconds = dict((name, []) for name, _args in cases)
        for _round in range(rounds):
            for name, args in cases:  # interleaved, so a slow moment of the machine hits every case
                seconds[name].append(timed_status(pairs, inventory, *args))
        baseline = statistics.median(seconds[cases[0][0]])
        print('\nstatus.yml, median of %d rounds (this machine: %d cores)' % (rounds, os.cpu_count()))
        print('%-32s %10s %14s %16s' % ('case', 'seconds', 'vs one pair', 'per pair'))
        for name, _args in cases:
            median = statistics.median(seconds[name])
            pairs_read = 1 if name.startswith('1 pair') else count
            print('%-32s %10.2f %13.2fx %15.2fs' % (name, median, median / baseline, median / pairs_read))
    finally:
        pairs.down(count)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--pairs', type=int, default=10)
    parser.add_argument('--rounds', type=int, default=3)
    options = parser.parse_args()
    if options.pairs < 1 or options.pairs > 200 or options.rounds < 1:
        parser.error('--pairs is 1 to 200 and --rounds at least 1')
    if not os.environ.get('FOREST_BENCH_INSIDE'):
        return run_inside_own_namespace(__file__, NAMESPACE, SANDBOX_DIR, sys.argv[1:])
    bench(options.pairs, options.rounds)
    return 0


if __name__ == '__main__':
    sys.exit(main())
