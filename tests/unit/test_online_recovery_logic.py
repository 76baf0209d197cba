"""Pure pieces of online recovery: the passfile, the state file, connection strings."""
import os
import stat

import pytest

from ansible_collections.pgforest.cluster.plugins.module_utils.forest_pg import Node, libpq_conninfo
from ansible_collections.pgforest.cluster.plugins.module_utils.local_server import LocalServer, LocalServerError
from ansible_collections.pgforest.cluster.plugins.module_utils.online_recovery import Workspace
from ansible_collections.pgforest.cluster.plugins.module_utils.recovery import RecoveryError


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


# --- the phases: one table (online_recovery.PHASES) that the module and the role follow -----------

def test_each_stage_names_the_phase_that_continues_it():
    from ansible_collections.pgforest.cluster.plugins.module_utils.online_recovery import (
        CANCEL_PENDING, PHASES, STARTED, next_phase)
    assert [(phase.needs, phase.name, phase.leaves) for phase in PHASES] == [
        (None, 'base', 'standby'), ('standby', 'cut', 'promoted'), ('promoted', 'cleanup', 'done')]
    assert dict((stage, next_phase(stage)) for stage in (STARTED, 'standby', 'promoted', CANCEL_PENDING)) == {
        STARTED: 'cancel', 'standby': 'cut', 'promoted': 'cleanup', CANCEL_PENDING: 'cancel'}


def test_the_module_and_the_role_offer_the_phases_of_the_table():
    import yaml
    from pgforest_dev import REPO
    from ansible_collections.pgforest.cluster.plugins.module_utils.online_recovery import PHASE_CHOICES
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
