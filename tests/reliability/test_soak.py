"""Online recoveries in a row under the reference driver's load, alternating the node
that breaks and the way it breaks (4 in make test, 24 in make soak)."""
import time

import pytest

from pgforest_dev import sandbox
from breakage import (KINDS, break_node, healthy_and_equal, load_tables_clean, pair_checks, recover_online,
                      set_read_duration, start_driver, wait_marked_broken)
from recorder import soak_recoveries


def plan(count):
    """(target, kind) for each recovery: the target alternates; every (target, kind) pair comes up."""
    return [(number % 2, KINDS[(number % 4 + number // 4) % 4]) for number in range(count)]


@pytest.fixture
def soak_pair():
    sandbox.reset_pair()
    load_tables_clean()
    set_read_duration(1)
    yield
    for serverid in sandbox.NODES:
        sandbox.ensure_running(serverid)
    sandbox.reset_pair()
    load_tables_clean()


def one_recovery(target, kind):
    driver = start_driver()
    started = time.monotonic()
    try:
        time.sleep(1)
        break_node(kind, target)
        assert wait_marked_broken(driver, target), 'the driver did not stop writing to serverid %d' % target
        acked_before = len(driver.acked)
        result = recover_online(target, notice_wait=None)
        time.sleep(1.5)  # the driver writes to both nodes again
        both_valid = driver.validity == {0: 1, 1: 1}
    finally:
        driver.stop()
    if result.get('failed'):  # rolled back: the target is as broken as before, record why
        return dict(target=target, kind=kind, ok=False, recovery_msg=result.get('msg'), acked=len(driver.acked),
                    lost=0, duplicated=0, equal=False, sequences_aligned=False, problems=[], driver_errors=[],
                    freeze_window=None, seconds=round(time.monotonic() - started, 1))
    facts = pair_checks(driver)
    facts.update(target=target, kind=kind, seconds=round(time.monotonic() - started, 1),
                 freeze_window=result.get('freeze_window'), recovery_msg=result.get('msg'),
                 acked_while_degraded_or_after=len(driver.acked) - acked_before, driver_writes_both=both_valid)
    facts['ok'] = bool(not result.get('failed') and healthy_and_equal(facts) and both_valid)
    return facts


def test_online_recoveries_in_a_row_lose_nothing(soak_pair, record):
    recoveries = []
    try:
        for target, kind in plan(soak_recoveries()):
            facts = one_recovery(target, kind)
            recoveries.append(facts)
            assert facts['ok'], facts
    finally:
        record(recoveries=recoveries, recoveries_run=len(recoveries),
               writes_checked=sum(r['acked'] for r in recoveries))
