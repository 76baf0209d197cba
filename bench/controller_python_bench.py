"""The CPU that Ansible's runs cost with two controller Pythons, in the same run on the same sandbox.

Ansible's cost is Python's: the controller (the CLI, a worker process per task and host) and each module
(its own interpreter, its imports compiled from the AnsiballZ archive every time). A Python built without
profile-guided optimization (pyenv's default build) runs the same work slower than the distribution's. For
each virtualenv this measures, alternating the two so that a change of load on the machine falls on both:

  ad hoc       `ansible forest0 -m pgforest.cluster.forest_status`: one task, the CLI's start-up
  playbook     30 tasks of ansible.builtin.ping on forest0: the cost per task
  provision    playbooks/provision.yml on the sandbox pair as it is (nothing to change): 66 tasks, 2 hosts

The modules run with the interpreter of the virtualenv measured (the inventory's ansible_playbook_python).
CPU is user + system of the run and its children (resource.getrusage), printed as each one's ratio to the
first virtualenv's.

    .venv/bin/python bench/controller_python_bench.py OTHER_VENV [--rounds 3]

OTHER_VENV: a virtualenv with requirements.txt installed from another Python, e.g.
    python3 -m venv /tmp/other && /tmp/other/bin/pip install -r requirements.txt
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile

from pgforest_dev import REPO
from pgforest_dev import sandbox

PINGS = 30


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_of(argv):
    before = children_cpu()
    done = subprocess.run(argv, env=sandbox.ansible_env(), cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit('%s failed:\n%s%s' % (' '.join(argv), done.stdout[-2000:], done.stderr[-2000:]))
    return children_cpu() - before


def cases(venv, ping_playbook):
    binary = os.path.join(venv, 'bin')
    return {
        'ad hoc': [binary + '/ansible', 'forest0', '-i', sandbox.INVENTORY, '-m', 'pgforest.cluster.forest_status',
                   '-a', 'userdb=' + sandbox.USERDB],
        'playbook': [binary + '/ansible-playbook', '-i', sandbox.INVENTORY, ping_playbook],
        'provision': [binary + '/ansible-playbook', '-i', sandbox.INVENTORY,
                      os.path.join(REPO, 'playbooks', 'provision.yml')],
    }


def python_of(venv):
    return subprocess.run([os.path.join(venv, 'bin', 'python'), '-c',
                           'import os, sys; print(os.path.realpath(sys.executable), sys.version.split()[0])'],
                          capture_output=True, text=True, check=True).stdout.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('other_venv', help='a virtualenv of another Python with requirements.txt installed')
    parser.add_argument('--rounds', type=int, default=3, help='runs of each case per virtualenv (default 3)')
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error('--rounds must be 1 or more (got %d)' % args.rounds)
    venvs = [os.path.join(REPO, '.venv'), os.path.abspath(args.other_venv)]
    for venv in venvs:
        if not os.access(os.path.join(venv, 'bin', 'ansible-playbook'), os.X_OK):
            parser.error('%s has no bin/ansible-playbook: install requirements.txt there first' % venv)
    with tempfile.NamedTemporaryFile('w', suffix='.yml', dir=sandbox.SANDBOX) as playbook:
        playbook.write('- hosts: forest0\n  gather_facts: false\n  tasks:\n'
                       + '    - ansible.builtin.ping:\n' * PINGS)
        playbook.flush()
        spent = {venv: {name: [] for name in cases(venv, playbook.name)} for venv in venvs}
        for round_number in range(args.rounds):
            for venv in venvs:
                for name, argv in cases(venv, playbook.name).items():
                    spent[venv][name].append(cpu_of(argv))
            print('round %d of %d done' % (round_number + 1, args.rounds), file=sys.stderr)
    baseline = venvs[0]
    print('%-10s %-58s %10s %8s' % ('case', 'controller Python', 'CPU s', 'ratio'))
    for name in spent[baseline]:
        base = sum(spent[baseline][name]) / args.rounds
        for venv in venvs:
            mean = sum(spent[venv][name]) / args.rounds
            print('%-10s %-58s %10.2f %8.2f' % (name, python_of(venv), mean, mean / base))


if __name__ == '__main__':
    main()
