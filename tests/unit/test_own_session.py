"""scripts/own_session.py: the command runs in a session of its own, Ctrl-C and kill given to the wrapper reach it
(a Python command gets its KeyboardInterrupt), its exit status is the wrapper's, a missing command is one line."""
import os
import signal
import subprocess
import sys

from pgforest_dev import REPO

SCRIPT = os.path.join(REPO, 'scripts', 'own_session.py')
# Prints "ready", then waits; a Ctrl-C ends it with status 5 after saying so.
WAITER = ("import sys, time\nprint('ready', flush=True)\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n"
          "    print('interrupted', flush=True)\n    sys.exit(5)\n")


def wrapped(*command, **kwargs):
    return subprocess.Popen([sys.executable, SCRIPT] + list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def test_the_command_leads_a_session_of_its_own_and_its_status_is_returned():
    done = wrapped(sys.executable, '-c', 'import os, sys; print(os.getsid(0) == os.getpid(), os.getsid(0) != %d); '
                                         'sys.exit(3)' % os.getsid(0))
    out, _err = done.communicate(timeout=30)
    assert (out.split(), done.returncode) == (['True', 'True'], 3)


def test_ctrl_c_to_the_wrapper_reaches_the_command_even_when_a_shell_started_it_in_the_background():
    """A shell without job control starts `cmd &` with SIGINT ignored; the command must get it all the same."""
    shell = subprocess.Popen(['sh', '-c', '"$@" & wait', 'sh', sys.executable, SCRIPT, sys.executable, '-c', WAITER],
                             stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert shell.stdout.readline().strip() == 'ready'
        wrapper = int(subprocess.run(['pgrep', '-P', str(shell.pid)], capture_output=True, text=True,
                                     check=True).stdout)  # sh's one child
        os.kill(wrapper, signal.SIGINT)
        assert shell.stdout.readline().strip() == 'interrupted'
        assert shell.wait(timeout=30) == 0  # sh's wait: the job's status is not sh's
    finally:
        if shell.poll() is None:
            os.killpg(shell.pid, signal.SIGKILL)


def test_kill_to_the_wrapper_ends_the_command_and_says_which_signal():
    run = wrapped(sys.executable, '-c', WAITER)
    try:
        assert run.stdout.readline().strip() == 'ready'
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if run.poll() is None:
            run.kill()


def test_no_command_or_a_missing_one_is_one_line():
    nothing = wrapped()
    _out, err = nothing.communicate(timeout=30)
    assert nothing.returncode == 2 and err.count('\n') == 1 and 'give the command' in err
    missing = wrapped('/nonexistent/command')
    _out, err = missing.communicate(timeout=30)
    assert missing.returncode == 127 and err.count('\n') == 1 and '/nonexistent/command' in err


def test_a_signal_while_the_command_starts_reaches_it_once_it_runs(monkeypatch):
    """The window between the fork and the command's process being known: the signal waits, then goes on (before,
    it ended the wrapper there and left the command running in its own session)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('own_session', SCRIPT)
    own_session = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(own_session)
    real_popen = subprocess.Popen
    started = []

    def popen_then_signal(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        os.kill(os.getpid(), signal.SIGTERM)  # lands before main() has the command's process
        return started[0]
    monkeypatch.setattr(own_session.subprocess, 'Popen', popen_then_signal)
    kept = dict((signum, signal.getsignal(signum)) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP))
    try:
        status = own_session.main([sys.executable, '-c', 'import time; time.sleep(60)'])
    finally:
        for signum, handler in kept.items():
            signal.signal(signum, handler)
        if started and started[0].poll() is None:
            started[0].kill()
    assert status == 128 + signal.SIGTERM
