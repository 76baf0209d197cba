"""scripts/worker_sandboxes.py: bad arguments get the usage, and a second run of the same
checkout refuses while the first holds the worker sandboxes (it would reset their servers)."""
import os
import subprocess
import sys

from pgforest_dev import REPO

SCRIPT = os.path.join(REPO, 'scripts', 'worker_sandboxes.py')


def run(*args, top):
    return subprocess.run([sys.executable, SCRIPT] + list(args), capture_output=True, text=True, check=False,
                          env=dict(os.environ, FOREST_SANDBOX_TOP=str(top)))


def test_bad_arguments_get_the_usage_and_change_nothing(tmp_path):
    for args in ([], ['up'], ['up', '0'], ['up', '-1'], ['up', 'x'], ['pytest', '0'], ['down', 'now']):
        done = run(*args, top=tmp_path)
        assert done.returncode == 2 and 'worker_sandboxes.py up N' in done.stderr, (args, done.stderr)
    assert os.listdir(tmp_path) == []


def test_a_second_run_refuses_while_the_first_holds_the_workers(tmp_path):
    """The holder keeps no reference to the lock, as run_pytest does before it execs pytest."""
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time; sys.path.insert(0, %r); '
                               'import worker_sandboxes; worker_sandboxes.hold_workers(); '
                               'print("held", flush=True); time.sleep(30)' % os.path.dirname(SCRIPT)],
                              stdout=subprocess.PIPE, text=True, env=dict(os.environ, FOREST_SANDBOX_TOP=str(tmp_path)))
    try:
        assert holder.stdout.readline().strip() == 'held'
        second = run('up', '1', top=tmp_path)
        assert second.returncode == 1 and 'another test run of this checkout' in second.stderr
        assert not [name for name in os.listdir(tmp_path) if not name.endswith('-workers.lock')]
    finally:
        holder.kill()
        holder.wait()
