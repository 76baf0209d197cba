"""Waiting for something to happen, the one way the tests do it: for an observable event (a write
acknowledged, a validity seen, a process or session seen), with an upper bound, never a fixed sleep.

On a busy machine a fixed sleep is too short, and on an idle one it is wasted: the suites run with
CPU hogs beside them too (make test-loaded), so every wait ends on the event itself, and its bound
is generous (it only ends a test that would otherwise hang)."""
import time

TIMEOUT = 60  # seconds: enough for a loaded 2-core machine; a bound, not a pace


def wait_for(what, predicate, timeout=TIMEOUT, interval=0.05):
    """Call predicate() until it returns something true, and return that; AssertionError naming `what`
    (a text, or a callable giving one, called at the time) once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError('timed out after %g s waiting for %s' % (timeout, what() if callable(what) else what))
        time.sleep(interval)


def _driver_state(driver):
    return 'the driver acknowledged %d writes, sees validity %s, errors %s' % (
        len(driver.acked), driver.validity, driver.errors[:3])


def driver_writes(driver, count=10, timeout=TIMEOUT):
    """Until the reference driver (forest_driver.ForestDriver) has acknowledged `count` more writes than now,
    on whichever nodes; the number it has acknowledged then."""
    return driver.wait_acked(count, nodes=(), timeout=timeout)


def driver_sees(driver, validity, timeout=TIMEOUT):
    """Until the driver's merged view is `validity` ({serverid: value} for the serverids named)."""
    return wait_for(lambda: 'the driver to see %s (%s)' % (validity, _driver_state(driver)),
                    lambda: all(driver.validity.get(sid) == value for sid, value in validity.items()), timeout)


def driver_writes_to_every_node(driver, count=10, timeout=TIMEOUT):
    """Until the driver has acknowledged `count` more writes, each committed on every node: the way to say
    "the driver writes to both nodes again" after a recovery."""
    return driver.wait_acked(count, timeout=timeout)
