"""scripts/under_load.sh: the CPU hogs run beside the command at the niceness asked, and a bad niceness is
refused before any hog starts."""
import os
import subprocess

from pgforest_dev import REPO

SCRIPT = os.path.join(REPO, 'scripts', 'under_load.sh')


def under_load(*command, nice=None):
    env = dict(os.environ)
    env.pop('LOAD_NICE', None)
    if nice is not None:
        env['LOAD_NICE'] = nice
    return subprocess.run(['bash', SCRIPT, '1'] + list(command), capture_output=True, text=True, env=env,
                          check=False, timeout=60)


def niceness_seen(done):
    """The niceness values the command printed (one line each)."""
    return sorted(set(line.strip() for line in done.stdout.splitlines() if line.strip().isdigit()))


def test_the_hogs_run_at_the_niceness_asked_and_are_stopped_afterwards():
    show = 'ps -o ni= -s "$FOREST_CPU_HOGS_SESSION"'  # the hogs' own session: nobody else's stress-ng
    niced = under_load('bash', '-c', show, nice='19')
    assert niced.returncode == 0 and niceness_seen(niced) == ['19'], niced.stdout + niced.stderr
    assert 'stress-ng --cpu 1 at niceness 19' in niced.stdout and 'CPU hogs stopped' in niced.stdout
    default = under_load('bash', '-c', show)
    assert default.returncode == 0 and niceness_seen(default) == ['0'], default.stdout + default.stderr


def test_the_hogs_scheduling_group_gets_their_niceness_and_the_commands_does_not():
    """Where the kernel groups tasks by session (autogroup), a niceness counts only inside a group: the hogs'
    session is niced as a whole, the command's group is left as it was."""
    if not os.path.exists('/proc/self/autogroup'):  # a kernel without autogroup: nothing to nice
        return
    # The kernel prints nothing for a task in the default group (a session that never called setsid, as
    # under some CI runners): the command's group is then compared as empty.
    with open('/proc/self/autogroup') as handle:
        own_group = handle.read().split()
    show = 'cat /proc/"$FOREST_CPU_HOGS_SESSION"/autogroup; echo "-- command"; cat /proc/self/autogroup'
    for nice in ('19', '0'):
        done = under_load('bash', '-c', show, nice=nice)
        assert done.returncode == 0 and '-- command' in done.stdout, done.stdout + done.stderr
        before, after = done.stdout.rsplit('-- command', 1)  # the first is in under_load's banner
        hogs = [line.split() for line in before.splitlines() if line.startswith('/autogroup-')]
        command = [line.split() for line in after.splitlines() if line.startswith('/autogroup-')]
        assert len(hogs) == 1 and hogs[0][-1] == nice, (nice, done.stdout)
        assert command == ([own_group] if own_group else []), (nice, done.stdout)
        assert not command or command[0][0] != hogs[0][0], (nice, done.stdout)


def test_a_bad_niceness_is_refused_before_any_hog_starts():
    for bad in ('x', '-1', '20', ''):
        done = under_load('true', nice=bad)
        if bad == '':  # empty: the default, 0
            assert done.returncode == 0, done.stderr
            continue
        assert done.returncode == 2 and 'LOAD_NICE must be a niceness from 0 to 19' in done.stderr, (bad, done.stderr)
        assert 'CPU hogs' not in done.stdout
