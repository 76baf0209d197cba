"""The one wait loop and the one fan-out: what a caller gets when the event comes, when it does
not, and when a call fails or hangs."""
import threading
import time

import pytest

from ansible_collections.pgforest.cluster.plugins.module_utils.errors import ForestError
from ansible_collections.pgforest.cluster.plugins.module_utils.fan_out import all_of, fan_out
from ansible_collections.pgforest.cluster.plugins.module_utils.wait import (
    WaitTimeout, pause, ready_within, wait_until)


def test_wait_until_returns_what_ready_found_as_soon_as_it_is_true():
    calls = []
    assert wait_until('three calls', lambda: len(calls) >= 3 and 'found' or calls.append(1), 5, 0.001) == 'found'
    assert len(calls) == 3


def test_wait_until_checks_once_more_at_the_deadline_then_names_what_it_waited_for():
    calls = []
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as caught:
        wait_until('the standby to catch up', lambda: calls.append(1), 0.05, 0.01, state=lambda: 'lag 42 bytes')
    assert time.monotonic() - started >= 0.05 and len(calls) >= 2
    assert str(caught.value) == 'gave up waiting for the standby to catch up after 0.1 s (lag 42 bytes)'
    assert isinstance(caught.value, ForestError) and caught.value.what == 'the standby to catch up'


def test_a_zero_or_negative_timeout_still_looks_once():
    for timeout in (0, -3):
        calls = []
        assert ready_within(lambda: calls.append(1), timeout, 0.01) is False and len(calls) == 1
    assert 'after 0 s' in str(WaitTimeout('x', 0))


def test_progress_is_said_while_waiting():
    said = []
    pause(0.12, 0.01, progress=(0.03, said.append))
    assert said and all(0 < left < 0.12 for left in said)
    assert said == sorted(said, reverse=True)


def test_fan_out_runs_calls_at_once_and_keeps_each_outcome():
    barrier = threading.Barrier(3, timeout=5)  # all three must be running together to get past it

    def ok(value):
        return lambda: barrier.wait() is not None and value

    def broken():
        barrier.wait()
        raise KeyError('lost row')
    outcomes = fan_out(dict(a=ok(1), b=broken, c=ok(3)))
    assert list(outcomes) == ['a', 'b', 'c']
    assert (outcomes['a'].done, outcomes['a'].value, outcomes['a'].error) == (True, 1, None)
    assert outcomes['b'].done and isinstance(outcomes['b'].error, KeyError)


def test_fan_out_gives_up_on_a_hung_call_at_its_timeout():
    release = threading.Event()
    started = time.monotonic()
    outcomes = fan_out(dict(hung=lambda: release.wait(10), quick=lambda: 'yes'), timeout=0.1)
    assert time.monotonic() - started < 5
    assert not outcomes['hung'].done and outcomes['quick'].value == 'yes'
    release.set()


def test_all_of_raises_the_first_failure_itself_in_the_callers_thread():
    with pytest.raises(KeyError):
        all_of(dict(a=lambda: 1, b=lambda: {}['missing']))
    assert all_of(dict(a=lambda: 1, b=lambda: 2)) == dict(a=1, b=2)


def test_a_failed_look_at_the_state_does_not_replace_the_timeout():
    def broken_look():
        raise OSError('server closed the connection')
    with pytest.raises(WaitTimeout) as caught:
        wait_until('the replay', lambda: False, 0, 0.01, state=broken_look)
    assert str(caught.value) == ('gave up waiting for the replay after 0 s '
                                 '(the state could not be read: server closed the connection)')
