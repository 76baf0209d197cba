"""Run a command in a session of its own, and so in a scheduling group of its own:

    python scripts/own_session.py COMMAND [ARG...]

Why (make test, the lab's chain): with autogroup on (/proc/sys/kernel/sched_autogroup_enabled), the kernel
shares the CPU between sessions first and between the processes of a session after.  make test's three chains
are make's one session, while every PostgreSQL server of the sandboxes is a session of its own (pg_ctl starts it
with setsid), as is each SSH session on the lab's machines.  The lab's controller (pytest, ansible-playbook, ssh),
which mostly waits and then needs the CPU for a moment between two steps on the machines, got a fifteenth of
make's one share, and each of its steps waited that much longer.  In a session of its own it gets a share of its
own, which it uses for a moment at a time.

Ctrl-C and kill still reach the command: the INT, TERM and HUP this process gets go to the command's process
group, which, outside the terminal's foreground group, would not see the terminal's Ctrl-C (one that lands while
the command is being started goes to it once it runs).  What a process cannot catch does not go on: a SIGKILL to
make's process group leaves the command running, as a command started with setsid would be left.  The exit
status is the command's (128 + N when signal N ended it).  The command starts with the signal handling a command
started from the terminal has: a shell script that started it with & would have made it ignore SIGINT, and
Python would then never raise KeyboardInterrupt in it."""
import os
import signal
import subprocess
import sys


def main(argv):
    if not argv:
        sys.stderr.write('own_session: give the command to run, e.g. own_session.py bash -c "..."\n')
        return 2
    started, pending = [], []

    def forward(signum, _frame):
        if not started:  # the command is being started: it gets the signal once it runs
            pending.append(signum)
            return
        try:
            os.killpg(started[0].pid, signum)
        except ProcessLookupError:  # its group is gone already: nothing left to stop
            pass
    # Before the command starts: a signal this process ignores (started with & by a shell) the command would
    # ignore too, and a handler is reset to the default in it.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    try:
        child = subprocess.Popen(argv, start_new_session=True)
    except OSError as error:
        sys.stderr.write('own_session: cannot run %s: %s\n' % (argv[0], error))
        return 128 + pending[0] if pending else 127
    started.append(child)
    for signum in pending:
        forward(signum, None)
    status = child.wait()
    return 128 - status if status < 0 else status


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
