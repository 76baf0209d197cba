# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`reader | writer` between two child programs (psql COPY TO STDOUT | psql COPY FROM STDIN,
pg_dump | psql), with Python in the middle moving blocks, so that:

- nothing hangs: when either side fails, the other is stopped (SIGTERM, then SIGKILL after
  STOP_GRACE) at once, whatever it is blocked on.  A side that exits while the other still
  writes to it, or reads from it, is seen within PIPE_POLL seconds, not when a pipe breaks (a
  pipe whose other end the module itself still held never broke: issue 26, finding 6);
- nothing half-done commits: the writer's input is closed (its clean end of data, after which
  it commits) only once the reader has exited successfully.  A reader that dies mid-copy
  makes the writer be killed, so its transaction rolls back instead of committing the rows
  that got through;
- the error reported is the one of the side that failed first (its exit status and the tail
  of its stderr), the other side being named as stopped.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import tempfile
import time

from . import children
from .errors import ForestError

PIPE_BLOCK = 1 << 20
# How often the children's exit is checked while no data flows (a failure is seen this soon).
PIPE_POLL = 0.1
# How long a child asked to stop (SIGTERM) gets before it is killed.  psql and pg_dump die on
# SIGTERM at once; the grace only covers a child stuck in the kernel.
STOP_GRACE = 2.0
# Characters of a failed side's stderr in the message (its last lines say why).
STDERR_TAIL = 500


class PipeError(ForestError):
    """A pipe that failed: `first` is the index (0 reader, 1 writer) of the side that failed
    first, `stderr` the tails of both sides' stderr (for callers that look for a SQLSTATE)."""

    def __init__(self, message, first, stderr):
        super().__init__(message)
        self.first = first
        self.stderr = stderr


class Pipe(object):
    """`reader | writer` between two child programs; Python only moves blocks of at most
    PIPE_BLOCK bytes and counts them.  Passwords go through each child's environment
    (Node.child_env), never its arguments.  sides: how messages name the reader and the writer."""

    def __init__(self, reader_cmd, reader_env, writer_cmd, writer_env, reader_input=None,
                 sides=('the reading side', 'the writing side')):
        self.cmds = (reader_cmd, writer_cmd)
        self.envs = (reader_env, writer_env)
        self.reader_input = reader_input or b''
        self.sides = sides
        self.moved = 0
        self.writer_output = ''

    def run(self, what):
        """Run both; self (moved, writer_output) when both exited 0, else PipeError naming `what`."""
        with tempfile.TemporaryFile() as out_err, tempfile.TemporaryFile() as in_err, \
                tempfile.TemporaryFile() as in_out:
            started = []
            try:
                # close_fds (the default) keeps each pipe end in its one child and here only.
                started.append(children.start(self.cmds[0], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                              stderr=out_err, env=self.envs[0]))
                started.append(children.start(self.cmds[1], stdin=subprocess.PIPE, stdout=in_out,
                                              stderr=in_err, env=self.envs[1]))
                first = self._pump(*started)
            finally:  # whatever happened here (even an interrupt), no child outlives the pipe
                for child in started:
                    stop(child)
                    for handle in (child.stdin, child.stdout):
                        if handle is not None:
                            handle.close()
            statuses = [child.returncode for child in started]
            if first is not None:
                tails = (_tail(out_err), _tail(in_err))
                raise PipeError('%s failed: %s' % (what, failure_text(first, statuses, tails, self.sides, self.cmds)),
                                first, tails)
            in_out.seek(0)
            self.writer_output = in_out.read().decode('utf-8', 'replace')
        return self

    def _pump(self, reader, writer):
        """Move the reader's output into the writer until both end; the index of the side that
        failed first (None: both exited 0).  The other side is left running: run() stops it."""
        selector = selectors.DefaultSelector()
        pending = memoryview(self.reader_input)  # for the reader's stdin, then closed
        buffered = bytearray()                   # read from the reader, not yet taken by the writer
        source_open = True
        for handle in (reader.stdin, reader.stdout, writer.stdin):
            os.set_blocking(handle.fileno(), False)
        if not pending:
            reader.stdin.close()
        try:
            while True:
                failed = first_failure(reader.poll(), writer.poll(), writer_input_closed=writer.stdin.closed)
                if failed is not None:
                    return failed
                if writer.stdin.closed:
                    if writer.returncode is not None:
                        return None  # both exited 0
                    time.sleep(PIPE_POLL)  # the writer finishes (COPY's end, COMMIT)
                    continue
                if not source_open and not buffered and reader.returncode == 0:
                    # Only now: the writer's end of data makes it commit, so the reader must have
                    # succeeded before (a reader that died mid-copy left a clean-looking EOF too).
                    writer.stdin.close()
                    continue
                wanted = {}
                if not reader.stdin.closed:
                    wanted[reader.stdin] = selectors.EVENT_WRITE
                if source_open and len(buffered) < PIPE_BLOCK:
                    wanted[reader.stdout] = selectors.EVENT_READ
                if buffered:
                    wanted[writer.stdin] = selectors.EVENT_WRITE
                _register(selector, wanted)
                for key, _events in (selector.select(PIPE_POLL) if wanted else []):
                    handle = key.fileobj
                    if handle is reader.stdin:
                        written = _write(handle, pending)
                        pending = pending[max(written, 0):]
                        if not pending or written < 0:  # all given, or the reader does not read it
                            _unregister(selector, handle)
                            handle.close()
                    elif handle is reader.stdout:
                        block = _read(handle)
                        if block == b'':
                            _unregister(selector, handle)
                            source_open = False
                        elif block:
                            buffered += block
                    elif handle is writer.stdin:
                        written = _write(handle, buffered)
                        if written < 0:
                            return 1  # the writer stopped taking its input before its end
                        del buffered[:written]
                        self.moved += written
                if not wanted:
                    time.sleep(PIPE_POLL)  # the reader ended its output: wait for its exit status
        finally:
            selector.close()


def first_failure(reader_status, writer_status, writer_input_closed):
    """Which side (0 reader, 1 writer) has failed, from their exit statuses (None: still
    running), or None (pure).  A writer that exits before its input was closed has failed even
    with status 0: it stopped taking data it was meant to load.  When both are found failed at
    the same look, the writer is named: a reader never fails because the writer stopped reading."""
    if writer_status is not None and (writer_status != 0 or not writer_input_closed):
        return 1
    if reader_status is not None and reader_status != 0:
        return 0
    return None


def failure_text(first, statuses, tails, sides, cmds):
    """What a failed pipe's message says after '<what> failed: ' (pure)."""
    other = 1 - first
    status = statuses[first]
    how = 'was killed by signal %d' % -status if status < 0 else 'exited %d' % status
    if status == 0:
        how = 'exited before the end of its input'
    text = '%s failed first: %s %s: %s' % (
        sides[first], os.path.basename(cmds[first][0]), how, tails[first] or 'no message')
    if statuses[other] in (None, -signal.SIGTERM, -signal.SIGKILL):
        text += '; %s was stopped' % sides[other]
    elif statuses[other] != 0:
        text += '; %s exited %d too: %s' % (sides[other], statuses[other], tails[other] or 'no message')
    return text


def stop(child):
    """End a child that still runs: SIGTERM, SIGKILL after STOP_GRACE; reaped either way."""
    if child.poll() is not None:
        return
    for signum, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, None)):
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass
        try:
            child.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _register(selector, wanted):
    registered = dict((key.fileobj, key.events) for key in selector.get_map().values())
    for handle in registered:
        if handle not in wanted:
            selector.unregister(handle)
    for handle, events in wanted.items():
        if handle not in registered:
            selector.register(handle, events)


def _unregister(selector, handle):
    if handle in [key.fileobj for key in selector.get_map().values()]:
        selector.unregister(handle)


def _read(handle):
    """Up to PIPE_BLOCK bytes, b'' at the end, None when nothing is there yet."""
    try:
        return os.read(handle.fileno(), PIPE_BLOCK)
    except BlockingIOError:
        return None


def _write(handle, data):
    """Bytes of data written: 0 when the pipe is full, -1 when the child closed its end."""
    try:
        return os.write(handle.fileno(), data[:PIPE_BLOCK])
    except BlockingIOError:
        return 0
    except BrokenPipeError:
        return -1


def _tail(handle):
    """The end of a child's stderr, without psql's LOCATION lines (source file and line)."""
    handle.seek(0)
    lines = handle.read().decode('utf-8', 'replace').strip().splitlines()
    return ' '.join(line.strip() for line in lines if not line.strip().startswith('LOCATION:'))[-STDERR_TAIL:]
