"""A node new to the pair (DESIGN.md): the identity rules, the status and the metrics, without a server."""
import pytest

from ansible_collections.pgforest.cluster.plugins.filter.forest_metrics import prometheus_metrics
from ansible_collections.pgforest.cluster.plugins.filter.forest_pair import node_note
from ansible_collections.pgforest.cluster.plugins.module_utils.status_rules import merge
from ansible_collections.pgforest.cluster.plugins.module_utils.status_text import summary_lines
from ansible_collections.pgforest.cluster.plugins.module_utils.mngdb import MngdbError
from ansible_collections.pgforest.cluster.plugins.module_utils.node_identity import (
    identity_verdict, new_node_message, new_node_reason, peer_holds_pair)
from ansible_collections.pgforest.cluster.plugins.module_utils.pair_choice import PairChoiceError, recovery_pair

from test_status_merge import by_sid, view

OLD = dict(system_identifier='7300000000000000001', mngdb_id='m-old-1')
NODE0 = dict(system_identifier='7300000000000000000', mngdb_id='m-0')
NEW = dict(system_identifier='7399999999999999999', mngdb_id='m-new-1')


def row(serverid, identity):
    return dict(identity, serverid=serverid, recorded_at='2026-12-06 04:00:00+00')


RECORD = [row(0, NODE0), row(1, OLD)]


def identity(actual, recorded=None, unrecorded=False):
    """A view's identity: the node as it is and the pair's record (RECORD unless told; None: no tables)."""
    return dict(actual, recorded=None if unrecorded else RECORD if recorded is None else recorded)


# --- the one rule: a node against the pair's record ---------------------------------------------
@pytest.mark.parametrize('actual, recorded, verdict', [
    (OLD, [row(1, OLD)], 'matches'),
    (OLD, [row(1, OLD), row(1, OLD)], 'matches'),
    (OLD, [], 'unrecorded'),
    (None, [row(1, OLD)], 'unknown'),
    (NEW, [row(1, OLD)], 'replaced'),                                      # new initdb
    (dict(OLD, mngdb_id='m-again'), [row(1, OLD)], 'replaced'),            # forest databases made anew
    (dict(NODE0), [row(1, dict(OLD, system_identifier=NODE0['system_identifier']))], 'replaced'),  # node 0's copy
    (OLD, [row(1, OLD), row(1, NEW)], 'replaced'),                         # any view recording another wins
])
def test_identity_verdict(actual, recorded, verdict):
    assert identity_verdict(actual, recorded)[0] == verdict


def test_a_standby_is_judged_once_promoted():
    """An online recovery's copy of node 0 is a standby until the cut, which records it."""
    assert identity_verdict(NODE0, [row(1, OLD)], standby=True)[0] == 'unknown'


def test_reasons_name_both_values():
    reason = identity_verdict(NEW, [row(1, OLD)])[1]
    assert NEW['system_identifier'] in reason and OLD['system_identifier'] in reason
    reason = identity_verdict(dict(OLD, mngdb_id='m-again'), [row(1, OLD)])[1]
    assert 'm-again' in reason and 'm-old-1' in reason
    assert "{" not in reason and "[" not in reason


# --- provisioning: when are the databases about to be created those of a new node? -----------
def peer(mngdb=True, identities=(), how='created'):
    return dict(mngdb=mngdb, identities=None if identities is None else list(identities),
                origin=None if identities is None else dict(how=how), server_info=[])


@pytest.mark.parametrize('state, holds', [
    (peer(mngdb=False), False),                      # brand new pair: the peer has nothing either
    (peer(identities=[]), False),                    # the peer's made in this same provision run
    (peer(identities=[], how='adopted'), True),      # the peer's from before identities, just upgraded
    (peer(identities=None), True),                   # the peer's from before identities
    (peer(identities=RECORD), True),                 # the pair recorded its nodes
])
def test_peer_holds_a_pair_in_service(state, holds):
    assert peer_holds_pair(state) is holds


def test_a_node_whose_databases_are_missing_is_new_only_to_a_pair_in_service():
    assert new_node_reason(1, ['appdb', 'appdb_pghainfo'], 0, peer(identities=RECORD))
    assert new_node_reason(1, ['appdb_pghainfo'], 0, peer(identities=None))
    assert new_node_reason(1, [], 0, peer(identities=RECORD)) is None
    assert new_node_reason(1, ['appdb', 'appdb_pghainfo'], 0, peer(mngdb=False)) is None
    assert new_node_reason(1, ['appdb', 'appdb_pghainfo'], 0, peer(identities=[])) is None


def test_a_missing_database_with_the_peer_silent_is_refused():
    with pytest.raises(MngdbError, match='serverid 0 does not answer.*nothing was created'):
        new_node_reason(1, ['appdb_pghainfo'], 0, None)


def test_the_message_is_one_line_and_says_how_to_bring_it_back():
    message = new_node_message(1, new_node_reason(1, ['appdb'], 0, peer(identities=RECORD)))
    assert '\n' not in message and '-1' in message and 'recover.yml' in message
    assert message.startswith('serverid 1 is new to the pair')


# --- status: a replaced node is never healthy ----------------------------------------------------
def test_a_replaced_node_still_valid_is_named_and_the_pair_is_not_healthy():
    status = merge([view(0, {0: 1, 1: 1}, identity=identity(NODE0)), view(1, {0: 1, 1: 1}, identity=identity(NEW))])
    node = by_sid(status)[1]
    assert node['replaced'] and node['identity']['verdict'] == 'replaced' and not by_sid(status)[0]['replaced']
    assert status['cluster_state'] == 'degraded' and not status['healthy']
    action = status['recommended_action']
    assert (action['action'], action['target'], action['source']) == ('mark_broken', 1, 0)
    assert 'replaced' in action['reason'] and 'recover.yml' in action['reason']
    assert 'REPLACED' in '\n'.join(summary_lines(status))
    with pytest.raises(PairChoiceError, match='serverid 1 is replaced'):
        recovery_pair(status, online=True)


def test_a_replaced_node_marked_broken_is_recovered():
    status = merge([view(0, {0: 1, 1: -1}, identity=identity(NODE0)),
                    view(1, {0: 1, 1: -1}, identity=identity(NEW))])
    action = status['recommended_action']
    assert (action['action'], action['target'], action['source']) == ('online_recovery', 1, 0)
    assert 'replaced' in action['reason'] and 'recover.yml' in action['reason']
    source, target = recovery_pair(status, online=True)
    assert (source['serverid'], target['serverid']) == (0, 1)


def test_matching_or_unrecorded_identities_leave_a_healthy_pair_healthy():
    for ids in ((identity(NODE0), identity(OLD)), (identity(NODE0, []), identity(OLD, [])),
                (identity(NODE0, unrecorded=True), identity(OLD, unrecorded=True)), (None, None)):
        status = merge([view(0, {0: 1, 1: 1}, identity=ids[0]), view(1, {0: 1, 1: 1}, identity=ids[1])])
        assert status['cluster_state'] == 'healthy', ids
        assert not any(node['replaced'] for node in status['nodes'])


def test_the_record_of_either_view_counts():
    """The new node's own view may hold no record (made before the pair recorded it): the peer's decides."""
    status = merge([view(0, {0: 1, 1: 1}, identity=identity(NODE0)),
                    view(1, {0: 1, 1: 1}, identity=identity(NEW, []))])
    assert by_sid(status)[1]['replaced']


def test_status_line_and_metrics_name_the_replaced_node():
    status = merge([view(0, {0: 1, 1: -1}, identity=identity(NODE0)),
                    view(1, {0: 1, 1: -1}, identity=identity(NEW))])
    assert node_note(by_sid(status)[1]) == '(replaced)'
    assert node_note(by_sid(status)[0]) == ''
    text = prometheus_metrics([dict(pair='p', status=dict(status, userdb='appdb'))], now=0)
    assert 'pgforest_node_replaced{pair="p",serverid="1",userdb="appdb"} 1' in text
    assert 'pgforest_node_replaced{pair="p",serverid="0",userdb="appdb"} 0' in text


def test_a_new_node_starts_with_the_pairs_settings_over_the_guides_defaults():
    from ansible_collections.pgforest.cluster.plugins.module_utils.mngdb import GLOBAL_CONFIG, LOCAL_CONFIG
    from ansible_collections.pgforest.cluster.plugins.module_utils.mngdb_job import pair_settings
    alone = pair_settings(None)
    assert alone['global_config'] == dict((key, spec[0]) for key, spec in GLOBAL_CONFIG.items())
    assert alone['local_config'] == {'DEFAULT': dict((key, spec[0]) for key, spec in LOCAL_CONFIG.items())}
    peer = dict(global_config={'mngdb_read_duration': '1', 'extra': 'x'},
                local_config={'batch': {'k': 'v'}, 'DEFAULT': {sorted(LOCAL_CONFIG)[0]: 'peer'}})
    joined = pair_settings(peer)
    assert joined['global_config']['mngdb_read_duration'] == '1' and joined['global_config']['extra'] == 'x'
    assert set(GLOBAL_CONFIG) <= set(joined['global_config'])
    assert joined['local_config']['batch'] == {'k': 'v'}
    assert joined['local_config']['DEFAULT'][sorted(LOCAL_CONFIG)[0]] == 'peer'
    assert set(LOCAL_CONFIG) == set(joined['local_config']['DEFAULT'])
    assert peer['local_config']['DEFAULT'] == {sorted(LOCAL_CONFIG)[0]: 'peer'}  # the peer's rows untouched
