"""Which node is the source and which the target (module_utils/pair_choice.py), from merged
statuses that status_rules.merge makes out of the two views, as the jobs get them."""
import pytest

from ansible_collections.pgforest.cluster.plugins.module_utils.status_rules import merge
from ansible_collections.pgforest.cluster.plugins.module_utils.pair_choice import (
    NothingToRecover, PairChoiceError, backup_source, dbsync_pair, recovery_pair, this_node)

from test_status_merge import view


def pair(values, reachable=(True, True), in_recovery=(False, False)):
    """The merged status when both views hold `values` ({serverid: validity})."""
    views = [view(sid, values, reachable=reachable[sid]) for sid in (0, 1)]
    for sid in (0, 1):
        if reachable[sid]:
            views[sid]['in_recovery'] = in_recovery[sid]
    return merge(views)


def sids(chosen):
    return tuple(node['serverid'] for node in chosen)


# --- recovery: the merged status's own recommendation, nothing decided twice -------------------

@pytest.mark.parametrize('online', [True, False])
def test_recovery_copies_from_the_valid_node_onto_the_broken_one(online):
    assert sids(recovery_pair(pair({0: 1, 1: -1}), online)) == (0, 1)
    assert sids(recovery_pair(pair({0: -1, 1: 1}), online, target=0)) == (1, 0)


def test_recovery_of_a_healthy_pair_is_nothing_to_do():
    with pytest.raises(NothingToRecover, match='the pair is healthy'):
        recovery_pair(pair({0: 1, 1: 1}), True)


@pytest.mark.parametrize('values, reachable, state', [
    ({0: -1, 1: -1}, (True, True), 'down'),
    ({0: 1, 1: 0}, (True, True), 'recovering'),
])
def test_recovery_refuses_other_states_naming_the_right_tool(values, reachable, state):
    with pytest.raises(PairChoiceError, match='the pair is %s.*Nothing was changed' % state):
        recovery_pair(pair(values, reachable), True)


def test_naming_the_valid_node_as_target_is_refused():
    with pytest.raises(PairChoiceError, match='recovering serverid 0 from the broken node'):
        recovery_pair(pair({0: 1, 1: -1}), True, target=0)


def test_an_unanswering_node_still_marked_valid_must_be_marked_first():
    with pytest.raises(PairChoiceError, match='forest_mngdb serverid=1 validity=-1'):
        recovery_pair(pair({0: 1, 1: 1}, reachable=(True, False)), True)


def test_online_needs_a_primary_source_offline_an_answering_target():
    with pytest.raises(PairChoiceError, match='serverid 0 is a standby'):
        recovery_pair(pair({0: 1, 1: -1}, in_recovery=(True, False)), True)
    broken_and_down = pair({0: 1, 1: -1}, reachable=(True, False))
    assert sids(recovery_pair(broken_and_down, True)) == (0, 1)
    with pytest.raises(PairChoiceError, match='the broken node\\) does not answer'):
        recovery_pair(broken_and_down, False)


# --- dbsync ----------------------------------------------------------------------------------

def test_dbsync_source_is_the_one_valid_node_else_0_for_a_compare():
    assert sids(dbsync_pair(pair({0: -1, 1: 1}), 'compare')) == (1, 0)
    assert sids(dbsync_pair(pair({0: 1, 1: 1}), 'compare')) == (0, 1)
    assert sids(dbsync_pair(pair({0: 1, 1: 1}), 'sync', target=0)) == (1, 0)


def test_a_sync_between_two_valid_nodes_does_not_guess():
    with pytest.raises(PairChoiceError, match='both nodes are valid: say which node is the source'):
        dbsync_pair(pair({0: 1, 1: 1}), 'sync')


def test_a_sync_never_writes_a_stale_node_over_a_valid_one():
    with pytest.raises(PairChoiceError, match='serverid 1 is marked broken and serverid 0 is valid'):
        dbsync_pair(pair({0: 1, 1: -1}), 'sync', source=1)
    assert sids(dbsync_pair(pair({0: 1, 1: -1}), 'compare', source=1)) == (1, 0)


def test_dbsync_needs_both_nodes_and_two_different_ones():
    with pytest.raises(PairChoiceError, match='both nodes must answer.*serverid 1 .*timeout expired'):
        dbsync_pair(pair({0: 1, 1: 1}, reachable=(True, False)), 'compare')
    with pytest.raises(PairChoiceError, match='both serverid 1'):
        dbsync_pair(pair({0: 1, 1: 1}), 'compare', source=1, target=1)


# --- logical backups ---------------------------------------------------------------------------

def node(sid, validity, reachable=True):
    names = {1: 'valid', 0: 'recovering', -1: 'broken'}
    return dict(serverid=sid, validity=validity, validity_name=names[validity], reachable=reachable)


def test_backup_source_is_the_valid_node_never_the_broken_one():
    assert backup_source([node(0, -1), node(1, 1)])['serverid'] == 1
    assert backup_source([node(0, 1), node(1, 1)])['serverid'] == 0
    assert backup_source([node(0, 1, reachable=False), node(1, 1)])['serverid'] == 1


def test_naming_a_broken_node_is_refused_and_names_the_valid_one():
    with pytest.raises(PairChoiceError, match='serverid 0 is broken.*serverid 1 is valid.*allow_invalid_source'):
        backup_source([node(0, -1), node(1, 1)], source=0)
    with pytest.raises(PairChoiceError, match='serverid 1 is recovering'):
        backup_source([node(0, 1), node(1, 0)], source=1)


def test_both_broken_needs_a_named_node_and_the_override():
    nodes = [node(0, -1), node(1, -1)]
    with pytest.raises(PairChoiceError, match='no node is valid.*source=N'):
        backup_source(nodes)
    with pytest.raises(PairChoiceError, match='allow_invalid_source'):
        backup_source(nodes, source=1)
    assert backup_source(nodes, source=1, allow_invalid=True)['serverid'] == 1


def test_an_unreachable_or_unknown_backup_source_is_refused():
    with pytest.raises(PairChoiceError, match='does not answer'):
        backup_source([node(0, 1, reachable=False), node(1, 1)], source=0)
    with pytest.raises(PairChoiceError, match='not in server_info'):
        backup_source([node(0, 1), node(1, 1)], source=2)


def test_a_node_host_acts_on_the_server_that_answered_in_its_own_view():
    own = merge([view(1, {0: 1, 1: -1}), view(0, {0: 1, 1: -1}, reachable=False)])
    assert this_node(own, '127.0.0.12:5432')['serverid'] == 1
    with pytest.raises(PairChoiceError, match='127.0.0.12:5432 does not answer as a node of the pair'):
        this_node(merge([view(1, {}, reachable=False)]), '127.0.0.12:5432')
