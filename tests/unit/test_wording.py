"""Values in messages written for people (module_utils/wording.py, filter pgforest.cluster.shown), the
one-line end-of-run check of recover.yml / restore.yml (filter unhealthy_after), the -e userdb refusal
(filter userdb_refusal) and every status message without a Python repr."""
import re

import pytest

from ansible_collections.pgforest.cluster.plugins.filter.forest_pair import userdb_refusal
from ansible_collections.pgforest.cluster.plugins.filter.recovery_phases import completes_recovery
from ansible_collections.pgforest.cluster.plugins.filter.wording import unhealthy_after
from ansible_collections.pgforest.cluster.plugins.module_utils import wording
from ansible_collections.pgforest.cluster.plugins.module_utils.cluster_status import pair_of_databases
from ansible_collections.pgforest.cluster.plugins.module_utils.status_rules import merge
from ansible_collections.pgforest.cluster.plugins.module_utils.status_text import pair_summary_lines
from ansible_collections.pgforest.cluster.plugins.module_utils.divergence import flag_divergence

from test_status_merge import view

# What a Python repr looks like in a message: a list, a dict, a set or a tuple written by str().
REPR = re.compile(r"\[-?\d|\[\]|\['|\{'|\{\d|\(\d+, |set\(")


@pytest.mark.parametrize('value, expected', [
    (-1, '-1'), ([-1], '-1'), ([0, 1], '0, 1'), ((0, 1), '0, 1'), ({1, 0}, '0, 1'), ({'1', 0}, '0, 1'),
    ({'0': 1, '1': -1}, '0=1 1=-1'), ({'base': 3.25, 'cut': 1.0}, 'base=3.25 cut=1'), ([], 'none'), (set(), 'none'), ({}, 'none'),
    (None, 'none'), (True, 'yes'), (False, 'no'), ('text', 'text'), ([['a', 'b'], 'c'], 'a, b, c'),
    (2.5, '2.5'), (3.0, '3'),
])
def test_shown_writes_values_for_people(value, expected):
    assert wording.shown(value) == expected


def test_views_listing_and_serverids():
    assert wording.views({'0': 1, '1': -1}) == '0=valid 1=broken'
    assert wording.views({'0': 0, '1': None}) == '0=write-suppressed 1=unknown'
    assert wording.validity(-1) == '-1 (broken)' and wording.validity('x') == 'x (unknown)'
    assert wording.listed(['a']) == 'a' and wording.listed(['a', 'b', 'c']) == 'a, b and c'
    assert wording.listed([]) == 'none' and wording.listed({'b', 'a'}, last='or') == 'a or b'
    assert wording.serverids([1]) == 'serverid 1' and wording.serverids({1, 0}) == 'serverids 0 and 1'


def status_of(view0, view1, broken_log=()):
    status = merge([view(0, view0), view(1, view1)])
    status['broken_log'] = list(broken_log)
    return pair_of_databases({'userdb': status})


def test_status_messages_have_no_repr():
    cases = [status_of({0: 1, 1: 1}, {0: 1, 1: -1}),        # views disagree
             status_of({0: 1, 1: 0}, {0: 1, 1: 0}),         # recovering, serverid [1]
             status_of({0: 0, 1: 0}, {0: 0, 1: 0}),         # both write-suppressed
             status_of({0: 1, 1: -1}, {0: -1, 1: 1})]       # split brain
    extra = view(0, {0: 1, 1: 1})
    extra['server_info'].append(dict(serverid=2, udb_url='192.168.1.102:5432/userdb', udb_validity=1))
    cases.append(pair_of_databases({'userdb': merge([extra, view(1, {0: 1, 1: 1})])}))
    texts = [' '.join(pair_summary_lines(status)) + status['recommended_action']['reason'] for status in cases]
    for text in texts:
        assert not REPR.search(text), text
    assert 'views 0=valid 1=broken' in texts[0]
    assert 'serverid 1 is write-suppressed (0)' in texts[1] and 'serverids 0 and 1 are write-suppressed' in texts[2]
    assert 'serverid 0 is seen as 0=valid 1=broken' in texts[3]
    assert 'found 0, 1 and 2' in texts[4]


def test_divergence_names_each_node_s_rows():
    status = merge([view(0, {0: 1, 1: 1}), view(1, {0: 1, 1: 1})])
    flag_divergence(status, dict(equal=False, rounds=3, differences={
        'public.orders': {'0': 3000, '1': 2999}, 'public.gone': {'0': 5, '1': None}}))
    reason = status['recommended_action']['reason']
    assert 'public.orders: serverid 0 has 3000 rows, serverid 1 has 2999 rows' in reason
    assert 'public.gone: serverid 0 has 5 rows, serverid 1 lacks it' in reason
    assert not REPR.search(reason), reason


CRASH = dict(serverid=1, time='2026-12-06 04:10:01.5+00', epoch=1796530201.5, client='app-host-7 (pid 4242)',
             api_task='executeUpdate', err_msg='could not send data to server:\n Connection reset by peer',
             err_type='ForestException', err_state='08006')


def test_unhealthy_after_names_who_marked_which_node_and_why():
    before = status_of({0: 1, 1: -1}, {0: 1, 1: -1}, [dict(CRASH, epoch=1000.0, client='old-host')])
    after = status_of({0: 1, 1: -1}, {0: 1, 1: -1}, [CRASH, dict(CRASH, epoch=1000.0, client='old-host')])
    text = unhealthy_after(after, 'the recovery of pair forest', before)
    assert text.startswith('After the recovery of pair forest the pair is not healthy: degraded: serverid 1 is '
                           'marked -1 (broken), marked by client app-host-7 (pid 4242) at 2026-12-06 04:10:01.5+00 '
                           '(executeUpdate): could not send data to server: Connection reset by peer (SQLSTATE 08006) '
                           '(2 broken_log rows about it, newest first). What to do: serverid 1 is marked broken'), text
    assert '\n' not in text and not REPR.search(text) and 'logged before this run' not in text
    again = unhealthy_after(before, 'the recovery', before)
    assert 'by client old-host' in again and '(logged before this run)' in again


def test_unhealthy_after_without_a_broken_log_row_and_when_healthy():
    assert unhealthy_after(status_of({0: 1, 1: 1}, {0: 1, 1: 1}), 'the restore') == ''
    text = unhealthy_after(status_of({0: 1, 1: -1}, {0: 1, 1: -1}), 'the restore of pair forest')
    assert 'serverid 1 is marked -1 (broken); no broken_log row says who marked it' in text
    unreachable = merge([view(0, {0: 1, 1: 1}), view(1, {}, reachable=False)])
    down = unhealthy_after(pair_of_databases({'userdb': unreachable}), 'the recovery')
    assert 'serverid 1 does not answer (timeout expired)' in down


def test_unhealthy_after_with_several_databases_names_each_unhealthy_one():
    good = merge([view(0, {0: 1, 1: 1}), view(1, {0: 1, 1: 1})])
    bad = merge([view(0, {0: 1, 1: -1}), view(1, {0: 1, 1: -1})])
    bad['broken_log'] = [CRASH]
    text = unhealthy_after(pair_of_databases({'userdb': good, 'billing': bad}), 'the recovery of pair p1')
    assert 'billing is degraded: serverid 1 is marked -1 (broken), marked by client app-host-7' in text
    assert 'userdb' not in text.split('What to do')[0]


@pytest.mark.parametrize('phase, completes', [('all', True), ('base', False), ('cut', True), ('cleanup', True),
                                              ('cancel', False)])
def test_which_phases_must_leave_the_pair_healthy(phase, completes):
    assert completes_recovery(phase) is completes


@pytest.mark.parametrize('asked, words', [
    (None, None), ([], None), ('userdb', None), (['userdb', 'billing'], None),
    ('userdb; drop table x', 'userdb "userdb; drop table x" is not a user database of pair p1; its user databases '
                             'are userdb, billing'),
    ("it's", 'userdb "it\'s" is not'), ('ünï', 'userdb "ünï" is not'), (42, 'userdb "42" is not'),
    (['userdb', 'x', 'y'], 'userdb "x", userdb "y" are not user databases of pair p1'),
    ('a\nb', 'userdb "a\\x0ab" is not'), ('x' * 200, 'userdb "' + 'x' * 77 + '..." is not'),
    ({'a': 1}, 'userdb "{\'a\': 1}" is not'),
])
def test_userdb_refusal(asked, words):
    text = userdb_refusal(asked, ['userdb', 'billing'], 'p1')
    if words is None:
        assert text == ''
    else:
        assert words in text and '\n' not in text and 'Nothing was changed' in text, text
