"""The cheap row-count comparison's logic: which differences count, and when a pair is diverged."""
from ansible_collections.pgforest.cluster.plugins.module_utils.divergence import differences, flag_divergence, stable


def test_differences_lists_only_tables_whose_counts_differ_or_are_missing():
    found = differences({0: {'public.a': 5, 'public.b': 2}, 1: {'public.a': 5, 'public.b': 3, 'public.c': 0}})
    assert found == {'public.b': {'0': 2, '1': 3}, 'public.c': {'0': None, '1': 0}}
    assert differences({0: {'public.a': 1}, 1: {'public.a': 1}}) == {}


def test_a_difference_that_moves_between_rounds_is_in_flight_writes_not_divergence():
    rounds = [{'public.a': {'0': 10, '1': 9}, 'public.b': {'0': 4, '1': 1}},
              {'public.a': {'0': 12, '1': 12}, 'public.b': {'0': 4, '1': 1}},
              {'public.a': {'0': 14, '1': 13}, 'public.b': {'0': 4, '1': 1}}]
    assert stable(rounds) == {'public.b': {'0': 4, '1': 1}}


def test_only_a_healthy_pair_becomes_diverged():
    comparison = dict(compared='counts', equal=False, rounds=3, differences={'public.b': {'0': 4, '1': 1}})
    healthy = dict(cluster_state='healthy', healthy=True, recommended_action={'action': 'none'})
    flagged = flag_divergence(healthy, comparison)
    assert (flagged['cluster_state'], flagged['healthy']) == ('diverged', False)
    assert flagged['recommended_action']['action'] == 'compare_and_repair'
    assert 'public.b' in flagged['recommended_action']['reason']
    degraded = dict(cluster_state='degraded', healthy=False, recommended_action={'action': 'online_recovery'})
    assert flag_divergence(degraded, comparison)['cluster_state'] == 'degraded'
    equal = dict(comparison, equal=True, differences={})
    assert flag_divergence(dict(healthy, cluster_state='healthy'), equal)['cluster_state'] == 'healthy'
