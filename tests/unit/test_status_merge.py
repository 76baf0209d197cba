"""The status merge and the management database's settings, without a server."""
import pytest

from ansible_collections.pgforest.cluster.plugins.module_utils.status_rules import effective_validity, merge
from ansible_collections.pgforest.cluster.plugins.module_utils.status_text import summary_lines
from ansible_collections.pgforest.cluster.plugins.module_utils.forest_pg import node_error
from ansible_collections.pgforest.cluster.plugins.module_utils.mngdb import (
    GLOBAL_CONFIG, LOCAL_CONFIG, MngdbError, desired_server_info, mngdb_name, parse_udb_url,
    validate_setting)

URLS = {0: '192.168.1.100:5432/userdb', 1: '192.168.1.101:5432/userdb'}


def view(owner, values, reachable=True, urls=None, mngdb='present', identity=None):
    urls = urls or URLS
    host, port, _db = parse_udb_url(URLS[owner])
    rows = [dict(serverid=sid, udb_url=urls[sid], udb_validity=values.get(sid)) for sid in sorted(urls)]
    return dict(label='node%d' % owner, host=host, port=port, reachable=reachable,
                error=None if reachable else node_error('node%d' % owner, 'connect', 'timeout expired'), mngdb=mngdb if reachable else 'unknown',
                server_info=rows if reachable and mngdb == 'present' else None,
                server_version=150018 if reachable else None, in_recovery=False if reachable else None,
                server_addr='%s:%s' % (host, port) if reachable else None, broken_log=[],
                ssl=False if reachable else None, tls_version=None, tls_client_dn=None, replication_slots=[],
                read_duration=None, identity=identity if reachable else None)


def by_sid(status):
    return dict((node['serverid'], node) for node in status['nodes'])


# Guide §5.2, 取得例1-4: each node's server_info, and the guide's conclusion.
def test_seed_example_1_both_valid():
    status = merge([view(0, {0: 1, 1: 1}), view(1, {0: 1, 1: 1})])
    assert status['cluster_state'] == 'healthy'
    assert status['recommended_action']['action'] == 'none'
    assert status['views_agree'] and not status['disagreements']


def test_seed_example_2_serverid_1_broken_in_both_views():
    status = merge([view(0, {0: 1, 1: -1}), view(1, {0: 1, 1: -1})])
    assert status['cluster_state'] == 'degraded'
    assert by_sid(status)[1]['validity'] == -1 and by_sid(status)[0]['validity'] == 1
    action = status['recommended_action']
    assert (action['action'], action['target'], action['source'], action['online_possible']) == \
        ('online_recovery', 1, 0, True)


def test_seed_example_3_views_disagree_and_broken_wins():
    status = merge([view(0, {0: 1, 1: 1}), view(1, {0: 1, 1: -1})])
    assert status['cluster_state'] == 'degraded'
    assert by_sid(status)[1]['validity'] == -1
    assert by_sid(status)[1]['views'] == {'0': 1, '1': -1}
    assert status['disagreements'] == [{'serverid': 1, 'views': {'0': 1, '1': -1}}]
    assert not status['views_agree']
    assert status['recommended_action']['target'] == 1


def test_seed_example_4_both_broken_service_stopped():
    status = merge([view(0, {0: -1, 1: -1}), view(1, {0: -1, 1: -1})])
    assert status['cluster_state'] == 'down'
    assert status['recommended_action']['action'] == 'restore_from_backup'


@pytest.mark.parametrize('values, expected', [
    ([1, 1], 1), ([1, -1], -1), ([0, 1], 0), ([0, -1], -1), ([None, 1], 1), ([None, None], None)])
def test_effective_validity_rule(values, expected):
    assert effective_validity(values) == expected


def test_unreachable_node_still_marked_valid_degrades_the_pair():
    status = merge([view(0, {0: 1, 1: 1}), view(1, {}, reachable=False)])
    assert status['cluster_state'] == 'degraded'
    node = by_sid(status)[1]
    assert node['reachable'] is False and node['validity'] == 1
    reason = status['recommended_action']['reason']
    assert 'does not answer' in reason and 'validity=-1' in reason


def test_unreachable_valid_node_and_broken_other_means_start_the_valid_one():
    status = merge([view(0, {0: -1, 1: 1}), view(1, {}, reachable=False)])
    assert status['cluster_state'] == 'down'
    assert status['recommended_action']['action'] == 'start_servers'
    assert status['recommended_action']['source'] == 1


def test_write_suppressed_node_means_recovering():
    status = merge([view(0, {0: 1, 1: 0}), view(1, {0: 1, 1: 0})])
    assert status['cluster_state'] == 'recovering'


def test_swapped_server_order_is_misconfigured():
    swapped = {0: URLS[1], 1: URLS[0]}
    status = merge([view(0, {0: 1, 1: 1}), view(1, {0: 1, 1: 1}, urls=swapped)])
    assert status['cluster_state'] == 'misconfigured'
    assert 'server_info differs' in status['problems'][0]
    assert status['recommended_action']['action'] == 'fix_configuration'


def test_missing_management_database_is_misconfigured():
    status = merge([view(0, {0: 1, 1: 1}), view(1, {}, mngdb='missing')])
    assert status['cluster_state'] == 'misconfigured'
    assert 'management database missing' in status['problems'][0]


def test_primary_in_recovery_cannot_be_an_online_source():
    good = view(0, {0: 1, 1: -1})
    good['in_recovery'] = True
    status = merge([good, view(1, {0: 1, 1: -1})])
    assert status['recommended_action']['action'] == 'offline_recovery'
    assert status['recommended_action']['online_possible'] is False


def test_an_unreachable_node_not_marked_broken_is_to_be_marked_first():
    """The recommendation is what the recovery accepts: it refuses a node not marked -1."""
    status = merge([view(0, {0: 1, 1: 1}), view(1, {}, reachable=False)])
    action = status['recommended_action']
    assert status['cluster_state'] == 'degraded'
    assert (action['action'], action['target'], action['source']) == ('mark_broken', 1, 0)
    assert action['command'] == 'forest_mngdb serverid=1 validity=-1'
    assert 'then recover it online from serverid 0' in action['reason']


def test_a_malformed_udb_url_makes_the_pair_misconfigured_not_a_crash():
    urls = {0: URLS[0], 1: 'no-port-here'}
    status = merge([view(0, {0: 1, 1: 1}, urls=urls), view(1, {0: 1, 1: 1}, urls=urls)])
    assert status['cluster_state'] == 'misconfigured'
    assert any("udb_url 'no-port-here' of serverid 1 is not host:port/db" in problem
               for problem in status['problems']), status['problems']


def test_summary_has_one_line_per_node():
    lines = summary_lines(merge([view(0, {0: 1, 1: 1}), view(1, {0: 1, 1: -1})]))
    assert len(lines) == 3
    assert lines[2].startswith('serverid 1 192.168.1.101:5432/userdb') and 'broken' in lines[2]


def test_defaults_are_the_seeds():
    assert {key: spec[0] for key, spec in GLOBAL_CONFIG.items()} == {
        'mngdb_read_duration': '30', 'mngcon_create_timeout': '10', 'mngquery_exec_timeout': '10',
        'mngdb_max_burst_error': '2', 'broken_error_prefix': '08,53,57P,3D', 'log_level': '2',
        'log_formatter_name': 'org.postgresforest.util.ForestLogFormatter', 'log_console_enable': '1',
        'log_file_enable': '0', 'log_file_name': '/var/log/forest/forest.log.%u-%g', 'log_file_size_mb': '0',
        'log_file_rotate_count': '1'}
    assert {key: spec[0] for key, spec in LOCAL_CONFIG.items()} == {
        'api_exec_timeout': '600', 'fast_api_return_on_db_fail': '1'}


@pytest.mark.parametrize('key, value, stored', [
    ('mngdb_read_duration', 0, '0'), ('mngdb_read_duration', '2147483647', '2147483647'),
    ('mngdb_max_burst_error', -1, '-1'), ('log_level', 4, '4'), ('log_console_enable', True, '1'),
    ('broken_error_prefix', '08,53', '08,53')])
def test_values_in_range_are_stored_as_text(key, value, stored):
    assert validate_setting('global_config', key, value) == stored


@pytest.mark.parametrize('table, key, value, message', [
    ('global_config', 'mngdb_read_duration', -1, 'must be from 0 to 2147483647'),
    ('global_config', 'mngdb_read_duration', 2147483648, 'must be from 0 to 2147483647'),
    ('global_config', 'mngdb_max_burst_error', -2, 'must be from -1'),
    ('global_config', 'log_level', 5, 'must be from 0 to 4'),
    ('global_config', 'log_file_enable', 2, 'must be from 0 to 1'),
    ('global_config', 'log_level', 'high', 'must be an integer'),
    ('global_config', 'no_such_key', 1, 'unknown global_config key'),
    ('local_config', 'api_exec_timeout', -5, 'must be from 0'),
    ('local_config', 'mngdb_read_duration', 1, 'unknown local_config key'),
])
def test_bad_values_are_refused_with_the_allowed_range(table, key, value, message):
    with pytest.raises(MngdbError, match=message):
        validate_setting(table, key, value)


def test_servers_option_is_checked():
    assert desired_server_info(['10.0.0.1:5432', '10.0.0.2:5433'], 'db') == [
        {'serverid': 0, 'udb_url': '10.0.0.1:5432/db'}, {'serverid': 1, 'udb_url': '10.0.0.2:5433/db'}]
    for bad in (['10.0.0.1:5432'], ['10.0.0.1', '10.0.0.2:5432'], ['a:1', 'a:1'], ['a:99999', 'b:1']):
        with pytest.raises(MngdbError):
            desired_server_info(bad, 'db')


def test_management_database_name_must_fit_postgres_limit():
    assert mngdb_name('userdb') == 'userdb_pghainfo'
    with pytest.raises(MngdbError, match='63 bytes'):
        mngdb_name('x' * 60)


def test_one_incident_written_to_both_views_is_listed_once():
    def row(epoch, msg='conn lost'):
        return dict(serverid=1, time=str(epoch), epoch=epoch, client='10.0.1.21', api_task='Exec_Task',
                    err_msg=msg, err_type='PSQLException', err_state='08006')
    zero, one = view(0, {0: 1, 1: -1}), view(1, {0: 1, 1: -1})
    zero['broken_log'] = [row(1000.2), row(900.0), row(800.0, 'other')]
    one['broken_log'] = [row(1000.9), row(700.0)]
    merged = merge([zero, one])['broken_log']
    assert [r['time'] for r in merged] == ['1000.9', '900.0', '800.0']
    assert all('view' not in r for r in merged) and [r['epoch'] for r in merged] == [1000.9, 900.0, 800.0]


# Guide §11.1.2: applications cut off from each other each marked the other node broken.
def test_each_node_marking_the_other_broken_is_split_brain_not_down():
    status = merge([view(0, {0: 1, 1: -1}), view(1, {0: -1, 1: 1})])
    assert status['cluster_state'] == 'split_brain'
    action = status['recommended_action']
    assert action['action'] == 'resolve_split_brain' and 'target' not in action and 'source' not in action
    assert 'forest_dbsync mode=compare' in action['reason']


def test_both_broken_in_both_views_is_still_down():
    status = merge([view(0, {0: 1, 1: -1}), view(1, {0: -1, 1: -1})])
    assert status['cluster_state'] == 'down'


def test_split_brain_needs_both_nodes_answering():
    status = merge([view(0, {0: 1, 1: -1}), view(1, {0: -1, 1: 1}, reachable=False)])
    assert status['cluster_state'] != 'split_brain'


def test_a_node_is_known_by_the_address_used_first_then_by_its_servers_own():
    from ansible_collections.pgforest.cluster.plugins.module_utils.mngdb import serverid_at
    rows = [dict(serverid=0, udb_url='10.0.0.1:5432/userdb'), dict(serverid=1, udb_url='db1.example:5432/userdb'),
            dict(serverid=9, udb_url='not a url')]
    asked = []
    assert serverid_at(rows, 'db1.example:5432', lambda: asked.append(1) or '10.0.0.1:5432', strict=False) == 1
    assert asked == []  # the server's own address is asked only when the used one matched nothing
    assert serverid_at(rows, '127.0.0.1:5432', lambda: '10.0.0.1:5432', strict=False) == 0
    assert serverid_at(rows, '127.0.0.1:5432', None, strict=False) is None
