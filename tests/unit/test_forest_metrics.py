"""The pairs' status as Prometheus metrics (plugins/filter/forest_metrics.py), read back with the
prometheus_client package's own text parser, for healthy, degraded, split brain and down pairs."""
import pytest
from ansible.errors import AnsibleFilterError
from prometheus_client.parser import text_string_to_metric_families

from ansible_collections.pgforest.cluster.plugins.filter.forest_metrics import STATES, prometheus_metrics

NOW = 1800000000.0


def node(serverid, views, reachable=True):
    return dict(serverid=serverid, reachable=reachable, views=dict((str(k), v) for k, v in views.items()))


def database(userdb, state, nodes, broken_log=()):
    return dict(userdb=userdb, cluster_state=state, healthy=state == 'healthy', nodes=nodes,
                broken_log=list(broken_log))


def samples(text):
    """{(metric, frozenset of labels): value} as Prometheus reads them."""
    found = {}
    for family in text_string_to_metric_families(text):
        assert family.type == 'gauge'
        for one in family.samples:
            found[(one.name, frozenset(one.labels.items()))] = one.value
    return found


def value(found, name, **labels):
    return found[(name, frozenset((k, str(v)) for k, v in labels.items()))]


def test_healthy_degraded_split_brain_and_down_read_back_as_they_are():
    pair_a = dict(databases=[
        database('orders', 'healthy', [node(0, {0: 1, 1: 1}), node(1, {0: 1, 1: 1})]),
        database('billing', 'degraded', [node(0, {0: 1, 1: 1}), node(1, {0: -1, 1: -1})],
                 broken_log=[dict(serverid=1, epoch=NOW - 90.5), dict(serverid=1, epoch=NOW - 4000)]),
    ])
    pair_b = dict(databases=[
        database('userdb', 'split_brain', [node(0, {0: 1, 1: -1}), node(1, {0: -1, 1: 1})]),
    ])
    pair_c = dict(databases=[database('userdb', 'down', [node(0, {}, reachable=False), node(1, {}, reachable=False)])])
    found = samples(prometheus_metrics([dict(pair='a', status=pair_a), dict(pair='b "quoted"\\x', status=pair_b),
                                        dict(pair='c', status=pair_c)], now=NOW))
    assert value(found, 'pgforest_database_healthy', pair='a', userdb='orders') == 1
    assert value(found, 'pgforest_database_healthy', pair='a', userdb='billing') == 0
    for state in STATES:  # one-hot: a state that goes away reads 0, the series stays
        assert value(found, 'pgforest_database_state', pair='a', userdb='billing', state=state) == (state == 'degraded')
    assert value(found, 'pgforest_node_validity', pair='a', userdb='billing', serverid=1, view=0) == -1
    assert value(found, 'pgforest_node_validity', pair='a', userdb='billing', serverid=0, view=1) == 1
    assert value(found, 'pgforest_broken_log_age_seconds', pair='a', userdb='billing', serverid=1) == 90.5
    assert ('pgforest_broken_log_age_seconds', frozenset(dict(pair='a', userdb='orders', serverid='1').items())) \
        not in found  # no entry: no sample, not a zero
    # split brain: each node valid in its own view, broken in the other's; labels with quotes survive
    b = 'b "quoted"\\x'
    assert value(found, 'pgforest_database_state', pair=b, userdb='userdb', state='split_brain') == 1
    assert value(found, 'pgforest_node_validity', pair=b, userdb='userdb', serverid=0, view=0) == 1
    assert value(found, 'pgforest_node_validity', pair=b, userdb='userdb', serverid=0, view=1) == -1
    # down: nothing answered, no view to report
    assert value(found, 'pgforest_node_reachable', pair='c', userdb='userdb', serverid=0) == 0
    assert value(found, 'pgforest_database_state', pair='c', userdb='userdb', state='down') == 1
    assert not [key for key in found if key[0] == 'pgforest_node_validity' and ('pair', 'c') in key[1]]
    assert value(found, 'pgforest_status_time_seconds') == NOW


def test_a_status_without_databases_is_one_database():
    status = database('userdb', 'recovering', [node(0, {0: 1, 1: 1}), node(1, {0: 0, 1: 0})])
    found = samples(prometheus_metrics([dict(pair='p', status=status)], now=NOW))
    assert value(found, 'pgforest_node_validity', pair='p', userdb='userdb', serverid=1, view=0) == 0
    assert value(found, 'pgforest_database_state', pair='p', userdb='userdb', state='recovering') == 1


def test_a_recovery_slot_reports_its_lag_and_whether_it_streams():
    source = dict(node(0, {0: 1, 1: 1}), replication_slots=[
        dict(name='pgforest_recovery_1', active=True, lag_bytes=16777216)])
    standby = dict(node(1, {0: 0, 1: 0}), replication_slots=[
        dict(name='pgforest_recovery_1', active=False, lag_bytes=None)])  # a copy's slot on a standby: no lag
    found = samples(prometheus_metrics([dict(pair='p', status=database('userdb', 'recovering', [source, standby]))],
                                       now=NOW))
    labels = dict(pair='p', userdb='userdb', slot='pgforest_recovery_1')
    assert value(found, 'pgforest_replication_slot_lag_bytes', serverid=0, **labels) == 16777216
    assert value(found, 'pgforest_replication_slot_active', serverid=0, **labels) == 1
    assert value(found, 'pgforest_replication_slot_active', serverid=1, **labels) == 0
    assert ('pgforest_replication_slot_lag_bytes', frozenset(dict(labels, serverid='1').items())) not in found
    healthy = samples(prometheus_metrics([dict(pair='p', status=database('userdb', 'healthy', [node(0, {0: 1})]))],
                                         now=NOW))
    assert not [key for key in healthy if key[0].startswith('pgforest_replication_slot')]


@pytest.mark.parametrize('items, message', [
    ('not a list', 'takes a list'),
    ([{'pair': 'p'}], 'needs a pair name and a forest_status result'),
    ([{'pair': 'p', 'status': {'failed': True, 'msg': 'boom'}}], 'forest_status failed for pair p: boom'),
])
def test_what_is_not_a_status_is_refused_by_name(items, message):
    with pytest.raises(AnsibleFilterError, match=message):
        prometheus_metrics(items)


def test_no_pairs_still_says_when():
    found = samples(prometheus_metrics([], now=NOW))
    assert found == {('pgforest_status_time_seconds', frozenset()): NOW}


def test_the_poll_interval_and_a_lowering_left_behind():
    record = dict(dba='30', short=1, at=NOW - 7200, for_seconds=7200.0)
    lowered = dict(node(0, {0: 1}), read_duration=dict(seconds=1, lowered=record))
    normal = dict(node(1, {1: 1}), read_duration=dict(seconds=30, lowered=None))
    found = samples(prometheus_metrics([dict(pair='p', status=database('userdb', 'healthy', [lowered, normal]))],
                                       now=NOW))
    assert value(found, 'pgforest_read_duration_seconds', pair='p', userdb='userdb', serverid=0) == 1
    assert value(found, 'pgforest_read_duration_seconds', pair='p', userdb='userdb', serverid=1) == 30
    assert value(found, 'pgforest_read_duration_lowered_seconds', pair='p', userdb='userdb', serverid=0) == 7200
    assert ('pgforest_read_duration_lowered_seconds',
            frozenset(dict(pair='p', userdb='userdb', serverid='1').items())) not in found
