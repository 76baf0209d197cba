# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting for an event with a deadline: the one loop of checks and sleeps."""

from __future__ import annotations

import time


def wait_until(ready, timeout, poll):
    """Call ready() until it returns true or `timeout` seconds have passed (it is called at least
    once, and once more at the deadline); whether it became true."""
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(poll, left))
