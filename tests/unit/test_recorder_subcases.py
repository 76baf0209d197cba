"""tests/recorder.py: a case that checks many inputs in one run (the bad-input module cases, one playbook per
set-up) is a row per input in the report, each with its own outcome; a file name two suites share is filed by
its folder."""
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


def test_a_file_name_two_suites_share_goes_to_the_lab_s_section_only():
    from recorder import section_of
    assert section_of('tests/lab/test_exporter.py::test_the_exporter_and_the_timer') == 'lab_production'
    assert section_of('tests/integration/test_exporter.py::test_a_stopped_node_shows_at_the_next_scrape') is None
    assert section_of('tests/reliability/test_bad_input.py::test_x[a]') == 'bad_input'
