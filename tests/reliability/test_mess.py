"""Online recovery and online compare under real-world mess, with the reference driver writing all
along: a batch job's long transaction, a stream of long transactions, VACUUM and ANALYZE in a loop,
and drivers that write the nodes in either order. Every freeze begun stays within its notice plus
forest_driver.LOADED_FREEZE_BEYOND_NOTICE (these cases run beside CPU hogs), the application's longest gap
between acknowledged writes within half a second more, nothing is lost."""
import os

import pytest

from pgforest_dev import sandbox
from pgforest_dev.forest_driver import LOADED_FREEZE_BEYOND_NOTICE, ForestDriver, lost_or_duplicated
from pgforest_dev.wait import driver_writes, driver_writes_to_every_node
from pgforest_dev.workloads import Batch, Maintenance
from breakage import (break_node, clean_loaded_pair, driver_nodes, healthy_and_equal, pair_checks, recover_online,
                      start_driver, wait_marked_broken)

TARGET = 1
# Online compares in the stress case: 10 in make test, FOREST_SOAK_COMPARES (100) in make soak.
COMPARES = int(os.environ.get('FOREST_SOAK_COMPARES', '10'))


@pytest.fixture
def mess_pair():
    with clean_loaded_pair('DROP TABLE IF EXISTS batch_rows; DROP TABLE IF EXISTS mess_orders;'
                           'CREATE TABLE mess_orders (id serial PRIMARY KEY, item text);'
                           'INSERT INTO mess_orders (item) SELECT $$item$$ || g FROM generate_series(1, 5000) g',
                           'DROP TABLE IF EXISTS batch_rows; DROP TABLE IF EXISTS mess_orders'):
        yield


def broken_target_under_load():
    """serverid 1 stopped and marked broken by the reference driver, which keeps writing serverid 0."""
    driver = start_driver()
    driver_writes(driver, 20)
    break_node('stopped', TARGET)
    assert wait_marked_broken(driver, TARGET), 'the driver did not mark serverid 1 broken'
    return driver


def under_load(run):
    """run() (online recoveries of serverid 1) while the reference driver writes, serverid 1 broken
    first; then until the driver writes both nodes again. (driver, what run returned)."""
    driver = broken_target_under_load()
    try:
        returned = run()
        driver_writes_to_every_node(driver)
    finally:
        driver.stop()
    return driver, returned


def measured(result, driver, record, **figures):
    """The freeze figures (asserted) and the pair's checks of a recovery under load, recorded; the facts."""
    facts = pair_checks(driver)
    record(**dict(freezes(result, driver), **dict(facts, **figures)))
    return facts


def freezes(result, driver):
    """The figures of every freeze begun, asserted: each within its notice plus LOADED_FREEZE_BEYOND_NOTICE, the
    application's longest gap within half a second more."""
    cut = result['cut']
    notice = cut['notice_seconds']
    windows = [w for w in cut.get('freezes_undone', []) + [cut.get('freeze_window')] if w is not None]
    assert windows and max(windows) <= notice + LOADED_FREEZE_BEYOND_NOTICE, cut
    assert driver.longest_gap() <= notice + LOADED_FREEZE_BEYOND_NOTICE + 0.5, (driver.longest_gap(), cut)
    return dict(notice=notice, freeze_windows=windows, longest_gap=round(driver.longest_gap(), 3))


def test_a_long_batch_transaction_delays_the_recovery_not_the_applications(mess_pair, record):
    batch = Batch(seconds=45)

    def recover():
        with batch:
            return recover_online(TARGET, notice_wait=None, idle_wait_timeout=120)
    driver, result = under_load(recover)
    assert not result.get('failed'), result.get('msg')
    facts = measured(result, driver, record, batch_seconds=45, waited_before_freeze=result['cut']['waited_before_freeze'])
    assert healthy_and_equal(facts), facts
    assert batch.committed == 1
    assert result['cut']['waited_before_freeze'] > 10, result['cut']  # the wait was outside the freeze
    assert any('waiting before the write freeze' in line and 'nightly batch' in line for line in result['progress'])
    # the batch's row, committed on the source while the target was a standby, is on the recovered node
    assert sandbox.query(TARGET, 'SELECT count(*) FROM batch_rows', dbname=sandbox.USERDB) == [(1,)]


def test_a_stream_of_long_transactions_never_stretches_a_freeze(mess_pair, record):
    """5-s transactions back to back: no freeze of notice + 1 s can hold, so the recovery gives up
    cleanly, having frozen the applications only briefly, and names the batch; then it succeeds."""
    def recover_twice():
        with Batch(seconds=5, count=100):
            first = recover_online(TARGET, notice_wait=None, idle_wait_timeout=15)
        return first, recover_online(TARGET, notice_wait=None)
    driver, (failed, result) = under_load(recover_twice)
    assert failed.get('failed'), 'the recovery held a freeze although a 5-s transaction was open'
    facts = measured(failed, driver, record, batch_seconds=5, message=failed['msg'],
                     freezes_undone=len(failed['cut'].get('freezes_undone', [])))
    assert 'nightly batch' in failed['msg'] and 'Rolled back' in failed['msg'], failed['msg']
    assert len(failed['cut'].get('freezes_undone', [])) <= 3, failed['cut']
    assert not result.get('failed'), result.get('msg')
    assert healthy_and_equal(facts), facts


def test_vacuum_and_analyze_in_a_loop_do_not_fail_the_cut(mess_pair, record):
    sandbox.on(0, 'DELETE FROM mess_orders WHERE id % 3 = 0')  # work for vacuum
    maintenance = Maintenance('mess_orders')

    def recover():
        with maintenance:
            return recover_online(TARGET, notice_wait=None)
    driver, result = under_load(recover)
    assert not result.get('failed'), result.get('msg')
    facts = measured(result, driver, record, maintenance_rounds=maintenance.rounds,
                     writes_not_lost=result['cut'].get('writes_not_lost'))
    assert healthy_and_equal(facts), facts
    # ANALYZE took transaction ids inside the freeze; they changed statistics, not user data
    assert result['cut'].get('other_writes_in_freeze') is True, result['progress']
    assert any('none changed user data' in line for line in result['progress'])


def test_online_compares_under_drivers_writing_either_order_find_no_false_difference(mess_pair, record):
    """Three reference drivers, one writing (and committing) serverid 1 first, the others 0 first;
    COMPARES online compares in a row; then, drivers stopped, a sync from serverid 1, which must find
    nothing to change (it would delete an acknowledged write if a compare had been wrong)."""
    drivers = [ForestDriver(driver_nodes(), sandbox.USERDB, sandbox.password(), read_duration=1.0,
                            table='forest_load%s' % suffix, reverse=reverse).start()
               for suffix, reverse in (('', False), ('_b', True), ('_c', False))]
    results = []
    try:
        for driver in drivers:
            driver_writes(driver, 20)
        for number in range(COMPARES):
            results.append(sandbox.module('forest_dbsync', online=True, source=number % 2,
                                          include=['public.forest_load*'], timeout=300))
        for driver in drivers:
            driver_writes(driver)  # still writing after the last freeze
    finally:
        for driver in drivers:
            driver.stop()
    # A sync from serverid 1 after the compares said equal: it must find nothing to delete.
    synced = sandbox.module('forest_dbsync', mode='sync', source=1, include=['public.forest_load*'], timeout=300)
    false_differences = [r['tables'] for r in results if not r.get('failed') and r['equal'] is not True]
    failures = [r['msg'] for r in results if r.get('failed')]
    problems = [p for d in drivers for p in lost_or_duplicated(d, lambda sid: sandbox.connect(sid, sandbox.USERDB))]
    windows = [r['freeze_window'] for r in results if r.get('freeze_window') is not None]
    record(compares=len(results), false_differences=len(false_differences), failed=len(failures),
           failure_messages=failures[:3], retries=sum((r.get('freeze') or {}).get('snapshot_retries', 0)
                                                      for r in results),
           freeze_window_max=max(windows or [0]), acked=sum(len(d.acked) for d in drivers),
           lost_or_duplicated=len(problems), sync_equal=synced.get('equal'))
    assert false_differences == []
    assert failures == [], failures
    assert not synced.get('failed') and synced['equal'] is True, synced.get('msg') or synced['report']
    assert all(t['status'] == 'equal' for t in synced['tables']), synced['report']
    assert problems == []
    assert all(not d.errors for d in drivers), [d.errors[:3] for d in drivers]
