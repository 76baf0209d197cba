"""Pure pieces of online recovery: the phase table, the workspace and its state file, the base copy's
process, connection strings, the one default of forest_recover's mode."""
import os
import stat
import subprocess
import sys
import time

import pytest

from ansible_collections.pgforest.cluster.plugins.module_utils.forest_pg import Node, libpq_conninfo
from ansible_collections.pgforest.cluster.plugins.module_utils.local_server import LocalServer, LocalServerError
from ansible_collections.pgforest.cluster.plugins.module_utils.recovery import RecoveryError
from ansible_collections.pgforest.cluster.plugins.module_utils.recovery_workspace import (
    KEEP_FILES, Workspace, recorded_scope)


@pytest.fixture
def workspace(tmp_path):
    server = LocalServer(str(tmp_path / 'data'), bindir=str(tmp_path), os_user='root')
    space = Workspace(server)
    space.create()
    return space


def test_workspace_sits_beside_the_data_directory(workspace, tmp_path):
    assert workspace.path == str(tmp_path / 'data') + '.pgforest-recovery'
    assert stat.S_IMODE(os.stat(workspace.path).st_mode) == 0o700


def test_passfile_is_private_and_escapes_colons_and_backslashes(workspace):
    workspace.write_passfile(Node('db:host', 5433, 'us\\er', 'pa:ss\\word'))
    assert stat.S_IMODE(os.stat(workspace.passfile).st_mode) == 0o600
    with open(workspace.passfile) as handle:
        assert handle.read() == 'db\\:host:5433:*:us\\\\er:pa\\:ss\\\\word\n'
    workspace.remove()
    assert not os.path.exists(workspace.path)


def test_state_round_trip_has_no_password(workspace):
    workspace.save(dict(stage='standby', source=dict(serverid=0, host='h', port=5432)))
    state = workspace.load()
    assert state['stage'] == 'standby' and state['updated']
    with open(workspace.state_file) as handle:
        assert 'password' not in handle.read()


def test_unreadable_state_is_a_clear_error(workspace):
    with open(workspace.state_file, 'w') as handle:
        handle.write('{not json')
    with pytest.raises(RecoveryError, match='cannot read the recovery state .* fix or remove it by hand'):
        workspace.load()


def test_an_interrupted_removal_leaves_no_workspace_without_state_and_the_next_recovery_clears_it(workspace):
    """remove() renames the workspace before deleting it: a removal stopped after the rename (Ctrl-C, a kill)
    leaves only the renamed directory, which neither stops a new recovery nor outlives its start."""
    workspace.save(dict(stage='promoted'))
    os.mkdir(workspace.old_data)
    os.rename(workspace.path, workspace.trash)  # what remove() does first, then stopped there
    workspace.refuse_if_left_over()  # no leftover: a new recovery may start
    workspace.create()
    assert not os.path.exists(workspace.trash) and os.listdir(workspace.path) == ['conf']
    workspace.save(dict(stage='promoted'))
    workspace.remove()
    assert not os.path.exists(workspace.path) and not os.path.exists(workspace.trash)


def test_missing_state_means_no_recovery_in_progress(tmp_path):
    assert Workspace(LocalServer(str(tmp_path / 'data'), bindir=str(tmp_path), os_user='root')).load() is None


def test_conninfo_quotes_values_and_leaves_out_none():
    assert libpq_conninfo(host='h', passfile="/a b/it's", port=None) == "host='h' passfile='/a b/it\\'s'"
    assert 'password' not in Node('h', 5432, 'u', 'secret').conninfo_string('db')


def test_unknown_os_user_and_systemd_without_unit_are_refused(tmp_path):
    with pytest.raises(LocalServerError, match='OS user .* does not exist'):
        LocalServer(str(tmp_path), bindir=str(tmp_path), os_user='no-such-user-pgforest')
    with pytest.raises(LocalServerError, match='needs service_name'):
        LocalServer(str(tmp_path), bindir=str(tmp_path), os_user='root', service_manager='systemd')


def test_missing_binary_names_the_directory(tmp_path):
    server = LocalServer(str(tmp_path), bindir=str(tmp_path), os_user='root')
    with pytest.raises(LocalServerError, match='pg_basebackup not found in %s' % tmp_path):
        server.tool('pg_basebackup')


def test_state_file_round_trip_gives_back_the_recovery_it_records(workspace):
    """What a later phase and a cancel take from the state file is the one recorded_scope: the pair,
    the databases covered and those replaced; a state file of an earlier version has neither list."""
    source, target = dict(serverid=0, host='h0', port=5432), dict(serverid=1, host='h1', port=5432)
    workspace.save(dict(stage='standby', source=source, target=target, slot='pgforest_recovery_1',
                        userdbs=['orders', 'billing'], replaced_databases=['monitoring']))
    assert recorded_scope(workspace.load(), 'orders') == (source, target, ['orders', 'billing'], ['monitoring'])
    workspace.save(dict(stage='standby', source=source, target=target, slot='pgforest_recovery_1'))
    assert recorded_scope(workspace.load(), 'orders') == (source, target, ['orders'], [])
    assert not os.path.exists(workspace.state_file + '.new')


def test_data_directory_moved_aside_and_back_keeps_the_own_configuration(workspace):
    data = workspace.server.data_dir
    os.mkdir(data)
    for name in KEEP_FILES + ['PG_VERSION']:
        with open(os.path.join(data, name), 'w') as handle:
            handle.write('own ' + name)
    state = dict(stage='base')
    workspace.move_aside(state)
    assert state['moved_aside'] and workspace.load()['moved_aside'] and not os.path.exists(data)
    os.mkdir(data)  # the copy: the source's files
    with open(os.path.join(data, 'postgresql.conf'), 'w') as handle:
        handle.write('source postgresql.conf')
    workspace.put_back_own_config()
    with open(os.path.join(data, 'postgresql.conf')) as handle:
        assert handle.read() == 'own postgresql.conf'
    assert sorted(os.listdir(data)) == sorted(KEEP_FILES)  # PG_VERSION is the old directory's only
    assert workspace.put_back_old_data(state)
    assert sorted(os.listdir(data)) == sorted(KEEP_FILES + ['PG_VERSION'])
    assert not workspace.put_back_old_data(state)  # a second rollback finds nothing to move


# --- the base copy: pg_basebackup's output and its process group ------------------------------------

def test_progress_lines_are_the_last_of_the_output():
    from ansible_collections.pgforest.cluster.plugins.module_utils.base_copy import is_progress, last_line
    output = b'waiting for checkpoint\n  1024/20480 kB (5%), 0/1 tablespace\r20480/20480 kB (100%), 1/1 tablespace\n\n'
    assert last_line(output) == '20480/20480 kB (100%), 1/1 tablespace' and is_progress(last_line(output))
    assert last_line(b'') == '' and not is_progress('pg_basebackup: error: connection failed')


def fake_basebackup(tmp_path, body):
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    tool = bindir / 'pg_basebackup'
    tool.write_text('#!/bin/sh\n' + body)
    tool.chmod(0o755)
    import pwd
    data = tmp_path / 'data'
    data.mkdir()
    return LocalServer(str(data), bindir=str(bindir), os_user=pwd.getpwuid(os.geteuid()).pw_name)


def test_base_copy_kills_the_child_that_holds_its_output_open(tmp_path):
    """pg_basebackup's WAL streamer may outlive it holding stderr: the copy ends anyway, its group killed."""
    from ansible_collections.pgforest.cluster.plugins.module_utils.base_copy import READER_GRACE_SECONDS, BaseCopy
    server = fake_basebackup(tmp_path, 'printf "10/20 kB (50%%)\\r20/20 kB (100%%)\\n" >&2\n'
                                       'echo x > "$(echo "$@" | tr " " "\\n" | sed -n "s/^--pgdata=//p")/file"\n'
                                       'sleep 300 &\nexit 0\n')
    said = []
    copy = BaseCopy(server, Node('h', 5432, 'u', None), 'slot', str(tmp_path / 'pgpass'), say=said.append, every=0)
    started = time.monotonic()
    assert copy.run(0) == 2  # the bytes in the data directory
    assert time.monotonic() - started < READER_GRACE_SECONDS + 5
    assert 'pg_basebackup: 20/20 kB (100%)' in said and said[-1].startswith('base backup done')
    left = subprocess.run(["ps", "-o", "pid=,stat=", "-g", str(copy.process.pid)], capture_output=True, text=True, check=False).stdout
    assert all(line.split()[1].startswith("Z") for line in left.splitlines()), left  # killed (a zombie until reaped)


def test_failed_base_copy_names_its_last_words(tmp_path):
    from ansible_collections.pgforest.cluster.plugins.module_utils.base_copy import BaseCopy
    server = fake_basebackup(tmp_path, 'echo "pg_basebackup: error: could not connect" >&2\nexit 1\n')
    copy = BaseCopy(server, Node('h', 5432, 'u', None), 'slot', str(tmp_path / 'pgpass'), max_rate='50M')
    assert copy.argv()[-1] == '--max-rate=50M'
    with pytest.raises(RecoveryError, match='pg_basebackup from serverid 0 failed .exit 1.: pg_basebackup: error: '
                                            'could not connect'):
        copy.run(0)
    copy.kill()  # a rollback after it: nothing left, no error


# --- the phases: one table (online_phases.PHASES) that the module and the role follow ---------------

@pytest.mark.parametrize('filter_name, call', [
    ('recovery_phases', 'recovery_phases.starts_recovery("base")'),
    ('forest_metrics', '"down" in forest_metrics.STATES'),
])
def test_the_controllers_filters_load_no_database_driver(filter_name, call):
    """The roles' filters run on the controller: they import the tables they read (the phase table,
    the states) alone, not the recovery or the status reader, which load psycopg."""
    code = ('import sys\n'
            'from ansible_collections.pgforest.cluster.plugins.filter import %s\n'
            'assert %s\n'
            'loaded = sorted(name for name in sys.modules if "psycopg" in name or name.endswith("online_recovery")\n'
            '                or name.endswith("forest_pg"))\n'
            'assert loaded == [], loaded\n' % (filter_name, call))
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path)))
    assert done.returncode == 0, done.stderr


def test_each_stage_names_the_phase_that_continues_it():
    from ansible_collections.pgforest.cluster.plugins.module_utils.online_phases import (
        CANCEL_PENDING, PHASES, STARTED, next_phase)
    assert [(phase.needs, phase.name, phase.leaves) for phase in PHASES] == [
        (None, 'base', 'standby'), ('standby', 'cut', 'promoted'), ('promoted', 'cleanup', 'done')]
    assert dict((stage, next_phase(stage)) for stage in (STARTED, 'standby', 'promoted', CANCEL_PENDING)) == {
        STARTED: 'cancel', 'standby': 'cut', 'promoted': 'cleanup', CANCEL_PENDING: 'cancel'}


def test_the_module_and_the_role_offer_the_phases_of_the_table():
    import yaml
    from pgforest_dev import REPO
    from ansible_collections.pgforest.cluster.plugins.module_utils.online_phases import PHASE_CHOICES
    from ansible_collections.pgforest.cluster.plugins.modules import forest_recover
    documented = yaml.safe_load(forest_recover.DOCUMENTATION)['options']['phase']['choices']
    with open(os.path.join(REPO, 'roles', 'forest_recovery', 'meta', 'argument_specs.yml')) as handle:
        role = yaml.safe_load(handle)['argument_specs']['main']['options']['forest_recovery_phase']['choices']
    assert list(PHASE_CHOICES) == ['all', 'base', 'cut', 'cleanup', 'cancel'] == documented == role


def test_the_role_asks_the_table_which_phases_start_a_recovery():
    from ansible.errors import AnsibleFilterError
    from ansible_collections.pgforest.cluster.plugins.filter.recovery_phases import starts_recovery
    assert [phase for phase in ('all', 'base', 'cut', 'cleanup', 'cancel') if starts_recovery(phase)] == ['all', 'base']
    with pytest.raises(AnsibleFilterError, match='phase must be one of all, base, cut, cleanup, cancel'):
        starts_recovery('sideways')


# --- one default for mode ---------------------------------------------------------------------------

def test_the_role_and_the_playbook_default_to_the_modules_mode():
    """forest_recover's mode has one default (online: the safe one with the applications up); the role's
    defaults, its argument spec and recover.yml must say the same, since Ansible wants them literal."""
    import yaml
    from pgforest_dev import REPO
    from ansible_collections.pgforest.cluster.plugins.modules import forest_recover
    documented = yaml.safe_load(forest_recover.DOCUMENTATION)['options']['mode']['default']
    role = os.path.join(REPO, 'roles', 'forest_recovery')
    with open(os.path.join(role, 'defaults', 'main.yml')) as handle:
        role_default = yaml.safe_load(handle)['forest_recovery_mode']
    with open(os.path.join(role, 'meta', 'argument_specs.yml')) as handle:
        spec = yaml.safe_load(handle)['argument_specs']['main']['options']['forest_recovery_mode']['default']
    with open(os.path.join(REPO, 'playbooks', 'recover.yml')) as handle:
        playbook = yaml.safe_load(handle)[0]['vars']['mode']
    assert documented == role_default == spec == playbook == 'online'
