"""Sum up a test run's profile (tests/output/profile/*.jsonl, written by tests/profiler.py): the costliest
cases and files by CPU (pytest, its children, the sandbox's servers) and their wall time.

    python scripts/test_profile.py [N]     the N costliest cases (25) and every file"""
import collections
import glob
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load():
    entries = []
    for path in sorted(glob.glob(os.path.join(REPO, 'tests', 'output', 'profile', '*.jsonl'))):
        with open(path) as handle:
            entries += [json.loads(line) for line in handle if line.strip()]
    return entries


def cpu(entry):
    return entry['pytest_cpu'] + entry['children_cpu'] + (entry['postgres_cpu'] or 0)


def main(argv):
    if len(argv) > 1 or (argv and not argv[0].isdigit()):
        print(__doc__.strip())
        return 0 if argv and argv[0] in ('-h', '--help') else 2
    count = int(argv[0]) if argv else 25
    entries = load()
    if not entries:
        print('no profile in tests/output/profile: run a suite first')
        return 1
    line = '%8s %8s %8s %8s %8s  %s'
    print(line % ('cpu s', 'pytest', 'children', 'servers', 'wall s', 'case'))
    for entry in sorted(entries, key=cpu, reverse=True)[:count]:
        print(line % ('%.1f' % cpu(entry), '%.1f' % entry['pytest_cpu'], '%.1f' % entry['children_cpu'],
                      '%.1f' % (entry['postgres_cpu'] or 0), '%.1f' % entry['wall'], entry['case']))
    files = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for entry in entries:
        totals = files[entry['case'].split('::')[0]]
        totals[0] += 1
        totals[1] += cpu(entry)
        totals[2] += entry['wall']
    print('\n%6s %8s %8s  %s' % ('cases', 'cpu s', 'wall s', 'file'))
    for name, (cases, cpu_s, wall) in sorted(files.items(), key=lambda item: -item[1][1]):
        print('%6d %8.1f %8.1f  %s' % (cases, cpu_s, wall, name))
    print('%6d %8.1f %8.1f  all' % (len(entries), sum(map(cpu, entries)), sum(e['wall'] for e in entries)))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
