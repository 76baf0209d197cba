"""The record an operation leaves when it lowers mngdb_read_duration, and the time left before a
freeze may use the short notice (module_utils/poll_interval.py) -- pure logic."""
import json

import pytest

from ansible_collections.pgforest.cluster.plugins.module_utils.poll_interval import (
    MARK, PollInterval, PollIntervalError, interval, parse_record, seconds_left)


def test_a_record_reads_back_and_anything_else_is_no_record():
    record = dict(dba='30', short=1, at=1000.5, by='online recovery of serverid 1')
    assert parse_record(MARK + json.dumps(record)) == record
    for comment in (None, '', 'the DBA\'s own comment', MARK + '{not json', MARK + '[1, 2]',
                    MARK + json.dumps(dict(dba='30', short=1))):  # no time: cannot say when it is safe
        assert parse_record(comment) is None


def test_an_absent_value_is_the_guides_default_and_garbage_is_unreadable():
    assert interval(None) == 30
    assert (interval('7'), interval(' 12 '), interval('0'), interval('-3')) == (7, 12, 0, -3)
    assert interval('soon') is None


@pytest.mark.parametrize('now, left', [(1000.0, 30.0), (1012.5, 17.5), (1030.0, 0.0), (5000.0, 0.0)])
def test_the_freeze_waits_one_old_interval_after_the_lowering(now, left):
    assert seconds_left(dict(dba='30', short=1, at=1000.0), now) == left


def test_an_absent_dba_value_counts_as_the_default():
    assert seconds_left(dict(dba=None, short=1, at=0.0), 10.0) == 20.0


@pytest.mark.parametrize('short', [0, -1])
def test_the_short_value_is_never_zero_or_negative(short):
    with pytest.raises(PollIntervalError, match='at least 1 second'):
        PollInterval(short, 'test', print)
