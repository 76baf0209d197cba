"""Fixtures shared by the integration tests."""
import pytest

import sandbox


@pytest.fixture
def provisioned_pair():
    """Both management databases as provisioned, before and after the test."""
    sandbox.reset_pair()
    yield
    sandbox.reset_pair()
