"""Make the collection importable as ansible_collections.pgforest.cluster."""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'collections'))
sys.path.insert(0, os.path.join(REPO, 'tests'))


import pytest  # noqa: E402  (after the path set-up above)

import sandbox  # noqa: E402


@pytest.fixture
def provisioned_pair():
    """Both management databases as provisioned, before and after the test."""
    sandbox.reset_pair()
    yield
    sandbox.reset_pair()
