"""A bulk session's lock wait: long enough for autovacuum to give way, bounded, and when it runs out
the message names who held the table and what to do (pure logic)."""
import pytest

from ansible_collections.pgforest.cluster.plugins.module_utils import lock_waits
from ansible_collections.pgforest.cluster.plugins.module_utils.forest_pg import (
    AUTOVACUUM_GIVES_WAY, Node, bulk_lock_timeout)


@pytest.mark.parametrize('statement_timeout, deadlock_timeout, expected', [
    (30000, 1000, 30000),    # the default: statement_timeout is longer already
    (500, 1000, 4000),       # below deadlock_timeout: the copy would give up before autovacuum is asked to
    (200, 1000, 4000),
    (4000, 1000, 4000),
    (5000, 10000, 13000),    # a server with a long deadlock_timeout
])
def test_a_bulk_lock_wait_outlasts_deadlock_timeout_and_stays_bounded(statement_timeout, deadlock_timeout, expected):
    assert bulk_lock_timeout(statement_timeout, deadlock_timeout) == expected
    assert bulk_lock_timeout(statement_timeout, deadlock_timeout) >= deadlock_timeout + AUTOVACUUM_GIVES_WAY


def test_session_options_bound_interactive_statements_and_bulk_lock_waits():
    node = Node('10.0.0.1', statement_timeout=500)
    assert node.session_options() == '-c statement_timeout=500 -c lock_timeout=500'
    assert node.session_options(bulk=True) == '-c statement_timeout=0 -c lock_timeout=4000'  # default deadlock_timeout
    node.deadlock_timeout = 5000  # read from the server by the first bulk connection
    assert node.session_options(bulk=True) == '-c statement_timeout=0 -c lock_timeout=8000'
    assert "options='-c statement_timeout=0 -c lock_timeout=8000'" in node.conninfo_string('userdb', bulk=True)
    assert node.sibling('10.0.0.2', 5432).deadlock_timeout is None  # another server: its own


def test_every_requested_mode_waits_for_access_exclusive_and_the_table_is_symmetric():
    modes = lock_waits.LOCK_MODES
    for wanted in modes:
        assert 'AccessExclusiveLock' in lock_waits.LOCK_CONFLICTS[wanted]
        for held in modes:
            assert (held in lock_waits.LOCK_CONFLICTS[wanted]) == (wanted in lock_waits.LOCK_CONFLICTS[held])
    assert lock_waits.LOCK_CONFLICTS['RowExclusiveLock'] == (
        'ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
    assert 'ShareLock' not in lock_waits.LOCK_CONFLICTS['ShareLock']
    assert 'ShareUpdateExclusiveLock' in lock_waits.LOCK_CONFLICTS['ShareUpdateExclusiveLock']


def holder(pid, mode, **facts):
    row = dict(pid=pid, mode=mode, backend_type='client backend', application_name='', client_addr='10.0.0.7',
               usename='app', state='idle in transaction', query_start='2026-12-06 04:00:00 UTC', xact_seconds=12.34,
               query='LOCK TABLE t IN ACCESS SHARE MODE')
    row.update(facts)
    return row


WHERE = 'copy of public.t: serverid 1'


def message(holders, wanted='AccessExclusiveLock'):
    return lock_waits.lock_wait_message('public.t', WHERE, '4s', wanted, holders)


def test_a_client_holding_the_table_is_named_with_what_to_do():
    text = message([holder(4242, 'AccessShareLock')])
    assert text == (
        'copy of public.t: serverid 1 waited 4s (lock_timeout) for AccessExclusiveLock on public.t and gave up; the '
        'target table was left as it was. Held by: pid 4242 (application_name unset, client 10.0.0.7, user app, idle '
        'in transaction, transaction open 12.3 s, query started 2026-12-06 04:00:00 UTC: LOCK TABLE t IN ACCESS '
        'SHARE MODE) holding AccessShareLock. What to do: end the transaction of pid 4242 where it runs (COMMIT or '
        'ROLLBACK), wait for it, or end it with pg_terminate_backend; then run the sync again')


def test_only_the_sessions_whose_lock_conflicts_are_named():
    holders = [holder(1, 'AccessShareLock', application_name='report'),
               holder(2, 'ShareLock', application_name='batch', client_addr=None)]
    text = message(holders, wanted='RowExclusiveLock')  # a DELETE: readers are not in its way
    assert 'pid 2 (application_name "batch", client local socket' in text and 'holding ShareLock' in text
    assert 'pid 1 ' not in text


def test_a_session_with_several_modes_is_named_once():
    text = message([holder(7, 'AccessShareLock'), holder(7, 'RowExclusiveLock')])
    assert text.count('pid 7 (') == 1 and 'holding AccessShareLock, RowExclusiveLock' in text


def test_without_a_conflicting_lock_every_holder_is_named_as_a_possible_row_lock():
    text = message([holder(9, 'RowShareLock', query='SELECT * FROM t FOR UPDATE')], wanted='RowExclusiveLock')
    assert 'No lock on the table itself stood in the way (a row lock may have); sessions holding it: pid 9' in text


def test_autovacuum_anti_wraparound_is_waited_for_and_an_ordinary_one_retried():
    wrap = holder(11, 'ShareUpdateExclusiveLock', backend_type='autovacuum worker',
                  query='autovacuum: VACUUM public.t (to prevent wraparound)')
    text = message([wrap])
    assert 'autovacuum worker pid 11 (autovacuum: VACUUM public.t (to prevent wraparound)) holding ' \
           'ShareUpdateExclusiveLock' in text
    assert 'an anti-wraparound autovacuum never gives way to other locks: wait until it ends ' \
           '(pg_stat_progress_vacuum); then run the sync again' in text
    plain = message([dict(wrap, query='autovacuum: VACUUM public.t')])
    assert 'autovacuum gives way to a lock request after deadlock_timeout, so it came back meanwhile' in plain


def test_a_prepared_transaction_and_a_holder_gone_meanwhile():
    text = message([holder(None, 'AccessShareLock', backend_type=None)])
    assert 'a prepared transaction (pg_prepared_xacts) holding AccessShareLock' in text
    assert 'COMMIT PREPARED or ROLLBACK PREPARED' in text
    assert message([]).endswith('No session holds it now (the one that did has ended): run the sync again')
    unknown = message(None)
    assert 'find the session holding public.t (pg_locks)' in unknown and 'left as it was' in unknown
