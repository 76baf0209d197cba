"""The forest_metrics role's exporter mode without a systemd to run it (the lab runs it:
tests/lab/test_exporter.py): the unit it renders is hardened (systemd-analyze security, offline) and runs
the exporter with the arguments it takes; the role in check mode, on this machine, finds what it needs, names
what is missing, and writes nothing, in both modes."""
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import urllib.request

import pytest

from pgforest_dev import REPO, sandbox
from pgforest_dev.wait import wait_for

ROLE = os.path.join(REPO, 'roles', 'forest_metrics')
PYTHON = os.path.join(REPO, '.venv', 'bin', 'python')
EXPORTER = 'ansible_collections.pgforest.cluster.plugins.module_utils.exporter'
RENDER = """
- hosts: localhost
  gather_facts: false
  connection: local
  vars_files:
    - "{{ role }}/defaults/main.yml"
    - "{{ role }}/vars/main.yml"
  tasks:
    - ansible.builtin.copy:
        content: "{{ lookup('ansible.builtin.template', role ~ '/templates/pgforest-exporter.service.j2') }}"
        dest: "{{ out }}"
        mode: "0644"
"""
PLAY = """
- hosts: forest_monitoring
  gather_facts: false
  roles:
    - role: pgforest.cluster.forest_metrics
"""
INVENTORY = dict(
    forest=dict(vars=dict(forest_pg_password='not-a-secret', forest_userdb='userdb'), hosts=dict(
        db0=dict(forest_serverid=0, forest_pg_host='10.0.0.11', forest_peer_host='10.0.0.12'),
        db1=dict(forest_serverid=1, forest_pg_host='10.0.0.12', forest_peer_host='10.0.0.11'))),
    forest_monitoring=dict(hosts=dict(monitor=dict(ansible_connection='local', ansible_python_interpreter=PYTHON))))


def ansible_playbook(tmp_path, play, *args, **extra_vars):
    path = tmp_path / 'play.yml'
    path.write_text(play)
    varfile = tmp_path / 'vars.json'
    varfile.write_text(json.dumps(extra_vars))
    return subprocess.run([os.path.join(REPO, '.venv', 'bin', 'ansible-playbook'), str(path), '-e', '@%s' % varfile]
                          + list(args), capture_output=True, text=True, env=sandbox.ansible_env(), cwd=REPO,
                          check=False)


def render(tmp_path, **extra_vars):
    out = tmp_path / 'pgforest-exporter.service'
    done = ansible_playbook(tmp_path, RENDER, '-i', 'localhost,', role=ROLE, out=str(out),
                            ansible_python_interpreter=PYTHON, **extra_vars)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    return out


def directives(unit):
    """{key: [values]} of the unit's [Service] section."""
    found, section = {}, None
    for line in unit.read_text().splitlines():
        if line.startswith('['):
            section = line
        elif section == '[Service]' and '=' in line and not line.startswith('#'):
            key, value = line.split('=', 1)
            found.setdefault(key, []).append(value)
    return found


def test_the_unit_is_hardened_and_runs_the_exporter_with_its_arguments(tmp_path):
    unit = render(tmp_path, forest_metrics_connect_timeout=3, forest_metrics_listen_port=9800)
    service = directives(unit)
    argv = shlex.split(service['ExecStart'][0])
    assert argv == ['/usr/bin/python3', '-m', EXPORTER, '--inventory', '/etc/pgforest-metrics/inventory.yml',
                    '--listen', '127.0.0.1:9800', '--connect-timeout', '3']
    assert 'PYTHONPATH=/usr/share/ansible/collections' in service['Environment']
    assert (service['User'], service['Group']) == (['pgforest-exporter'], ['pgforest-exporter'])
    assert (service['CapabilityBoundingSet'], service['NoNewPrivileges']) == ([''], ['yes'])
    assert (service['ProtectSystem'], service['ProtectHome'], service['PrivateTmp']) == (['strict'], ['yes'], ['yes'])
    assert service['Restart'] == ['on-failure'] and service['RestartPreventExitStatus'] == ['2']
    assert 'password' not in unit.read_text().lower()
    # Debian's systemd package has it (the lab's machines score the installed unit too: tests/lab/test_exporter.py).
    assert shutil.which('systemd-analyze'), 'systemd-analyze (Debian package systemd) is needed to score the unit'
    scored = subprocess.run(['systemd-analyze', 'security', '--offline=true', '--no-pager', str(unit)],
                            capture_output=True, text=True, check=False)
    assert 'Overall exposure level' in scored.stdout, scored.stdout + scored.stderr
    score = float(scored.stdout.split('Overall exposure level for pgforest-exporter.service:')[1].split()[0])
    assert score <= 2.0, scored.stdout  # 1.3 ("OK") when written; 9.5 with only User= set


def test_a_collection_under_a_home_is_bound_in_read_only_and_an_ipv6_listener_bracketed(tmp_path):
    service = directives(render(tmp_path, forest_metrics_collections_path='/root/.ansible/collections',
                                forest_metrics_listen_address='::'))
    assert service['ProtectHome'] == ['tmpfs']
    assert service['BindReadOnlyPaths'] == ['/root/.ansible/collections']
    assert '--listen [::]:9716' in service['ExecStart'][0]


def test_the_exporter_refuses_a_missing_inventory_in_one_line():
    """The interface the unit relies on (exit 2 and one line on bad configuration, so the unit does not
    restart it in a loop), once the exporter is in the collection."""
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, 'collections'))
    done = subprocess.run([PYTHON, '-m', EXPORTER, '--inventory', '/nonexistent/inventory.yml', '--listen',
                           '127.0.0.1:0', '--connect-timeout', '1'], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr


@pytest.fixture
def standin(tmp_path):
    """A collections path whose exporter is a stand-in (the role only looks for it), and the controller's own
    Python, which has psycopg and prometheus_client."""
    # Not beside the play (a collections/ there would be searched for the role first).
    module_utils = tmp_path / 'standin' / 'ansible_collections' / 'pgforest' / 'cluster' / 'plugins' / 'module_utils'
    module_utils.mkdir(parents=True)
    (module_utils / 'exporter.py').write_text('raise SystemExit("a stand-in, never run")\n')
    inventory = tmp_path / 'inventory.json'
    inventory.write_text(json.dumps(INVENTORY))
    return dict(inventory=str(inventory), vars=dict(
        forest_metrics_python=PYTHON, forest_metrics_collections_path=str(tmp_path / 'standin'),
        forest_metrics_config_dir=str(tmp_path / 'etc'), forest_metrics_file=str(tmp_path / 'textfile' / 'x.prom'),
        forest_metrics_ansible_playbook=os.path.join(REPO, '.venv', 'bin', 'ansible-playbook')))


def test_check_mode_installs_nothing_in_either_mode(tmp_path, standin):
    exporter = ansible_playbook(tmp_path, PLAY, '-i', standin['inventory'], '--check', **standin['vars'])
    assert exporter.returncode == 0, exporter.stdout[-3000:]
    for task in ("Make the exporter's system user", 'Write the monitoring inventory', "Write the exporter's unit"):
        assert 'TASK [pgforest.cluster.forest_metrics : %s' % task in exporter.stdout
    assert 'changed=0' not in exporter.stdout
    textfile = ansible_playbook(tmp_path, PLAY, '-i', standin['inventory'], '--check', forest_metrics_mode='textfile',
                                **dict(standin['vars'], forest_metrics_collections_path=os.path.join(REPO, 'collections')))
    assert textfile.returncode == 0, textfile.stdout[-3000:]
    assert 'Write the service and the timer' in textfile.stdout
    assert not os.path.exists(standin['vars']['forest_metrics_config_dir'])
    assert not os.path.exists(os.path.dirname(standin['vars']['forest_metrics_file']))


@pytest.mark.parametrize('module, hint', [
    ('prometheus_client', 'python3-prometheus-client'), ('ansible', 'ansible-core 2.19')])
def test_a_monitoring_host_without_a_module_the_exporter_imports_is_refused_by_name(tmp_path, standin, module, hint):
    # A Python that cannot import the module: the controller's, with a module of that name that refuses first
    # on its path (ansible-core: the exporter reads the inventory with it).
    shadow = tmp_path / 'shadow'
    shadow.mkdir()
    (shadow / ('%s.py' % module)).write_text('raise ImportError("stand-in: not installed")\n')
    python = tmp_path / 'python'
    python.write_text('#!/bin/sh\nPYTHONPATH=%s exec %s "$@"\n' % (shadow, PYTHON))
    python.chmod(0o755)
    done = ansible_playbook(tmp_path, PLAY, '-i', standin['inventory'],
                            **dict(standin['vars'], forest_metrics_python=str(python)))
    assert done.returncode != 0
    assert 'cannot run the exporter: %s cannot import %s (install %s' % (python, module, hint) \
        in done.stdout.replace('\n', ' '), done.stdout[-3000:]
    assert 'Nothing was changed' in done.stdout
    assert not os.path.exists(standin['vars']['forest_metrics_config_dir'])
    # Refused before the other mode's removal: a refused switch leaves the timer's metrics as they were.
    assert 'Look for the timer' not in done.stdout, done.stdout[-3000:]


def test_a_refused_switch_to_the_timer_leaves_the_exporter(tmp_path, standin):
    done = ansible_playbook(tmp_path, PLAY, '-i', standin['inventory'], '--check', forest_metrics_mode='textfile',
                            **dict(standin['vars'], forest_metrics_ansible_playbook='/nonexistent/ansible-playbook'))
    assert done.returncode != 0
    assert 'cannot run the metrics timer: /nonexistent/ansible-playbook is not an executable' \
        in done.stdout.replace('\n', ' '), done.stdout[-3000:]
    assert "Look for the exporter's unit" not in done.stdout, done.stdout[-3000:]


def test_an_existing_user_the_role_did_not_make_is_refused_and_left_alone(tmp_path, standin):
    before = subprocess.run(['getent', 'passwd', 'nobody'], capture_output=True, text=True, check=True).stdout
    for check in (['--check'], []):  # check mode first: code that took the user over would only say so there
        done = ansible_playbook(tmp_path, PLAY, '-i', standin['inventory'], *check,
                                **dict(standin['vars'], forest_metrics_exporter_user='nobody'))
        assert done.returncode != 0, done.stdout[-3000:]
        assert 'user nobody exists on monitor and was not made by this role: pick another ' \
            'forest_metrics_exporter_user' in done.stdout.replace('\n', ' '), done.stdout[-3000:]
        assert 'Nothing was changed' in done.stdout
        assert "Make the exporter's system user" not in done.stdout
        assert "Look for the timer" not in done.stdout
    assert subprocess.run(['getent', 'passwd', 'nobody'], capture_output=True, text=True, check=True).stdout == before
    assert not os.path.exists(standin['vars']['forest_metrics_config_dir'])


def test_switching_to_the_timer_hands_the_configuration_over_before_the_exporters_user_goes(tmp_path, standin):
    # The exporter's configuration, owned by its user (nobody here): check mode shows it handed to root first.
    config = standin['vars']['forest_metrics_config_dir']
    os.makedirs(config, mode=0o700)
    with open(os.path.join(config, 'inventory.yml'), 'w') as handle:
        handle.write('{}\n')
    for path in (config, os.path.join(config, 'inventory.yml')):
        os.chown(path, 65534, 65534)
    done = ansible_playbook(tmp_path, PLAY, '-i', standin['inventory'], '--check', forest_metrics_mode='textfile',
                            **dict(standin['vars'], forest_metrics_collections_path=os.path.join(REPO, 'collections')))
    assert done.returncode == 0, done.stdout[-3000:]
    handed = done.stdout.index("TASK [pgforest.cluster.forest_metrics : Hand it to the timer's user")
    removed = done.stdout.index("TASK [pgforest.cluster.forest_metrics : Remove the exporter's user and group")
    assert handed < removed
    for path in (config, os.path.join(config, 'inventory.yml')):
        assert 'changed: [monitor] => (item=%s)' % path in done.stdout[handed:removed], done.stdout[handed:removed]
        assert os.stat(path).st_uid == 65534  # check mode


# Each mount read-only, a fresh /tmp, no capabilities, no new privileges, an unwritable home: what the unit's
# ProtectSystem=strict, PrivateTmp, CapabilityBoundingSet=, NoNewPrivileges and its user without a home give.
# A checkout under /tmp (a CI clone) is taken into the fresh /tmp at its own path: the unit itself wants the
# collection and its Python outside /tmp (docs/monitoring.md), as a DBA's monitoring host has them.
CONFINE = """
set -e
mount -n --bind "$CHECKOUT" /mnt
awk '{print $5}' /proc/self/mountinfo | sort -u | while read -r point; do
    mount -o remount,bind,ro "$point" 2>/dev/null || true
done
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p "$CHECKOUT"
mount -n --move /mnt "$CHECKOUT"
exec setpriv --no-new-privs --inh-caps=-all --bounding-set=-all env -i HOME=/nonexistent PATH=/usr/bin:/bin "$@"
"""


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def test_the_exporter_serves_the_sandbox_pair_as_the_unit_confines_it(tmp_path):
    """The unit's own environment and command line, in a mount namespace as read-only as ProtectSystem=strict
    makes it (systemd itself is not here): the exporter starts and serves the sandbox's healthy pair. Without the
    unit's ANSIBLE_HOME it could not (Ansible's inventory code makes a temporary directory in the home)."""
    # The suites run as root (the sandbox's servers run as postgres); util-linux has both tools.
    assert os.geteuid() == 0 and shutil.which('unshare') and shutil.which('setpriv'), \
        'confining the exporter as the unit does needs root, unshare and setpriv (util-linux)'
    config = tmp_path / 'etc'
    config.mkdir(mode=0o700)
    play = tmp_path / 'render.yml'
    play.write_text(RENDER_INVENTORY)
    done = subprocess.run([os.path.join(REPO, '.venv', 'bin', 'ansible-playbook'), '-i', sandbox.INVENTORY, str(play),
                           '-e', 'templates=%s' % os.path.join(ROLE, 'templates'), '-e', 'out=%s' % config,
                           '-e', 'ansible_python_interpreter=%s' % PYTHON],
                          capture_output=True, text=True, env=sandbox.ansible_env(), cwd=REPO, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    port = free_port()
    service = directives(render(tmp_path, forest_metrics_python=PYTHON, forest_metrics_config_dir=str(config),
                                forest_metrics_collections_path=os.path.join(REPO, 'collections'),
                                forest_metrics_listen_port=port))
    command = service['Environment'] + shlex.split(service['ExecStart'][0])
    exporter = subprocess.Popen(['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c', CONFINE, 'sh']
                                + command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd='/',
                                start_new_session=True, env=dict(os.environ, CHECKOUT=os.path.realpath(REPO)))
    try:
        def healthy():
            if exporter.poll() is not None:
                raise AssertionError('the exporter ended (%s): %s' % (exporter.returncode, exporter.stdout.read()))
            try:
                with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=30) as answer:
                    text = answer.read().decode()
            except OSError:
                return None
            return 'pgforest_database_healthy{pair="forest",userdb="userdb"} 1' in text and text
        text = wait_for('the confined exporter to serve the healthy pair', healthy)
        assert 'pgforest_exporter_scrape_errors_total 0' in text
    finally:
        os.killpg(exporter.pid, signal.SIGTERM)
        exporter.wait(timeout=30)


RENDER_INVENTORY = """
- hosts: localhost
  gather_facts: false
  connection: local
  vars:
    forest_metrics_group: forest
    forest_metrics_python: /usr/bin/python3
    forest_metrics_config_dir: "{{ out }}"
  tasks:
    - ansible.builtin.copy:
        content: "{{ lookup('ansible.builtin.template', templates ~ '/inventory.yml.j2') }}"
        dest: "{{ out }}/inventory.yml"
        mode: "0600"
"""
