"""Fixtures every suite shares.  The helpers (sandbox, reference driver) live in the package
pgforest_dev (dev/), which also makes the collection importable."""
import pytest

from pgforest_dev import sandbox


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
