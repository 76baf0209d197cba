"""The CPU of a provision that changes nothing: this checkout's roles against another commit's, in the same run
on the same sandbox.

A provision of a healthy pair is what every DBA's re-run, every CI job and most of make test's cases pay: each
task costs a worker process on the controller and, for most, a module run on the node (its own interpreter,
its imports compiled from the AnsiballZ archive every time). For each tree this runs playbooks/provision.yml on
the sandbox pair as it is, alternating the two trees so that a change of load on the machine falls on both, and
prints the CPU (user + system of the run and its children) and the tasks run per host, with each one's ratio to
the baseline's.

    .venv/bin/python bench/provision_bench.py [--baseline REF] [--rounds 3]

REF (default HEAD): the commit whose roles and modules are the baseline, checked out in a temporary worktree
and run with this checkout's venv. Needs the sandbox up (make sandbox) and a work tree whose change is in the
roles or modules.
"""
import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile

from pgforest_dev import REPO
from pgforest_dev import sandbox


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def provision(tree):
    """CPU seconds and tasks run on forest0 of one provision from `tree` (its playbooks, roles and modules)."""
    env = sandbox.ansible_env()
    env['ANSIBLE_CONFIG'] = os.path.join(tree, 'ansible.cfg')
    before = children_cpu()
    done = subprocess.run([os.path.join(sandbox.BIN, 'ansible-playbook'), '-i', sandbox.INVENTORY,
                           os.path.join(tree, 'playbooks', 'provision.yml')],
                          env=env, cwd=tree, capture_output=True, text=True, check=False)
    spent = children_cpu() - before
    if done.returncode != 0:
        sys.exit('provision.yml from %s failed:\n%s%s' % (tree, done.stdout[-2000:], done.stderr[-2000:]))
    recap = sandbox.recap(done.stdout)
    if any(counts['changed'] for counts in recap.values()):
        sys.exit('provision.yml from %s changed something: the bench measures a provision that changes nothing; '
                 'run make sandbox first' % tree)
    ran = re.search(r'forest0\s*:\s*ok=(\d+)', done.stdout)
    return spent, int(ran.group(1)) if ran else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--baseline', default='HEAD', help='the commit to compare with (default HEAD)')
    parser.add_argument('--rounds', type=int, default=3, help='provisions from each tree (default 3)')
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error('--rounds must be 1 or more (got %d)' % args.rounds)
    resolved = subprocess.run(['git', 'rev-parse', '--verify', '--quiet', args.baseline + '^{commit}'], cwd=REPO,
                              capture_output=True, text=True, check=False)
    if resolved.returncode != 0:
        parser.error('%s is not a commit of this repository' % args.baseline)
    baseline = tempfile.mkdtemp(prefix='pgforest-provision-bench.')
    try:
        subprocess.run(['git', 'worktree', 'add', '--detach', '--quiet', baseline, resolved.stdout.strip()],
                       cwd=REPO, check=True)
        trees = [('baseline ' + args.baseline, baseline), ('this tree', REPO)]
        spent = {name: [] for name, _tree in trees}
        tasks = {}
        for round_number in range(args.rounds):
            for name, tree in trees:
                cpu, ran = provision(tree)
                spent[name].append(cpu)
                tasks[name] = ran
            print('round %d of %d done' % (round_number + 1, args.rounds), file=sys.stderr)
    finally:
        subprocess.run(['git', 'worktree', 'remove', '--force', baseline], cwd=REPO, capture_output=True,
                       check=False)
        shutil.rmtree(baseline, ignore_errors=True)
    base = sum(spent[trees[0][0]]) / args.rounds
    print('%-22s %10s %8s %16s' % ('roles', 'CPU s', 'ratio', 'tasks (forest0)'))
    for name, _tree in trees:
        mean = sum(spent[name]) / args.rounds
        print('%-22s %10.2f %8.2f %16d' % (name, mean, mean / base, tasks[name]))


if __name__ == '__main__':
    main()
