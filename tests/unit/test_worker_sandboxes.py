"""scripts/worker_sandboxes.py: bad arguments get the usage, and a second run of the same
checkout refuses while the first holds the worker sandboxes (it would reset their servers)."""
import os
import subprocess
import sys

from pgforest_dev import REPO

SCRIPT = os.path.join(REPO, 'scripts', 'worker_sandboxes.py')


def run(*args, top):
    return subprocess.run([sys.executable, SCRIPT] + list(args), capture_output=True, text=True, check=False,
                          env=default_set(top))


def default_set(top):
    """The environment of a run of the default worker set under `top`, whatever set this shell names."""
    return dict(os.environ, FOREST_SANDBOX_TOP=str(top), FOREST_WORKER_SET='')


def hold(top):
    """A process holding the default set's workers, as run_pytest does before it execs pytest (it keeps no
    reference to the lock); its stdout says "held" once it does."""
    return subprocess.Popen([sys.executable, '-c', 'import sys, time; sys.path.insert(0, %r); '
                             'import worker_sandboxes; worker_sandboxes.hold_workers(); '
                             'print("held", flush=True); time.sleep(30)' % os.path.dirname(SCRIPT)],
                            stdout=subprocess.PIPE, text=True, env=default_set(top))


def test_bad_arguments_get_the_usage_and_change_nothing(tmp_path):
    for args in ([], ['up'], ['up', '0'], ['up', '-1'], ['up', 'x'], ['pytest', '0'], ['down', 'now']):
        done = run(*args, top=tmp_path)
        assert done.returncode == 2 and 'worker_sandboxes.py up N' in done.stderr, (args, done.stderr)
    assert os.listdir(tmp_path) == []


def test_a_second_run_refuses_while_the_first_holds_the_workers(tmp_path):
    """The holder keeps no reference to the lock, as run_pytest does before it execs pytest."""
    holder = hold(tmp_path)
    try:
        assert holder.stdout.readline().strip() == 'held'
        second = run('up', '1', top=tmp_path)
        assert second.returncode == 1 and 'another test run of this checkout' in second.stderr
        assert not [name for name in os.listdir(tmp_path) if not name.endswith('-workers.lock')]
    finally:
        holder.kill()
        holder.wait()


def test_a_second_set_of_the_same_checkout_has_keys_of_its_own(tmp_path):
    """make test runs the timing cases on FOREST_WORKER_SET=timing while the sandbox suites hold the default
    set: the second set must not wait for the first's lock, nor share its namespaces or directories."""
    code = ('import sys; sys.path.insert(0, %r); import worker_sandboxes as w; '
            'print(w.namespace(0), w.sandbox_dir(0), w.SET_KEY)' % os.path.dirname(SCRIPT))
    seen = {}
    for worker_set in ('', 'timing'):
        done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True,
                              env=dict(os.environ, FOREST_SANDBOX_TOP=str(tmp_path), FOREST_WORKER_SET=worker_set))
        seen[worker_set] = done.stdout.split()
    assert all(a != b for a, b in zip(seen[''], seen['timing'])), seen
    holder = hold(tmp_path)
    try:
        assert holder.stdout.readline().strip() == 'held'
        other = subprocess.run([sys.executable, '-c', 'import sys; sys.path.insert(0, %r); import worker_sandboxes; '
                                'worker_sandboxes.hold_workers(); print("held too")' % os.path.dirname(SCRIPT)],
                               capture_output=True, text=True, check=False,
                               env=dict(os.environ, FOREST_SANDBOX_TOP=str(tmp_path), FOREST_WORKER_SET='timing'))
        assert other.returncode == 0 and 'held too' in other.stdout, other.stderr
    finally:
        holder.kill()
        holder.wait()


def test_a_bad_set_name_is_refused_before_anything_changes(tmp_path):
    for worker_set in ('Timing', 'a/b', 'x' * 17, '../up'):
        done = subprocess.run([sys.executable, SCRIPT, 'up', '1'], capture_output=True, text=True, check=False,
                              env=dict(os.environ, FOREST_SANDBOX_TOP=str(tmp_path), FOREST_WORKER_SET=worker_set))
        assert done.returncode == 2 and 'FOREST_WORKER_SET' in done.stderr, (worker_set, done.stderr)
    assert os.listdir(tmp_path) == []


def test_a_copied_sandbox_names_its_own_directory_and_keeps_data_and_modes(tmp_path):
    """worker_sandboxes.copy_sandbox: the first worker's path becomes the copy's in every text file (settings,
    postmaster.opts, pgforest-psql), a data file (with NUL bytes) is copied as it is, the servers' runtime
    files and logs and the first worker's own record are left out, and what the copy held before is gone."""
    sys.path.insert(0, os.path.dirname(SCRIPT))
    import worker_sandboxes  # pylint: disable=import-outside-toplevel
    source, target = tmp_path / 'key-w0', tmp_path / 'key-w1'
    data = source / 'forest0' / 'data'
    data.mkdir(parents=True)
    (source / 'checkout').write_text('/the/checkout\n')
    (source / 'provision.log').write_text('PLAY RECAP\n')
    (data / 'forest.conf').write_text("unix_socket_directories = '%s/forest0/run'\n" % source)
    (data / 'postmaster.opts').write_text('/usr/lib/postgresql/15/bin/postgres "-D" "%s/forest0/data"\n' % source)
    (data / 'postmaster.pid').write_text('123\n%s/forest0/data\n' % source)
    (source / 'forest0' / 'postgresql.log').write_text('LOG:  database system is ready\n')
    helper = source / 'forest0' / 'pgforest-psql'
    helper.write_text('#!/bin/sh\nexec psql -h %s/forest0/run "$@"\n' % source)
    helper.chmod(0o750)
    heap = b'row\0%s\0' % str(source).encode()
    (data / '16384').write_bytes(heap)
    target.mkdir()
    (target / 'checkout').write_text('/the/checkout\n')
    (target / 'forest9').mkdir()

    rewritten = worker_sandboxes.copy_sandbox(str(source), str(target))

    assert sorted(rewritten) == ['forest0/data/forest.conf', 'forest0/data/postmaster.opts', 'forest0/pgforest-psql']
    assert (target / 'forest0' / 'data' / 'forest.conf').read_text() == \
        "unix_socket_directories = '%s/forest0/run'\n" % target
    assert str(target) + '/forest0/data' in (target / 'forest0' / 'data' / 'postmaster.opts').read_text()
    assert (target / 'forest0' / 'pgforest-psql').stat().st_mode & 0o777 == 0o750
    assert (target / 'forest0' / 'data' / '16384').read_bytes() == heap
    assert sorted(os.listdir(target)) == ['checkout', 'forest0']
    assert sorted(os.listdir(target / 'forest0')) == ['data', 'pgforest-psql']
    assert not (target / 'forest0' / 'data' / 'postmaster.pid').exists()
