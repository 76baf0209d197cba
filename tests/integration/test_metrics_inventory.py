"""The monitoring inventory the forest_metrics role writes (roles/forest_metrics/templates/inventory.yml.j2),
rendered by Ansible from a controller inventory with hostile values, then read back by ansible-inventory as
the timer's ansible-playbook reads it: every value arrives as it was, the password is never templated."""
import json
import os
import subprocess

from pgforest_dev import REPO, sandbox

HOSTILE_PASSWORD = 'p"a\'s\\s: #{{ lookup("env", "HOME") }} ü\t%'
CONTROLLER_INVENTORY = {
    'forest': {'hosts': {
        'db-0.example': dict(forest_serverid=0, forest_pg_host='10.0.0.11', forest_peer_host='10.0.0.12',
                             forest_userdbs=['orders', 'bïlling'], forest_pair='pair "a"', forest_tls=True),
        'db-1.example': dict(forest_serverid=1, forest_pg_host='10.0.0.12', forest_peer_host='10.0.0.11',
                             forest_userdbs=['orders', 'bïlling'], forest_pair='pair "a"', forest_tls=True,
                             forest_pg_port=6432),
    }, 'vars': dict(forest_pg_user='postgres', forest_pg_password=HOSTILE_PASSWORD)},
}
RENDER = """
- hosts: localhost
  gather_facts: false
  connection: local
  vars:
    forest_metrics_group: forest
    forest_metrics_python: /opt/py/bin/python3
    forest_metrics_config_dir: /etc/pgforest-metrics
  tasks:
    - ansible.builtin.copy:
        content: "{{ lookup('ansible.builtin.template', templates ~ '/inventory.yml.j2') }}"
        dest: "{{ out }}"
        mode: "0600"
"""


def test_hostile_values_arrive_as_they_were(tmp_path):
    controller = tmp_path / 'controller.yml'
    # The DBA marks such a password !unsafe (or keeps it in a vault), else their own Ansible templates it.
    controller.write_text(json.dumps(CONTROLLER_INVENTORY).replace(json.dumps(HOSTILE_PASSWORD),
                                                                   '!unsafe ' + json.dumps(HOSTILE_PASSWORD)))
    render = tmp_path / 'render.yml'
    render.write_text(RENDER)
    out = tmp_path / 'monitoring.yml'
    env = sandbox.ansible_env()
    done = subprocess.run([os.path.join(REPO, '.venv', 'bin', 'ansible-playbook'), '-i', str(controller), '-i',
                           'localhost,', str(render), '-e', 'out=%s' % out,
                           '-e', 'templates=%s' % os.path.join(REPO, 'roles', 'forest_metrics', 'templates'),
                           '-e', 'ansible_python_interpreter=%s' % os.path.join(REPO, '.venv', 'bin', 'python')],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path), check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    read = subprocess.run([os.path.join(REPO, '.venv', 'bin', 'ansible-inventory'), '-i', str(out), '--list',
                           '--export'], capture_output=True, text=True, env=env, check=False)
    assert read.returncode == 0, read.stderr
    hostvars = json.loads(read.stdout)['_meta']['hostvars']
    node1 = hostvars['db-1.example']
    password = node1['forest_pg_password']
    assert password == {'__ansible_unsafe': HOSTILE_PASSWORD}, password  # how --export shows !unsafe text
    assert (node1['forest_pg_port'], node1['forest_userdbs'], node1['forest_pair']) == (
        6432, ['orders', 'bïlling'], 'pair "a"')
    assert node1['forest_pg_ssl_mode'] == 'verify-full'
    assert node1['forest_pg_ssl_rootcert'] == '/etc/pgforest-metrics/ca/db-1.example.crt'
    assert 'forest_tls' not in node1  # the modules must not look for a node's CA path on the monitoring host
    # Templated where the timer runs: the password's braces stay text.
    shown = subprocess.run([os.path.join(REPO, '.venv', 'bin', 'ansible'), 'db-0.example', '-i', str(out), '-m',
                            'ansible.builtin.debug', '-a', 'var=forest_pg_password', '-c', 'local',
                            '-e', 'ansible_python_interpreter=%s' % os.path.join(REPO, '.venv', 'bin', 'python')],
                           capture_output=True, text=True, env=env, check=False)
    assert 'lookup(\\"env\\", \\"HOME\\")' in shown.stdout, shown.stdout


EXPLICIT_LOCALHOST = """
- hosts: forest
  gather_facts: false
  tasks:
    - ansible.builtin.setup:
        gather_subset: [min]
        filter: [ansible_python]
      delegate_to: localhost
      run_once: true
      register: facts
    - ansible.builtin.copy:
        content: "{{ facts.ansible_facts.ansible_python.executable }}"
        dest: "{{ out }}"
        mode: "0644"
      delegate_to: localhost
      run_once: true
"""


def test_the_timers_read_on_localhost_runs_in_forest_metrics_python(tmp_path):
    """status.yml reads the pairs with delegate_to: localhost: with the monitoring inventory that read runs in
    forest_metrics_python (the Python the role checked for psycopg), not in ansible-playbook's own."""
    controller = tmp_path / 'controller.json'
    controller.write_text(json.dumps(CONTROLLER_INVENTORY))
    render = tmp_path / 'render.yml'
    render.write_text(RENDER)
    out = tmp_path / 'monitoring.yml'
    env = sandbox.ansible_env()
    python = os.path.join(REPO, '.venv', 'bin', 'python')
    done = subprocess.run([os.path.join(REPO, '.venv', 'bin', 'ansible-playbook'), '-i', str(controller), '-i',
                           'localhost,', str(render), '-e', 'out=%s' % out, '-e', 'forest_metrics_python=/usr/bin/python3',
                           '-e', 'templates=%s' % os.path.join(REPO, 'roles', 'forest_metrics', 'templates'),
                           '-e', 'ansible_python_interpreter=%s' % python],
                          capture_output=True, text=True, env=env, cwd=str(tmp_path), check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    play = tmp_path / 'read.yml'
    play.write_text(EXPLICIT_LOCALHOST)
    seen = tmp_path / 'python.txt'
    done = subprocess.run([os.path.join(REPO, '.venv', 'bin', 'ansible-playbook'), '-i', str(out), str(play),
                           '-e', 'out=%s' % seen], capture_output=True, text=True, env=env, cwd=str(tmp_path),
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    # ansible-playbook runs in the venv's Python: an implicit localhost would have answered that one.
    assert seen.read_text() == '/usr/bin/python3'
