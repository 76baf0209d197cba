"""tests/recorder.py: a case that checks many inputs in one run (the bad-input module cases, one playbook per
set-up) is a row per input in the report, each with its own outcome."""
from recorder import expanded


def entry(outcome, subcases=None, **facts):
    if subcases is not None:
        facts['subcases'] = subcases
    return dict(case='test_batch[nothing set up]', outcome=outcome, facts=facts)


def sub(name, outcome='passed', **facts):
    return dict(case='test_one[%s]' % name, outcome=outcome, facts=facts)


def test_a_case_without_subcases_is_one_row_as_it_was():
    plain = entry('passed', message='refused')
    assert expanded(plain) == [plain]


def test_each_input_is_a_row_with_its_own_outcome_and_facts():
    rows = expanded(entry('failed', [sub('a', message='one'), sub('b', 'failed', message='two')],
                          failure='AssertionError: b'))
    assert rows == [dict(case='test_one[a]', outcome='passed', facts=dict(message='one')),
                    dict(case='test_one[b]', outcome='failed', facts=dict(message='two'))]


def test_a_failure_no_input_explains_fails_every_row_and_says_why():
    """Every input refused as it should, but the batch changed something (or its set-up failed)."""
    rows = expanded(entry('failed', [sub('a', message='one'), sub('b', message='two')],
                          failure="AssertionError: {'changed': [(1, 'mngdb')]}"))
    assert [row['outcome'] for row in rows] == ['failed', 'failed']
    assert rows[0]['facts'] == dict(message='one', failure="AssertionError: {'changed': [(1, 'mngdb')]}")
