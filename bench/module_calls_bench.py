"""The CPU of module calls that follow one another, ad hoc each or as the tasks of one playbook, on the sandbox.

The tests call the modules as a DBA does, `ansible forest0 -m pgforest.cluster.<module>` (sandbox.module()); where
several calls follow one another with nothing between them (a status then a compare after a recovery, the
bad-input catalogue's refusals), sandbox.modules() runs them as one playbook, and Ansible's start (the CLI, its
imports, the inventory, the module's AnsiballZ archive) is paid once instead of each time.  For N calls of
forest_status (a healthy pair) and forest_dbsync's compare (the sandbox's user database), alternating the two
ways so that a change of load on the machine falls on both:

  ad hoc      N runs of `ansible forest0 -m ...`, one after another
  playbook    one ansible-playbook run with the same N calls as tasks (sandbox.modules)

CPU is user + system of the runs and their children (resource.getrusage), printed with the playbook's ratio to
ad hoc's.

    .venv/bin/python bench/module_calls_bench.py [--calls 6] [--rounds 3]
"""
import argparse
import resource

from pgforest_dev import sandbox


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def calls_of(count):
    """count calls, status and compare in turn, as sandbox.modules() takes them."""
    return [('forest_status', 'forest0', {}) if number % 2 == 0 else ('forest_dbsync', 'forest0', {})
            for number in range(count)]


def ad_hoc(calls):
    for name, host, args in calls:
        result = sandbox.module(name, host=host, **args)
        if result.get('failed'):
            raise SystemExit('%s failed: %s' % (name, result.get('msg')))


def playbook(calls):
    for (name, _host, _args), result in zip(calls, sandbox.modules(calls)):
        if result.get('failed'):
            raise SystemExit('%s failed: %s' % (name, result.get('msg')))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--calls', type=int, default=6, help='module calls per way and round (default 6)')
    parser.add_argument('--rounds', type=int, default=3, help='rounds, each way once per round (default 3)')
    options = parser.parse_args()
    if options.calls < 1 or options.rounds < 1:
        parser.error('--calls and --rounds must be 1 or more')
    calls = calls_of(options.calls)
    spent = {'ad hoc': 0.0, 'playbook': 0.0}
    for _round in range(options.rounds):
        for way, run in (('ad hoc', ad_hoc), ('playbook', playbook)):
            before = children_cpu()
            run(calls)
            spent[way] += children_cpu() - before
    total_calls = options.calls * options.rounds
    print('%d module calls per way (%d rounds of %d: forest_status and forest_dbsync in turn)'
          % (total_calls, options.rounds, options.calls))
    print('%-10s %12s %14s %8s' % ('way', 'CPU s', 'CPU s / call', 'ratio'))
    for way in ('ad hoc', 'playbook'):
        print('%-10s %12.2f %14.3f %8.2f' % (way, spent[way], spent[way] / total_calls,
                                             spent[way] / spent['ad hoc']))


if __name__ == '__main__':
    main()
