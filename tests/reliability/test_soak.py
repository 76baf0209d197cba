"""Online recoveries in a row under the reference driver's load, alternating the node
that breaks, the way it breaks and the method: a full copy (basebackup) or only the drift
(resync) (4 in make test, 24 in make soak)."""
import time

import pytest

from breakage import (KINDS, break_node, clean_loaded_pair, driver_facts, healthy_and_equal, pair_checks,
                      recover_online, start_driver, wait_marked_broken)
from pgforest_dev.wait import driver_writes, driver_writes_to_every_node
from recorder import soak_recoveries


METHODS = ('basebackup', 'resync')


def plan(count):
    """(target, kind, method) for each recovery: the target alternates; every (target, kind) pair comes
    up; the method changes every second recovery, so both targets are recovered by both methods."""
    return [(number % 2, KINDS[(number % 4 + number // 4) % 4], METHODS[number // 2 % 2]) for number in range(count)]


@pytest.fixture
def soak_pair():
    with clean_loaded_pair():
        yield


def one_recovery(target, kind, method):
    driver = start_driver()
    started = time.monotonic()
    try:
        driver_writes(driver)  # writing to both nodes before the break
        break_node(kind, target)
        assert wait_marked_broken(driver, target), 'the driver did not stop writing to serverid %d' % target
        acked_before = len(driver.acked)
        result = recover_online(target, notice_wait=None, method=method)
        if not result.get('failed'):
            try:
                driver_writes_to_every_node(driver)  # the driver writes to both nodes again
            except AssertionError:
                pass  # recorded below as driver_writes_both=False
        both_valid = driver.validity == {0: 1, 1: 1}
    finally:
        driver.stop()
    if result.get('failed'):  # rolled back: the target is as broken as before; its writes are checked on the source
        facts = driver_facts(driver, serverids=[1 - target])
        facts.update(target=target, kind=kind, method=method, ok=False, recovery_msg=result.get('msg'), equal=False,
                     sequences_aligned=False, driver_errors=driver.errors[:3], freeze_window=None,
                     seconds=round(time.monotonic() - started, 1))
        return facts
    facts = pair_checks(driver)
    facts.update(target=target, kind=kind, method=method, seconds=round(time.monotonic() - started, 1),
                 freeze_window=result.get('freeze_window'), recovery_msg=result.get('msg'),
                 acked_while_degraded_or_after=len(driver.acked) - acked_before, driver_writes_both=both_valid)
    facts['ok'] = bool(not result.get('failed') and healthy_and_equal(facts) and both_valid)
    return facts


def test_online_recoveries_in_a_row_lose_nothing(soak_pair, record):
    recoveries = []
    try:
        for target, kind, method in plan(soak_recoveries()):
            facts = one_recovery(target, kind, method)
            recoveries.append(facts)
            assert facts['ok'], repr(facts)  # whole: pytest shortens a dict
    finally:
        record(recoveries=recoveries, recoveries_run=len(recoveries),
               writes_checked=sum(r['acked'] for r in recoveries))
