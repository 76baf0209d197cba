"""Fixtures every suite shares.  The helpers (sandbox, reference driver) live in the package
pgforest_dev (dev/), which also makes the collection importable."""
import os

import pytest

from pgforest_dev import sandbox
# Every case's time and CPU, in tests/output/profile (tests/profiler.py).
from profiler import pytest_runtest_protocol  # noqa: F401  pylint: disable=unused-import

# What a test run writes stays in the checkout's ignored paths (and the sandbox and lab directories):
# pytest's tmp_path under .cache/ (PYTEST_DEBUG_TEMPROOT, read when the first tmp_path is made), and
# Ansible's home (local tmp, caches) under .ansible/ for every ansible-* the tests start.
TEMP_ROOT = os.path.join(sandbox.REPO, '.cache')
os.makedirs(TEMP_ROOT, exist_ok=True)
os.environ.setdefault('PYTEST_DEBUG_TEMPROOT', TEMP_ROOT)
os.environ.setdefault('ANSIBLE_HOME', sandbox.ANSIBLE_HOME)
# Where a collection or role installed for the user would land (and outlive the run, shadowing the one under
# test); the rest of ~/.ansible is scratch of whatever else runs on the machine (local tmp, ansible-test's).
USER_ANSIBLE = os.path.expanduser('~/.ansible')
USER_ANSIBLE_INSTALLS = ('collections', 'roles')
# Files the tests themselves name in /tmp (the lab's driver results), removed by the tests that made them.
TMP_PREFIXES = ('driver-',)


def user_ansible_listing():
    """{path under ~/.ansible/collections or roles: mtime}: what an install there changes."""
    found = {}
    for path, dirs, files in os.walk(USER_ANSIBLE):
        if path == USER_ANSIBLE:
            dirs[:] = [name for name in dirs if name in USER_ANSIBLE_INSTALLS]
            files = []
        for name in dirs + files:
            full = os.path.join(path, name)
            try:
                found[os.path.relpath(full, USER_ANSIBLE)] = os.lstat(full).st_mtime_ns
            except FileNotFoundError:
                continue
    return found


def own_tmp_entries():
    return set(name for name in os.listdir('/tmp') if name.startswith(TMP_PREFIXES))


@pytest.fixture(scope='session', autouse=True)
def writes_nothing_outside_the_checkout(tmp_path_factory):
    """The run installs nothing in ~/.ansible (a collection installed there outlives the run and shadows
    the one under test), leaves no files of its own in /tmp, and its tmp_path is in the checkout's .cache/."""
    basetemp = str(tmp_path_factory.getbasetemp())
    assert basetemp.startswith(TEMP_ROOT + os.sep), basetemp
    home_before, tmp_before = user_ansible_listing(), own_tmp_entries()
    yield
    home_after = user_ansible_listing()
    changed = sorted(path for path, mtime in home_after.items() if home_before.get(path) != mtime)
    assert changed == [], 'the test run installed in ~/.ansible: %s' % changed[:10]
    left = sorted(own_tmp_entries() - tmp_before)
    assert left == [], 'the test run left in /tmp: %s' % left


@pytest.fixture
def provisioned_pair():
    """Both management databases as provisioned, before and after the test."""
    sandbox.reset_pair()
    yield
    sandbox.reset_pair()


# The cases that take a minute (faults injected into recoveries, recoveries under load) start
# first: parallel workers then finish together instead of one worker running the longest case last.
SLOW_FILES = ('test_mess.py', 'test_faults.py', 'test_soak.py', 'test_forest_recover_online.py', 'test_security.py',
              'test_split_brain.py')


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: item.path.name not in SLOW_FILES)
