"""Several user databases and several pairs, as pure logic: the pair's state over its databases
(cluster_status.pair_of_databases), what an online recovery may replace (pair_choice.online_scope),
and the inventory rules (plugins/filter/forest_pair.py)."""
import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.pgforest.cluster.plugins.filter import forest_pair
from ansible_collections.pgforest.cluster.plugins.module_utils import cluster_status
from ansible_collections.pgforest.cluster.plugins.module_utils.cluster_status import pair_of_databases
from ansible_collections.pgforest.cluster.plugins.module_utils.shapes import STATES
from ansible_collections.pgforest.cluster.plugins.module_utils.status_text import pair_summary_lines
from ansible_collections.pgforest.cluster.plugins.module_utils.pair_choice import PairChoiceError, online_scope

from test_pair_choice import pair
from test_status_merge import view


# --- the pair over its databases -------------------------------------------------------------

def test_the_worst_database_speaks_for_the_pair_and_each_is_named():
    status = pair_of_databases({'orders': pair({0: 1, 1: 1}), 'billing': pair({0: 1, 1: -1}),
                                'audit': pair({0: 1, 1: 0})})
    assert (status['cluster_state'], status['userdb'], status['healthy']) == ('degraded', 'billing', False)
    assert status['unhealthy_userdbs'] == ['billing', 'audit']
    assert [found['userdb'] for found in status['databases']] == ['orders', 'billing', 'audit']
    assert status['recommended_action']['reason'].startswith('billing: serverid 1 is marked broken')
    assert pair_summary_lines(status)[0] == 'pair degraded: orders healthy, billing degraded, audit recovering'


def test_one_database_keeps_its_own_words_and_all_healthy_is_healthy():
    one = pair_of_databases({'userdb': pair({0: 1, 1: -1})})
    assert one['recommended_action']['reason'].startswith('serverid 1 is marked broken')
    assert pair_summary_lines(one)[0].startswith('cluster degraded: ')
    both = pair_of_databases({'a': pair({0: 1, 1: 1}), 'b': pair({0: 1, 1: 1})})
    assert (both['cluster_state'], both['healthy'], both['unhealthy_userdbs'], both['userdb']) == (
        'healthy', True, [], 'a')


def test_among_equally_bad_databases_a_recoverable_one_leads():
    unmarked = pair({0: 1, 1: 1}, reachable=(True, False))        # degraded, but mark_broken first
    marked = pair({0: 1, 1: -1}, reachable=(True, False))         # degraded, online recovery possible
    assert unmarked['recommended_action']['action'] == 'mark_broken'
    status = pair_of_databases({'first': unmarked, 'second': marked})
    assert (status['userdb'], status['recommended_action']['action']) == ('second', 'online_recovery')


def test_split_brain_and_down_are_worse_than_degraded():
    assert STATES.index('down') > STATES.index('split_brain') > STATES.index('degraded')
    status = pair_of_databases({'a': pair({0: 1, 1: -1}), 'b': pair({0: -1, 1: -1})})
    assert (status['cluster_state'], status['userdb']) == ('down', 'b')


# --- what an online recovery of serverid 1 from serverid 0 may replace -----------------------

def test_a_database_whose_read_raises_fails_the_status_with_its_own_error(monkeypatch):
    """Every answer a node can give is in its view, so a read that raises is a bug: the status fails with
    that error (its traceback in -vvv), never with a KeyError naming the database, the others read or not."""
    def read_pair(params, mngdb, broken_log_limit=0, pool=None):
        if params['userdb'] == 'second':
            raise RuntimeError('odd reply while reading %s' % mngdb)
        return {('192.168.1.100', 5432): view(0, {0: 1, 1: 1}), ('192.168.1.101', 5432): view(1, {0: 1, 1: 1})}

    monkeypatch.setattr(cluster_status, 'read_pair', read_pair)
    params = dict(login_host='192.168.1.100', login_port=5432)
    assert cluster_status.read_databases(params, ['first'])['first']['cluster_state'] == 'healthy'
    with pytest.raises(RuntimeError, match='odd reply while reading second_pghainfo'):
        cluster_status.read_databases(params, ['first', 'second', 'third'])


def scope(statuses, **options):
    return online_scope(statuses, 0, 1, **options)


def test_every_database_broken_on_the_target_is_taken_along():
    assert scope({'a': pair({0: 1, 1: -1}), 'b': pair({0: 1, 1: -1})}) == ['a', 'b']


def test_a_database_still_valid_on_the_target_is_refused_unless_included():
    statuses = {'a': pair({0: 1, 1: -1}), 'b': pair({0: 1, 1: 1})}
    with pytest.raises(PairChoiceError, match=r"b: serverid 1 is still valid there .* include_valid"):
        scope(statuses)
    assert scope(statuses, include_valid=['b']) == ['a', 'b']


def test_the_source_must_be_valid_for_each_database():
    with pytest.raises(PairChoiceError, match=r'b: serverid 0, the source, is broken there'):
        scope({'a': pair({0: 1, 1: -1}), 'b': pair({0: -1, 1: 1})}, include_valid=['b'])


def test_write_suppressed_split_brain_and_unknown_names_are_refused():
    with pytest.raises(PairChoiceError, match=r'b: serverid 1 is write-suppressed'):
        scope({'a': pair({0: 1, 1: -1}), 'b': pair({0: 1, 1: 0})})
    split = pair({0: 1, 1: 1})
    split['cluster_state'] = 'split_brain'
    with pytest.raises(PairChoiceError, match=r'b is split_brain'):
        scope({'a': pair({0: 1, 1: -1}), 'b': split})
    with pytest.raises(PairChoiceError, match=r'include_valid names zz, which is no forest database'):
        scope({'a': pair({0: 1, 1: -1})}, include_valid=['zz'])


def test_other_databases_are_named_until_the_dba_says_they_may_be_replaced():
    statuses = {'a': pair({0: 1, 1: -1})}
    with pytest.raises(PairChoiceError, match=r'also holds metrics, monitoring, which are not forest databases'):
        scope(statuses, other_databases=['metrics', 'monitoring'], replace=['other'])
    with pytest.raises(PairChoiceError, match=r'also holds monitoring, which is not forest database'):
        scope(statuses, other_databases=['metrics', 'monitoring'], replace=['metrics'])
    assert scope(statuses, other_databases=['metrics', 'monitoring'], replace=['monitoring', 'metrics']) == ['a']


def test_nothing_broken_is_refused_and_every_refusal_says_nothing_changed():
    with pytest.raises(PairChoiceError, match=r'no forest database of serverid 0 is broken on it. Nothing was changed'):
        scope({})


# --- the inventory rules -------------------------------------------------------------------------

def test_userdbs_from_the_list_or_the_single_name_or_the_default():
    assert forest_pair.userdbs(['orders', 'billing']) == ['orders', 'billing']
    assert forest_pair.userdbs(None, 'orders') == ['orders']
    assert forest_pair.userdbs(None, None) == ['userdb']
    assert forest_pair.userdbs('orders') == ['orders']


@pytest.mark.parametrize('bad, message', [
    ([], 'forest_userdbs is empty'),
    (['a', 'a'], 'lists a more than once'),
    (['user db'], 'must be plain identifiers'),
    (['a"b'], 'must be plain identifiers'),
    (['Ünïcode'], 'must be plain identifiers'),
    (['x' * 55], 'at most 54 characters'),
    ({'a': 1}, 'must be a list'),
    ([1], 'must be plain identifiers'),
])
def test_bad_userdbs_are_refused_by_name(bad, message):
    with pytest.raises(AnsibleFilterError, match=message):
        forest_pair.userdbs(bad)


HOSTVARS = {
    'a0': dict(forest_pair='a', forest_serverid=0, forest_pg_host='10.0.0.1'),
    'a1': dict(forest_pair='a', forest_serverid=1, forest_pg_host='10.0.0.2', forest_pg_port=5433),
    'b1': dict(forest_pair='b', forest_serverid=1, forest_pg_host='10.0.1.2'),
    'b0': dict(forest_pair='b', forest_serverid='0', forest_pg_host='10.0.1.1'),
}


def test_pairs_are_named_by_forest_pair_and_ordered_by_serverid():
    assert forest_pair.pair_hosts(HOSTVARS, 'b1', list(HOSTVARS)) == ['b0', 'b1']
    assert forest_pair.pair_hosts(HOSTVARS, 'a0', list(HOSTVARS)) == ['a0', 'a1']
    assert forest_pair.pair_servers(['a0', 'a1'], HOSTVARS) == ['10.0.0.1:5432', '10.0.0.2:5433']
    assert forest_pair.pair_name(HOSTVARS, 'b0') == 'b'
    single = {'n0': dict(forest_serverid=0), 'n1': dict(forest_serverid=1)}
    assert forest_pair.pair_hosts(single, 'n1', ['n0', 'n1']) == ['n0', 'n1']
    assert forest_pair.pair_name(single, 'n1') == 'forest'


def test_a_pair_that_is_not_serverid_0_and_1_is_refused():
    three = dict(HOSTVARS, a2=dict(forest_pair='a', forest_serverid=1))
    with pytest.raises(AnsibleFilterError, match=r'pair a must be two hosts with forest_serverid 0 and 1'):
        forest_pair.pair_hosts(three, 'a0', list(three))
    unnamed = {'n0': dict(forest_serverid=0), 'n1': dict()}
    with pytest.raises(AnsibleFilterError, match=r'every host needs forest_serverid'):
        forest_pair.pair_hosts(unnamed, 'n0', ['n0', 'n1'])
    assert forest_pair.pair_hosts(three, 'a0', list(three), strict=False) == ['a0', 'a1', 'a2']


def test_the_leader_is_the_first_host_of_the_pair_still_in_the_play():
    assert forest_pair.pair_leader(['a0', 'a1'], ['a0', 'a1', 'b0']) == 'a0'
    assert forest_pair.pair_leader(['a0', 'a1'], ['a1', 'b0']) == 'a1'
    assert forest_pair.pair_leader(['a0', 'a1'], ['b0']) == ''
