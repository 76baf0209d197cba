"""The reliability suite records each case (tests/recorder.py)."""
from recorder import pytest_runtest_logreport, pytest_sessionfinish, record, soak_recoveries  # noqa: F401  pylint: disable=unused-import
