"""The PostgreSQL major of a node's host (module_utils/pg_platform.py): which major the role takes
and why, the pair's nodes on one major, physical copies within one major, and which servers
beside the node are removed (never used) or kept."""
import pytest

from ansible_collections.pgforest.cluster.plugins.filter import pg_platform as pg_filters
from ansible_collections.pgforest.cluster.plugins.module_utils import pg_platform
from ansible_collections.pgforest.cluster.plugins.module_utils.pg_platform import PlatformError, choose_major

# apt-cache depends postgresql, as Debian 13 and Debian 12 print it.
TRIXIE = 'postgresql\n  Depends: postgresql-17\n  Suggests: postgresql-doc\n'
BOOKWORM = 'postgresql\n  Depends: postgresql-15\n  Suggests: postgresql-doc\n'


def test_the_os_default_is_what_the_postgresql_package_depends_on():
    assert pg_platform.os_default_major(TRIXIE) == 17
    assert pg_platform.os_default_major(BOOKWORM) == 15
    # apt-cache show's Depends: line, with alternatives and other packages beside it
    assert pg_platform.os_default_major('Package: postgresql\nDepends: postgresql-17, postgresql-common (>= 241)\n') \
        == 17
    assert pg_platform.os_default_major('postgresql\n  Depends: postgresql-common\n  Suggests: postgresql-doc-16\n') \
        is None
    assert pg_platform.os_default_major('') is None
    assert pg_platform.os_default_major(None) is None


@pytest.mark.parametrize('asked, running, installed, os_default, expected', [
    (None, None, [], 17, (17, 'os default')),             # a bare Debian 13 host
    (None, None, [], 15, (15, 'os default')),             # a bare Debian 12 host
    (None, None, [15], 17, (15, 'installed')),            # PostgreSQL already installed wins over the OS's default
    (None, None, [15, 17], 15, (17, 'installed')),        # the newest installed
    (None, 15, [15, 17], 17, (15, 'running')),            # the node's data directory wins over what is installed
    (None, 17, [], None, (17, 'running')),
    (17, None, [15], 15, (17, 'set')),                    # asked for wins
    (15, 15, [15, 17], 17, (15, 'set')),
    ('16', None, [], None, (16, 'set')),                  # -e gives a string
    ('', None, [15], None, (15, 'installed')),            # an empty value is "not set"
])
def test_which_major_and_why(asked, running, installed, os_default, expected):
    assert choose_major(asked, running, installed, os_default) == expected


def test_a_version_that_differs_from_the_data_directory_is_refused_with_the_upgrade_path():
    with pytest.raises(PlatformError) as refused:
        choose_major(17, 15, [15, 17], 17)
    message = str(refused.value)
    assert 'forest_node_pg_version is 17' in message and 'PostgreSQL 15' in message
    assert 'mark it -1' in message and 'Nothing was changed' in message


def test_nothing_to_choose_from_says_what_to_do():
    with pytest.raises(PlatformError, match='Set forest_node_pg_version'):
        choose_major(None, None, [], None)


@pytest.mark.parametrize('args', [(14, None, [], None), (None, 13, [], None), (None, None, [14], None),
                                  (None, None, [], 13)])
def test_majors_before_15_are_refused(args):
    with pytest.raises(PlatformError, match='needs 15 or newer'):
        choose_major(*args)


def test_what_depends_on_the_major_comes_from_one_table():
    assert pg_platform.bindir(17) == '/usr/lib/postgresql/17/bin'
    assert pg_platform.packages('15') == ['postgresql-15', 'postgresql-client-15']
    assert pg_filters.pg_bindir('17') == pg_platform.bindir(17)
    assert pg_filters.pg_packages(17) == pg_platform.packages(17)


def test_the_pair_on_two_majors_is_refused_naming_both_hosts_and_versions():
    assert pg_platform.pair_mismatch(('node0', 17, 'os default'), [('node1', 17, 'running')]) is None
    assert pg_platform.pair_mismatch(('node0', 17, 'os default'), []) is None
    message = pg_platform.pair_mismatch(('node0', 17, 'os default'), [('node1', 15, 'running')])
    assert 'node0 would run 17 (os default)' in message and 'node1 15 (running)' in message
    assert 'forest_node_pg_version' in message and 'Nothing was changed' in message


def test_the_pair_filter_reads_the_facts_of_the_hosts_in_the_play():
    hostvars = dict(node0=dict(forest_node_pg_major='17', forest_node_pg_major_reason='os default'),
                    node1=dict(forest_node_pg_major=15, forest_node_pg_major_reason='running'),
                    node2=dict())  # not in this play yet: no facts
    assert 'node1 15 (running)' in pg_filters.pg_pair_mismatch(hostvars, 'node0', ['node0', 'node1'])
    assert pg_filters.pg_pair_mismatch(hostvars, 'node0', ['node0', 'node2']) == ''
    hostvars['node1']['forest_node_pg_major'] = 17
    assert pg_filters.pg_pair_mismatch(hostvars, 'node1', ['node0', 'node1']) == ''


def test_a_peer_left_out_of_the_play_is_named_in_a_warning_not_passed_silently():
    assert pg_platform.uncompared_warning(17, []) is None
    warning = pg_platform.uncompared_warning(17, ['node0'])
    assert "could not compare this node's PostgreSQL 17 with node0" in warning
    assert 'Moving the pair to a new major' in warning and 'mode=offline' in warning


def test_a_major_neither_installed_nor_offered_is_refused_before_anything_changes():
    assert pg_platform.availability_refusal(17, [15, 17], None) is None  # installed: no apt needed
    assert pg_platform.availability_refusal(17, [15], '17.6-0+deb13u1') is None  # apt installs it
    assert pg_platform.availability_refusal(17, [], '') is None  # no apt here: nothing known, the install says
    refusal = pg_platform.availability_refusal(99, [15], None)
    assert 'forest_node_pg_version is 99' in refusal and 'apt-cache policy postgresql-99: no candidate' in refusal
    assert 'Nothing was changed' in refusal


@pytest.mark.parametrize('policy, candidate', [
    ('postgresql-17:\n  Installed: (none)\n  Candidate: 17.6-0+deb13u1\n  Version table:\n', '17.6-0+deb13u1'),
    ('postgresql-99:\n  Installed: (none)\n  Candidate: (none)\n  Version table:\n', None),
    ('', None),  # apt-cache policy of a package apt has never heard of prints nothing
])
def test_apt_candidate_reads_apt_cache_policy(monkeypatch, policy, candidate):
    monkeypatch.setattr(pg_platform, '_run', lambda argv, env=None: (0, policy, ''))
    assert pg_platform.apt_candidate(17) == candidate
    monkeypatch.setattr(pg_platform, '_run', lambda argv, env=None: (127, '', 'No such file'))
    assert pg_platform.apt_candidate(17) == ''


def test_an_online_recovery_across_majors_is_refused_before_anything_changes():
    assert pg_platform.online_copy_refusal(0, 15, 1, 15, '/usr/lib/postgresql/15/bin', 15) is None
    assert pg_platform.online_copy_refusal(0, 17, 1, None, '/usr/lib/postgresql/17/bin', 17) is None  # a new host
    target_newer = pg_platform.online_copy_refusal(0, 15, 1, 17, '/usr/lib/postgresql/15/bin', 15)
    assert 'serverid 0 runs PostgreSQL 15' in target_newer and "serverid 1's data directory here is PostgreSQL 17" \
        in target_newer and 'mode=offline' in target_newer and 'Nothing was changed' in target_newer
    missing = pg_platform.online_copy_refusal(0, 17, 1, None, None, None)
    assert 'PostgreSQL 17, which is not installed here (no /usr/lib/postgresql/17/bin/pg_ctl)' in missing
    other_programs = pg_platform.online_copy_refusal(0, 17, 1, None, '/opt/pg15/bin', 15)
    assert '/opt/pg15/bin here is 15' in other_programs


def test_a_physical_restore_across_majors_is_refused():
    assert pg_platform.physical_restore_refusal(1, 15, 15, '/usr/lib/postgresql/15/bin', 15) is None
    assert pg_platform.physical_restore_refusal(1, 15, None, '/usr/lib/postgresql/15/bin', 15) is None
    onto_newer = pg_platform.physical_restore_refusal(1, 15, 17, '/usr/lib/postgresql/15/bin', 15)
    assert 'is PostgreSQL 15' in onto_newer and 'data directory here is PostgreSQL 17' in onto_newer
    assert 'kind=logical' in onto_newer
    other_programs = pg_platform.physical_restore_refusal(1, 15, None, '/usr/lib/postgresql/17/bin', 17)
    assert 'Install PostgreSQL 15' in other_programs and 'Nothing was changed' in other_programs
    not_installed = pg_platform.physical_restore_refusal(1, 15, None, None, None)
    assert 'PostgreSQL 15, which is not installed here (no /usr/lib/postgresql/15/bin/pg_ctl)' in not_installed


MAIN = dict(version='17', cluster='main', port=5432, running=True, pgdata='/var/lib/postgresql/17/main',
            socketdir='/var/run/postgresql')
NOTHING = dict(relations=0, schemas=0, functions=0, types=0, extensions=0, large_objects=0)


def fresh(**changes):
    contents = dict(data_directory=MAIN['pgdata'], databases=[], roles=[],
                    objects=dict(postgres=dict(NOTHING), template1=dict(NOTHING)))
    contents.update(changes)
    return contents


def test_only_a_running_cluster_that_holds_what_initdb_made_is_removed():
    assert pg_platform.stray_verdict(MAIN, fresh())[0] == 'remove'


@pytest.mark.parametrize('cluster, contents, why', [
    (dict(MAIN, running=False), None, 'stopped'),
    (MAIN, None, 'could not be read'),
    (MAIN, dict(error='psql: connection refused'), 'connection refused'),
    (MAIN, fresh(databases=['shop']), 'user databases (shop)'),
    # Another server answered on its port (its port changed in postgresql.conf, not yet restarted).
    (MAIN, fresh(data_directory='/var/lib/postgresql/17/other'), 'answering on its port 5432 is not it'),
    (MAIN, fresh(data_directory=None), 'is not it'),
    # Only the cluster the packages make: one the DBA made, even empty, is theirs.
    (dict(MAIN, cluster='reporting', pgdata='/var/lib/postgresql/17/reporting'),
     fresh(data_directory='/var/lib/postgresql/17/reporting'), 'the OS packages did not make it'),
    (dict(MAIN, unreadable='port None'), fresh(), 'describes it only partly (port None)'),
    (MAIN, fresh(roles=['app']), 'roles of its own (app)'),
    (MAIN, fresh(objects=dict(postgres=dict(NOTHING, relations=2), template1=dict(NOTHING))), '2 relations in postgres'),
    (MAIN, fresh(objects=dict(postgres=dict(NOTHING), template1=dict(NOTHING, extensions=1))),
     '1 extensions in template1'),
    (MAIN, fresh(objects=dict(postgres=dict(NOTHING, large_objects=1), template1=dict(NOTHING))),
     '1 large objects in postgres'),
])
def test_a_cluster_that_may_hold_data_is_kept(cluster, contents, why):
    verdict, reason = pg_platform.stray_verdict(cluster, contents)
    assert verdict == 'keep' and why in reason


def test_the_warning_names_the_cluster_and_what_to_do():
    warning = pg_platform.stray_warning(MAIN, 'it holds user databases (shop)')
    assert '17/main (PostgreSQL 17, cluster main, port 5432, data directory /var/lib/postgresql/17/main)' in warning
    assert 'pg_dropcluster --stop 17 main' in warning and 'forest_node_stray_clusters=keep' in warning


def test_pg_lsclusters_json_and_the_node_itself_left_out(tmp_path):
    text = ('[{"socketdir":"/var/run/postgresql","cluster":"main","pgdata":"/var/lib/postgresql/15/main",'
            '"port":"5432","running":0,"version":15},'
            '{"socketdir":"/run/x","cluster":"forest","pgdata":"%s","port":"5433","running":1,"version":"17"}]'
            % (tmp_path / 'data'))
    clusters = pg_platform.parse_clusters(text)
    assert [(c['version'], c['cluster'], c['port'], c['running'], c['unreadable']) for c in clusters] == \
        [('15', 'main', 5432, False, None), ('17', 'forest', 5433, True, None)]
    assert [c['cluster'] for c in pg_platform.strays(clusters, str(tmp_path / 'data'))] == ['main']
    assert pg_platform.parse_clusters('[]') == []


def test_odd_pg_lsclusters_entries_are_kept_and_named_never_a_traceback():
    """A dead postgresql.conf (no port, no running), an old dotted version, a port it cannot tell."""
    text = ('[{"cluster":"main","pgdata":"/var/lib/postgresql/17/main","version":17},'
            '{"cluster":"main","pgdata":"/var/lib/postgresql/9.6/main","port":"5433","running":1,"version":"9.6"},'
            '{"cluster":"odd name.é","pgdata":"/srv/odd","port":"<unknown>","running":"x","version":"16"}, 7]')
    clusters = pg_platform.parse_clusters(text)
    assert [(c['version'], c['cluster']) for c in clusters] == [('17', 'main'), ('9.6', 'main'), ('16', 'odd name.é')]
    assert clusters[0]['unreadable'] == "port None" and clusters[0]['running'] is False
    assert clusters[1]['unreadable'] is None and clusters[1]['port'] == 5433
    assert "port '<unknown>'" in clusters[2]['unreadable'] and "running 'x'" in clusters[2]['unreadable']
    assert pg_platform.stray_verdict(clusters[0], None)[0] == 'keep'
    assert not pg_platform.worth_reading(clusters[0]) and not pg_platform.worth_reading(clusters[2])
    assert 'pg_dropcluster --stop 9.6 main' in pg_platform.stray_warning(clusters[1], 'why')
    for bad in ('not json', '{"a": 1}'):
        with pytest.raises(pg_platform.PlatformError):
            pg_platform.parse_clusters(bad)


def test_apt_lists_are_counted_by_their_packages_files_and_none_without_apt(tmp_path, monkeypatch):
    lists = tmp_path / 'lists'
    monkeypatch.setattr(pg_platform, 'APT_LISTS', str(lists))
    assert pg_platform.apt_list_count() is None  # no apt here
    lists.mkdir()
    (lists / 'partial').mkdir()
    (lists / 'lock').write_text('')
    assert pg_platform.apt_list_count() == 0  # a fresh image: apt without its lists
    for name in ('deb.debian.org_debian_dists_trixie_main_binary-amd64_Packages',
                 'deb.debian.org_debian_dists_trixie-updates_main_binary-amd64_Packages.lz4',
                 'deb.debian.org_debian_dists_trixie_InRelease'):
        (lists / name).write_text('')
    assert pg_platform.apt_list_count() == 2


def test_apt_lists_are_read_after_another_apt_lets_go_of_their_lock_and_other_failures_are_named(monkeypatch):
    busy = (100, '', 'E: Could not get lock /var/lib/apt/lists/lock. It is held by process 812 (apt-get)\n')
    answers = [busy, busy, (0, '', '')]
    calls = []

    def run(argv, env=None, timeout=60):  # pylint: disable=unused-argument
        calls.append(argv)
        return answers.pop(0)
    monkeypatch.setattr(pg_platform, '_run', run)
    pg_platform.read_apt_lists(lock_wait=60, pause=0)
    assert calls == [['apt-get', 'update', '-qq']] * 3
    answers[:] = [busy] * 3
    with pytest.raises(PlatformError, match='apt-get update failed .*Could not get lock'):
        pg_platform.read_apt_lists(lock_wait=0, pause=0)
    answers[:] = [(100, '', 'E: Failed to fetch http://deb.debian.org/debian/dists/trixie/InRelease\n')]
    del calls[:]
    with pytest.raises(PlatformError, match='Failed to fetch'):
        pg_platform.read_apt_lists(lock_wait=60, pause=0)
    assert len(calls) == 1  # not a lock: no second try
