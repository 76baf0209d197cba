"""Installed the way collections are installed: `ansible-galaxy collection build` gives a tarball
without what only developers need, it installs into a clean collections path, and from a directory
outside the repository a playbook uses the modules and roles and runs the collection's playbooks by
name, against the sandbox pair."""
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from pgforest_dev import sandbox

GALAXY = os.path.join(sandbox.BIN, 'ansible-galaxy')
# The top-level entries of the tarball: all that ships (galaxy.yml's build_ignore leaves out everything else).
SHIPPED = {'MANIFEST.json', 'FILES.json', 'README.md', 'bindep.txt', 'changelogs', 'docs', 'meta', 'playbooks',
           'plugins', 'roles'}
# What a checkout holds after make test besides its tracked files: tools' caches and state, a built
# tarball, the outputs of the suites, byte code.
STRAYS = ('.hypothesis/examples/0a1b/2c3d', '.pytest_cache/v/cache/lastfailed', '.ansible/collections/x/y.txt',
          '.cache/pytest-of-root/pytest-1/x', '.ruff_cache/x', '.mypy_cache/x', '.tox/x', '.venv/bin/python3',
          '.sandbox/forest0/data/PG_VERSION', 'tests/output/reliability/RELIABILITY.md',
          'molecule/default/.molecule/state.yml', 'plugins/modules/__pycache__/forest_status.cpython-311.pyc',
          'plugins/module_utils/.forest_pg.py.swp', 'roles/forest_node/.DS_Store', 'pgforest-cluster-0.0.9.tar.gz')


def strewn_copy(target):
    """The checkout's files (tracked or not; none of its big or private directories) at target, with STRAYS."""
    ignore = shutil.ignore_patterns('.git', '.venv', '.sandbox', '.cache', '.ansible', '.molecule', 'output',
                                    '__pycache__')
    shutil.copytree(sandbox.REPO, target, symlinks=True, ignore=ignore)
    for stray in STRAYS:
        path = os.path.join(target, stray)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as handle:
            handle.write('left behind by a run\n')
    return target


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """(tarball members, environment that sees only the installed collection, a directory outside the repo)."""
    top = tmp_path_factory.mktemp('galaxy')
    checkout = strewn_copy(str(top / 'checkout'))
    built = subprocess.run([GALAXY, 'collection', 'build', checkout, '--output-path', str(top)],
                           capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    tarball = [name for name in os.listdir(top) if name.endswith('.tar.gz')]
    assert tarball == ['pgforest-cluster-0.1.0.tar.gz'], tarball
    with tarfile.open(os.path.join(top, tarball[0])) as archive:
        members = archive.getnames()
    collections = top / 'collections'
    # A user's machine: a home of its own (no collection installed before), the installed collection only.
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false',
               ANSIBLE_HOME=str(top / 'ansible-home'), ANSIBLE_NOCOLOR='1',
               ANSIBLE_REMOTE_TMP='/tmp/.ansible-%s/tmp' % os.environ.get('USER', 'root'))
    for name in ('ANSIBLE_CONFIG', 'ANSIBLE_COLLECTIONS_PATHS', 'ANSIBLE_ROLES_PATH'):
        env.pop(name, None)
    done = subprocess.run([GALAXY, 'collection', 'install', os.path.join(top, tarball[0]), '-p', str(collections)],
                          capture_output=True, text=True, env=env, cwd=str(top), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'was installed successfully' in done.stdout, done.stdout  # not "Nothing to do": a stale copy found
    user = top / 'user'
    user.mkdir()
    shutil.copy(sandbox.INVENTORY, user / 'inventory.yml')
    return members, env, user


def test_the_tarball_holds_what_users_need_and_nothing_of_the_developers(installed):
    members, _env, _user = installed
    # Built from a checkout strewn with what test runs leave: only the shipped top-level entries.
    assert set(name.split('/')[0] for name in members) == SHIPPED, sorted(set(name.split('/')[0] for name in members))
    assert [name for name in members if os.path.basename(name).startswith('.')] == []
    for needed in ('MANIFEST.json', 'plugins/modules/forest_recover.py', 'plugins/module_utils/poll_interval.py',
                   'roles/forest_node/tasks/main.yml', 'playbooks/status.yml', 'playbooks/recover.yml',
                   'meta/runtime.yml', 'meta/execution-environment.yml', 'meta/ee-requirements.txt', 'bindep.txt',
                   'docs/recovery.md', 'README.md'):
        assert needed in members, needed
    left_out = ('tests/', 'bench/', 'sandbox/', 'lab/', 'dev/', 'scripts/', 'molecule/', '.venv/', 'collections/',
                '.ansible/', '.ci/')
    assert [name for name in members if name.startswith(left_out) or '__pycache__' in name] == []


def test_an_execution_environment_gets_psycopg_and_the_postgresql_client(installed):
    """What ansible-builder reads from the installed collection (meta/execution-environment.yml)."""
    _members, env, user = installed
    found = subprocess.run([os.path.join(sandbox.BIN, 'ansible-builder'), 'introspect',
                            str(user.parent / 'collections')], capture_output=True, text=True, env=env, check=False)
    assert found.returncode == 0, found.stderr
    for line in ("psycopg[binary]>=3.1,<4  # from collection pgforest.cluster",
                 "postgresql-client [platform:dpkg]  # from collection pgforest.cluster"):
        assert line in found.stdout, found.stdout


def test_a_playbook_outside_the_repository_uses_the_installed_modules_roles_and_playbooks(installed):
    _members, env, user = installed
    (user / 'site.yml').write_text('''---
- name: Use the installed collection
  hosts: forest
  gather_facts: false
  tasks:
    - name: The pair of each host
      ansible.builtin.include_role:
        name: pgforest.cluster.forest_common
        tasks_from: pair
    - name: Its status
      pgforest.cluster.forest_status:
        fail_unless_healthy: true
      register: status
      when: inventory_hostname == forest_common_pair_leader
    - name: Say it
      ansible.builtin.debug:
        msg: "installed: {{ status.cluster_state }} {{ forest_common_pair_hosts }}"
      when: inventory_hostname == forest_common_pair_leader
''')
    played = subprocess.run([os.path.join(sandbox.BIN, 'ansible-playbook'), '-i', 'inventory.yml', 'site.yml'],
                            capture_output=True, text=True, env=env, cwd=str(user), check=False)
    assert played.returncode == 0, played.stdout[-3000:] + played.stderr[-2000:]
    assert "installed: healthy ['forest0', 'forest1']" in played.stdout
    by_name = subprocess.run([os.path.join(sandbox.BIN, 'ansible-playbook'), 'pgforest.cluster.status',
                              '-i', 'inventory.yml'], capture_output=True, text=True, env=env, cwd=str(user),
                             check=False)
    assert by_name.returncode == 0, by_name.stdout[-3000:] + by_name.stderr[-2000:]
    assert 'healthy' in by_name.stdout
    # The module that ran is the installed one: the developers' checkout is nowhere on the path.
    listed = subprocess.run([os.path.join(sandbox.BIN, 'ansible-galaxy'), 'collection', 'list', '--format', 'json'],
                            capture_output=True, text=True, env=env, cwd=str(user), check=False)
    paths = json.loads(listed.stdout)
    assert [path for path, found in paths.items() if 'pgforest.cluster' in found] == [
        str(user.parent / 'collections' / 'ansible_collections')], paths
    doc = subprocess.run([os.path.join(sandbox.BIN, 'ansible-doc'), 'pgforest.cluster.forest_recover'],
                         capture_output=True, text=True, env=env, cwd=str(user), check=False)
    assert doc.returncode == 0 and 'freeze_read_duration' in doc.stdout, doc.stderr
