"""Sandboxes for parallel test workers: one two-node sandbox per pytest-xdist worker, each in a
network namespace of its own, so every worker's nodes are 127.0.0.11 and 127.0.0.12 and
nothing collides.

    worker_sandboxes.py up N      create N namespaces, provision a sandbox in the first and copy it to the others
    worker_sandboxes.py pytest N ARGS...   run pytest ARGS with one worker in each (pytest-xdist)
    worker_sandboxes.py down      stop every worker sandbox of this checkout's set, remove the namespaces

A worker's sandbox lives in /var/lib/pgforest-sandbox/<set key>-w<i> (the postgres OS user
can reach it wherever the checkout is) and is named to the tests and the inventory by the
environment variable FOREST_SANDBOX_DIR.  The set key is a hash of the checkout's path and of
FOREST_WORKER_SET (empty by default): make test runs the timing cases under load on a second set
(FOREST_WORKER_SET=timing) while the sandbox suites still run on the first.

`nsenter --net`, not `ip netns exec`: the latter
remounts /sys in a mount namespace of its own, which the servers do not need and systemd tools mind.
"""
import fcntl
import glob
import hashlib
import os
import re
import secrets
import shlex
import string
import subprocess
import sys
import time

# pgforest_dev makes the collection importable.
import pgforest_dev  # noqa: F401  pylint: disable=unused-import
from ansible_collections.pgforest.cluster.plugins.filter.scram import scram_sha256_verifier
from ansible_collections.pgforest.cluster.plugins.module_utils import pg_platform

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP = os.environ.get('FOREST_SANDBOX_TOP') or '/var/lib/pgforest-sandbox'  # another top: the unit test
WORKER_SET = os.environ.get('FOREST_WORKER_SET', '')
# The default set keeps the key it always had, so a checkout's running workers stay reachable.
SET_KEY = hashlib.sha256((os.path.realpath(REPO) + '\n' + (WORKER_SET + '\n' if WORKER_SET else ''))
                         .encode()).hexdigest()[:12]
BIN = os.path.join(REPO, '.venv', 'bin')


HELD = []  # the lock's open file: closing it (even by dropping the last reference) would release it


def hold_workers():
    """Take this checkout's worker sandboxes for this process (and what it execs) or exit: two runs
    at once would provision and reset each other's servers.  Held until the process ends."""
    os.makedirs(TOP, exist_ok=True)
    handle = open(os.path.join(TOP, SET_KEY + '-workers.lock'), 'w')
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit('worker_sandboxes: another test run of this checkout is using its worker sandboxes%s; '
                 'wait for it to end (nothing was changed)'
                 % (' (set %s)' % WORKER_SET if WORKER_SET else ''))
    os.set_inheritable(handle.fileno(), True)  # held by pytest after execv, until it exits
    HELD.append(handle)


def namespace(worker):
    return 'pgf-%s-w%d' % (SET_KEY[:8], worker)


def sandbox_dir(worker):
    return os.path.join(TOP, '%s-w%d' % (SET_KEY, worker))


def in_namespace(worker, argv):
    """argv run inside the worker's namespace, with its sandbox named in the environment."""
    return ['nsenter', '--net=/run/netns/' + namespace(worker),
            'env', 'FOREST_SANDBOX_DIR=' + sandbox_dir(worker)] + argv


def make_namespace(worker):
    if not os.path.exists('/run/netns/' + namespace(worker)):
        subprocess.run(['ip', 'netns', 'add', namespace(worker)], check=True)
    # 127.0.0.11 and 127.0.0.12 answer on any loopback that is up.
    subprocess.run(['ip', '-n', namespace(worker), 'link', 'set', 'lo', 'up'], check=True)
    directory = sandbox_dir(worker)
    os.makedirs(directory, exist_ok=True)
    os.chmod(TOP, 0o755)
    os.chmod(directory, 0o755)
    with open(os.path.join(directory, 'checkout'), 'w') as handle:
        handle.write(os.path.realpath(REPO) + '\n')


def provision(worker):
    """Provision the worker's sandbox; (worker, seconds, None) or (worker, seconds, log tail)."""
    started = time.monotonic()
    log = os.path.join(sandbox_dir(worker), 'provision.log')
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    with open(log, 'w') as handle:
        proc = subprocess.run(in_namespace(worker, [
            os.path.join(BIN, 'ansible-playbook'), '-i', os.path.join(REPO, 'sandbox', 'inventory.yml'),
            os.path.join(REPO, 'playbooks', 'provision.yml')]),
            stdout=handle, stderr=subprocess.STDOUT, cwd=REPO, env=env, check=False)
    seconds = time.monotonic() - started
    if proc.returncode == 0:
        return worker, seconds, None
    with open(log) as handle:
        return worker, seconds, handle.read()[-3000:]


# What a copy leaves out of the provisioned sandbox: the worker's own record and provision log, the servers'
# runtime files and logs (the copy is made with them stopped; a socket, pid file or the first's log would
# only mislead).
NOT_COPIED = ('checkout', 'provision.log')
RUNTIME_FILES = ('postmaster.pid', '.s.PGSQL.5432', '.s.PGSQL.5432.lock', 'postgresql.log')


def node_dirs(directory):
    """The sandbox's node directories (node0, node1): those with a data directory."""
    return sorted(os.path.join(directory, name) for name in os.listdir(directory)
                  if os.path.isfile(os.path.join(directory, name, 'data', 'PG_VERSION')))


def pg_bindir(node):
    with open(os.path.join(node, 'data', 'PG_VERSION')) as handle:
        return pg_platform.bindir(handle.read().strip())


def pg_ctl(worker, node, *args):
    """pg_ctl on a node of the worker's sandbox, in its namespace (a started server binds there)."""
    argv = ['runuser', '-u', 'postgres', '--', os.path.join(pg_bindir(node), 'pg_ctl'),
            '--pgdata=' + os.path.join(node, 'data')] + list(args)
    return subprocess.run(in_namespace(worker, argv), capture_output=True, text=True, check=False)


def copy_sandbox(source, target):
    """Copy a provisioned sandbox whose servers are stopped, rewriting its directory's name in every text
    file that holds it (configuration, postmaster.opts, pgforest-psql); returns the text files rewritten.
    A file with NUL bytes is data, never rewritten: the sandbox's path is in no table at provision time."""
    old, new = source.encode(), target.encode()
    rewritten = []
    for name in os.listdir(target):
        if name not in NOT_COPIED:
            path = os.path.join(target, name)
            subprocess.run(['rm', '-rf', path], check=True)
    for name in sorted(os.listdir(source)):
        if name not in NOT_COPIED:
            subprocess.run(['cp', '-a', os.path.join(source, name), target], check=True)
    for path, _dirs, files in os.walk(target):
        for name in files:
            full = os.path.join(path, name)
            if name in RUNTIME_FILES:
                os.unlink(full)
                continue
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            with open(full, 'rb') as handle:
                content = handle.read()
            if old in content and b'\0' not in content:
                stat = os.stat(full)
                with open(full, 'wb') as handle:
                    handle.write(content.replace(old, new))
                os.chown(full, stat.st_uid, stat.st_gid)
                os.chmod(full, stat.st_mode)
                rewritten.append(os.path.relpath(full, target))
    return rewritten


PASSWORD_FILE = os.path.join('secrets', 'postgres.password')  # the inventory's forest_pg_password lookup


def own_password(worker):
    """Give a copied sandbox a password of its own, on both servers (running) and in its password file.
    Copies would otherwise share worker 0's, and /tmp and the process list are the machine's: the security
    case, which looks for its sandbox's password in both, would find another worker's module file or
    command line holding it.  Returns None, or why it failed."""
    target = sandbox_dir(worker)
    password = ''.join(secrets.choice(string.ascii_letters + string.digits) for _position in range(24))
    # The verifier, not the password: ALTER ROLE never carries it into a statement, a log or a process list.
    statement = "ALTER ROLE postgres PASSWORD '%s'" % scram_sha256_verifier(password)
    for node in node_dirs(target):
        # The node's own psql helper: its socket directory, its binaries, peer authentication.
        argv = [os.path.join(node, 'pgforest-psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', 'postgres']
        done = subprocess.run(in_namespace(worker, argv), input=statement, capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            return 'setting its own password on %s: %s' % (node, done.stderr.strip())
    path = os.path.join(target, PASSWORD_FILE)
    written = path + '.new'
    fd = os.open(written, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as handle:
        handle.write(password + '\n')
    os.replace(written, path)
    return None


def clone(count):
    """Workers 1..count-1 as copies of worker 0's provisioned sandbox: one provision.yml instead of count (each
    costs about 30 CPU-s when it changes nothing, more on a first run).  Worker 0's servers stop for the copy
    and start again; every copy's servers start in their own namespace and get a password of their own.  Returns the
    workers that failed, with why."""
    failed = []
    source = sandbox_dir(0)
    nodes = node_dirs(source)
    for node in nodes:
        stopped = pg_ctl(0, node, 'stop', '--mode=fast', '--wait')
        if stopped.returncode != 0:
            return [(worker, 'stopping %s for the copy: %s' % (node, stopped.stderr.strip()))
                    for worker in range(1, count)]
    try:
        for worker in range(1, count):
            target = sandbox_dir(worker)
            for node in node_dirs(target):  # a run that did not end with `down` left them running
                pg_ctl(worker, node, 'stop', '--mode=fast', '--wait')
            copy_sandbox(source, target)
            problems = []
            for node in node_dirs(target):
                started = pg_ctl(worker, node, 'start', '--wait', '--log=' + os.path.join(node, 'postgresql.log'))
                if started.returncode != 0:
                    problems.append('starting %s: %s' % (node, started.stderr.strip()))
            if not problems:  # both servers run: the password is changed on both
                problems = [why for why in [own_password(worker)] if why]
            failed += [(worker, why) for why in problems]
    finally:
        for node in nodes:
            started = pg_ctl(0, node, 'start', '--wait', '--log=' + os.path.join(node, 'postgresql.log'))
            if started.returncode != 0:
                failed.append((0, 'starting %s again after the copy: %s' % (node, started.stderr.strip())))
    return failed


def up(count):
    hold_workers()
    for worker in range(count):
        make_namespace(worker)
    worker, seconds, tail = provision(0)
    print('worker sandbox 0 (%s, %s): %s in %.0f s' % (
        namespace(0), sandbox_dir(0), 'failed' if tail else 'provisioned', seconds))
    if tail is not None:
        print('--- provision of worker sandbox 0, last lines:\n%s' % tail, file=sys.stderr)
        return 1
    started = time.monotonic()
    failed = clone(count)
    for worker in range(1, count):
        print('worker sandbox %d (%s, %s): %s' % (worker, namespace(worker), sandbox_dir(worker),
                                                  'failed' if worker in dict(failed) else 'copied from worker 0'))
    print('worker sandboxes: %d copied in %.0f s' % (count - 1, time.monotonic() - started))
    for worker, why in failed:
        print('--- worker sandbox %d: %s' % (worker, why), file=sys.stderr)
    return 1 if failed else 0


def run_pytest(count, args):
    """pytest with one xdist worker per sandbox; worksteal because cases last from 0.1 s to a minute."""
    hold_workers()
    python = os.path.join(BIN, 'python')
    # --durations: the 25 slowest steps in every run's output, where make test's time goes.
    options = ['--dist', 'worksteal', '--durations=25']
    for worker in range(count):
        options += ['--tx', 'popen//python=' + ' '.join(shlex.quote(arg) for arg in in_namespace(worker, [python]))]
    os.execv(os.path.join(BIN, 'pytest'), ['pytest'] + options + args)


def down():
    for directory in sorted(glob.glob(os.path.join(TOP, SET_KEY + '-w*'))):
        subprocess.run(['bash', os.path.join(REPO, 'scripts', 'sandbox-stop.sh'), directory], check=False)
    for path in sorted(glob.glob('/run/netns/' + namespace(0)[:-1] + '*')):
        subprocess.run(['ip', 'netns', 'del', os.path.basename(path)], check=False)
    return 0


def main(argv):
    if not re.fullmatch(r'[a-z0-9]{0,16}', WORKER_SET):
        print('worker_sandboxes: FOREST_WORKER_SET=%r: use up to 16 lowercase letters and digits '
              '(nothing was changed)' % WORKER_SET, file=sys.stderr)
        return 2
    if len(argv) == 2 and argv[0] == 'up' and argv[1].isdigit() and int(argv[1]) >= 1:
        return up(int(argv[1]))
    if len(argv) >= 2 and argv[0] == 'pytest' and argv[1].isdigit() and int(argv[1]) >= 1:
        return run_pytest(int(argv[1]), argv[2:])
    if argv == ['down']:
        return down()
    print(__doc__.strip().split('\n\n')[1], file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
