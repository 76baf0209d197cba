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
