"""ForestDriver.wait_acked: counts writes by the nodes that committed them, ends on the event or its bound."""
import threading

import pytest

from pgforest_dev.forest_driver import ForestDriver, count_acked_on


def test_writes_are_counted_by_the_nodes_that_took_them():
    acked_on = {(0, 1): 5, (0,): 3, (1,): 2}
    assert count_acked_on(acked_on, [0, 1]) == 5
    assert count_acked_on(acked_on, [0]) == 8
    assert count_acked_on(acked_on, [1]) == 7
    assert count_acked_on(acked_on, []) == 10


def test_wait_acked_ends_when_the_writes_came_and_names_what_it_waited_for_when_they_did_not():
    driver = ForestDriver({0: ('127.0.0.11', 5432), 1: ('127.0.0.12', 5432)}, 'userdb', 'x')
    driver.acked_on[(0, 1)] = 4

    def writes():
        for _write in range(3):
            driver.acked_on[(0, 1)] += 1
            driver.acked_on[(0,)] = driver.acked_on.get((0,), 0) + 1

    later = threading.Timer(0.1, writes)
    later.start()
    assert driver.wait_acked(3, timeout=5) == 7
    later.join()
    assert driver.wait_acked(0, nodes=[0]) == 10
    with pytest.raises(AssertionError, match=r'1 more writes acknowledged by serverids 1 \(0 so far'):
        driver.wait_acked(1, nodes=[1], timeout=0.2)
