# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting for an event with a deadline: the one loop of checks and sleeps."""

from __future__ import annotations

import time

from .errors import ForestError


class WaitTimeout(ForestError):
    """An awaited event did not happen in time; the message names it and how long was waited."""

    def __init__(self, what, timeout, state=None):
        self.what = what
        self.timeout = timeout
        self.state = state
        found = ' (%s)' % state if state else ''
        super().__init__('gave up waiting for %s after %s s%s' % (what, _seconds(timeout), found))


def _seconds(value):
    return ('%.1f' % value).rstrip('0').rstrip('.') if value else '0'


def wait_until(what, ready, timeout, poll, state=None, progress=None):
    """Call ready() until it returns true (that value is returned) or `timeout` seconds have passed:
    it is called at least once, and once more at the deadline. On timeout raise WaitTimeout naming
    `what` and, when `state` is given, what state() says the last look found.

    progress=(every, say): say(seconds_left) every `every` seconds while waiting."""
    started = time.monotonic()
    deadline = started + timeout
    every, say = progress if progress else (None, None)
    said_at = started
    while True:
        found = ready()
        if found:
            return found
        now = time.monotonic()
        left = deadline - now
        if left <= 0:
            raise WaitTimeout(what, timeout, _last_look(state))
        if say is not None and now - said_at >= every:
            said_at = now
            say(left)
        time.sleep(min(poll, left) if every is None else min(poll, left, every))


def _last_look(state):
    """What state() says for the timeout's message; a failed look (the server it asks may be what
    is slow) is said, never raised, so the timeout and its advice stay the error."""
    if state is None:
        return None
    try:
        return state()
    except Exception as exc:  # any failure to look
        return 'the state could not be read: %s' % exc


def ready_within(ready, timeout, poll):
    """wait_until for a caller that goes on either way: whether ready() became true in time."""
    try:
        return bool(wait_until('', ready, timeout, poll))
    except WaitTimeout:
        return False


def pause(seconds, poll, progress=None):
    """Let `seconds` pass (nothing to check: the time itself is the event, e.g. the drivers' poll
    interval), saying how much is left as wait_until does."""
    try:
        wait_until('', lambda: False, seconds, poll, progress=progress)
    except WaitTimeout:
        pass
