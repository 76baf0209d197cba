"""Where a test run's time and CPU go, case by case: for each case, its wall time (setup, call and
teardown), the CPU of the pytest process and of the children it waited for (ansible-playbook, ansible,
psql, pg_dump...), and the CPU of the sandbox's two postmasters and their ended backends.  On a machine
the suites saturate (make test), CPU is what a case costs the others; wall time is what it waits.

Each pytest process (a worker too) appends one JSON line per case to tests/output/profile/<run>.jsonl;
scripts/test_profile.py sums them up by case and by file."""
import json
import os
import resource
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROFILE_DIR = os.path.join(REPO, 'tests', 'output', 'profile')
TICKS = os.sysconf('SC_CLK_TCK')


def postgres_cpu():
    """CPU seconds of the sandbox's postmasters, their own and their ended children's; 0 where none runs."""
    sandbox = os.environ.get('FOREST_SANDBOX_DIR') or os.path.join(REPO, '.sandbox')
    total = 0.0
    for node in ('forest0', 'forest1'):  # sandbox/inventory.yml's hosts
        try:
            with open(os.path.join(sandbox, node, 'data', 'postmaster.pid')) as handle:
                pid = int(handle.readline())
            with open('/proc/%d/stat' % pid) as handle:
                fields = handle.read().rsplit(')', 1)[1].split()
        except (OSError, ValueError):
            continue
        # utime, stime, cutime, cstime are fields 14-17 of stat(5); after the ')' the third field is 3.
        total += sum(int(value) for value in fields[11:15]) / TICKS
    return total


def cpu_now():
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (time.monotonic(), own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime, postgres_cpu())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item):
    before = cpu_now()
    yield
    after = cpu_now()
    wall, own, children, postgres = (round(b - a, 2) for a, b in zip(before, after))
    # A server restarted during the case starts its count again: its delta says nothing then.
    entry = dict(case=item.nodeid, wall=wall, pytest_cpu=own, children_cpu=children,
                 postgres_cpu=postgres if postgres >= 0 else None,
                 worker_set=os.environ.get('FOREST_WORKER_SET', ''))
    os.makedirs(PROFILE_DIR, exist_ok=True)
    name = '%s-%d.jsonl' % (os.environ.get('PYTEST_XDIST_WORKER', 'main'), os.getpid())
    with open(os.path.join(PROFILE_DIR, name), 'a') as handle:
        handle.write(json.dumps(entry) + '\n')
