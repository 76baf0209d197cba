"""child_pipe.Pipe with small shell children: whichever side fails, the other is stopped at once,
the failing side is named, and a writer never gets a clean end of data after a failed reader."""
import os
import signal
import time

import pytest

from ansible_collections.pgforest.cluster.plugins.module_utils.child_pipe import (
    Pipe, PipeError, failure_text, first_failure)

SIDES = ('the source', 'the target')


def sh(script):
    return ['/bin/sh', '-c', script]


def pipe(reader, writer, reader_input=None):
    return Pipe(sh(reader), dict(os.environ), sh(writer), dict(os.environ), reader_input, sides=SIDES)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open('/proc/%d/stat' % pid) as handle:  # a zombie is not running
        return handle.read().split(')')[-1].split()[0] != 'Z'


def test_data_moves_and_the_writer_output_is_kept(tmp_path):
    done = pipe('cat; printf tail', 'wc -c', reader_input=b'x' * 3000000).run('copy')
    assert done.moved == 3000004
    assert done.writer_output.strip() == '3000004'


def test_a_writer_that_fails_stops_a_reader_stuck_writing_within_seconds(tmp_path):
    pidfile = tmp_path / 'reader.pid'
    started = time.monotonic()
    with pytest.raises(PipeError) as failed:
        # The reader writes for ever (like psql COPY TO STDOUT of a big table); the writer gives up
        # after reading a little (like psql after TRUNCATE hit lock_timeout).
        pipe('echo $$ > %s; exec yes' % pidfile, 'head -c 10 >/dev/null; echo "ERROR:  lock timeout" >&2; exit 3').run(
            'copy of t')
    assert time.monotonic() - started < 5
    assert failed.value.first == 1
    message = str(failed.value)
    assert message.startswith('copy of t failed: the target failed first: sh exited 3: ERROR:  lock timeout')
    assert message.endswith('the source was stopped')
    assert not alive(int(pidfile.read_text()))


def test_a_reader_that_dies_mid_copy_kills_the_writer_before_it_sees_the_end_of_data(tmp_path):
    committed = tmp_path / 'committed'
    pidfile = tmp_path / 'writer.pid'
    started = time.monotonic()
    with pytest.raises(PipeError) as failed:
        # The writer "commits" when its input ends cleanly: it must be killed first.
        # (the reader starts once the writer runs: the event, not a sleep)
        pipe('until [ -s %s ]; do sleep 0.01; done; head -c 100000 /dev/zero; '
             'echo "FATAL:  terminating connection" >&2; exit 2' % pidfile,
             'echo $$ > %s.new && mv %s.new %s; cat >/dev/null && touch %s' % (pidfile, pidfile, pidfile, committed)
             ).run('copy of t')
    assert time.monotonic() - started < 5
    assert failed.value.first == 0
    assert 'the source failed first: sh exited 2: FATAL:  terminating connection' in str(failed.value)
    assert str(failed.value).endswith('the target was stopped')
    assert not committed.exists()
    assert not alive(int(pidfile.read_text()))


def test_a_writer_that_ignores_sigterm_is_killed(tmp_path):
    started = time.monotonic()
    with pytest.raises(PipeError):
        pipe('exit 1', "trap '' TERM; while :; do sleep 0.1; done").run('copy')
    assert time.monotonic() - started < 10


def test_a_reader_that_does_not_read_its_input_does_not_block_the_pipe():
    done = pipe('printf abc', 'cat', reader_input=b'y' * 5000000).run('copy')
    assert done.writer_output == 'abc'


def test_a_missing_program_is_reported_and_the_other_side_stopped():
    started = time.monotonic()
    with pytest.raises(OSError):
        Pipe(sh('exec sleep 30'), None, ['/nonexistent/psql'], None).run('copy')
    assert time.monotonic() - started < 5


@pytest.mark.parametrize('reader, writer, closed, expected', [
    (None, None, False, None),
    (0, None, False, None),            # the reader is done, its output still moving
    (2, None, False, 0),
    (None, 3, False, 1),
    (None, 0, False, 1),               # a writer gone before the end of its input has failed
    (0, 0, True, None),
    (2, 3, False, 1),                  # both at once: the writer is named
    (-signal.SIGKILL, None, False, 0),
])
def test_which_side_failed_first(reader, writer, closed, expected):
    assert first_failure(reader, writer, writer_input_closed=closed) == expected


def test_failure_text_names_the_failed_side_and_the_other_as_stopped():
    cmds = (['/usr/bin/psql'], ['/usr/bin/psql'])
    assert failure_text(0, [2, -signal.SIGTERM], ('FATAL:  gone', ''), SIDES, cmds) == (
        'the source failed first: psql exited 2: FATAL:  gone; the target was stopped')
    assert failure_text(1, [-signal.SIGKILL, 0], ('', ''), SIDES, cmds) == (
        'the target failed first: psql exited before the end of its input: no message; the source was stopped')
    assert failure_text(0, [-9, 1], ('', 'ERROR:  x'), SIDES, cmds) == (
        'the source failed first: psql was killed by signal 9: no message; the target exited 1 too: ERROR:  x')
