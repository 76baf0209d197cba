# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running calls at the same time, one thread each: the one fan-out of the collection.

Every caller gets each call's outcome the same way: its value, the exception it raised (never
lost, never turned into another error), or neither when it did not finish within the timeout.
The threads are daemons, so a hung call (a server that accepts and never answers) cannot keep
the module's process alive after its deadline."""

from __future__ import annotations

import threading
import time


class Outcome:
    """What one call came to: done with `value`, failed with `error`, or not finished."""

    __slots__ = ('done', 'value', 'error')

    def __init__(self):
        self.done = False
        self.value = None
        self.error = None


def fan_out(calls, timeout=None):
    """Run every callable of `calls` ({key: callable with no argument}) in its own thread and wait
    for all of them, at most `timeout` seconds in total when given; {key: Outcome}, in the same
    order."""
    outcomes = dict((key, Outcome()) for key in calls)

    def work(key, call):
        outcome = outcomes[key]
        try:
            outcome.value = call()
        except BaseException as exc:  # handed to the caller's thread, whatever it is
            outcome.error = exc
        outcome.done = True

    threads = [threading.Thread(target=work, args=(key, call), daemon=True) for key, call in calls.items()]
    for thread in threads:
        thread.start()
    end = None if timeout is None else time.monotonic() + timeout
    for thread in threads:
        thread.join(None if end is None else max(0.0, end - time.monotonic()))
    return outcomes


def all_of(calls):
    """fan_out with no timeout, for calls that must all succeed: {key: value}; the first failed
    call's exception (in the order of `calls`) is raised in the caller's thread."""
    outcomes = fan_out(calls)
    for outcome in outcomes.values():
        if outcome.error is not None:
            raise outcome.error
    return dict((key, outcome.value) for key, outcome in outcomes.items())
