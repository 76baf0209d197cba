# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An online recovery's base copy: what would make it fail later (checked before anything
changes), and pg_basebackup as one process object (start, progress, kill, its process group)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

from . import children
from .errors import RecoveryError
from .forest_pg import run
from .local_server import tree_size
from .wait import ready_within

# How long the progress reader may outlive pg_basebackup: a child it forked (the WAL streamer) can
# hold stderr open after the parent ended; then the whole group is killed.
READER_GRACE_SECONDS = 5


def check_base(admin, server, source_serverid):
    """Refuse what would fail later: wrong directory, tablespaces, too little disk space.  The bytes the
    copy needs, for the check mode's message."""
    data_dir = server.data_dir
    if not server.initialized():
        raise RecoveryError('%s is not an initialized data directory: online recovery keeps the target\'s own '
                            'configuration files, so provision the node first (playbooks/provision.yml --limit '
                            '<host>), then recover. Nothing was changed' % data_dir)
    source_dir = run(admin, 'SHOW data_directory')[0]['data_directory']
    if os.path.realpath(source_dir) == os.path.realpath(data_dir):
        raise RecoveryError('%s is the data directory of serverid %d, the valid source: run the recovery on '
                            'the broken node\'s host with its data_dir. Nothing was changed'
                            % (data_dir, source_serverid))
    if os.path.ismount(data_dir):
        raise RecoveryError('%s is a mount point and cannot be moved aside: mount the parent directory '
                            'instead. Nothing was changed' % data_dir)
    spaces = run(admin, "SELECT spcname FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')")
    if spaces:
        raise RecoveryError('serverid %d has tablespaces (%s): online recovery copies only the data directory; '
                            'recover offline. Nothing was changed'
                            % (source_serverid, ', '.join(row['spcname'] for row in spaces)))
    needed = run(admin, 'SELECT sum(pg_database_size(oid))::bigint AS size FROM pg_database')[0]['size']
    needed = int(needed * 1.1) + (256 << 20)  # WAL written meanwhile
    free = shutil.disk_usage(os.path.dirname(data_dir)).free
    if free < needed:
        raise RecoveryError('%s has %d MB free but the copy needs about %d MB (the old data directory stays '
                            'until cleanup): free some space. Nothing was changed'
                            % (os.path.dirname(data_dir), free >> 20, needed >> 20))
    return needed


def last_line(output):
    """The last non-empty line of pg_basebackup's output so far (its --progress lines end in \\r)."""
    lines = [line for line in output.replace(b'\r', b'\n').split(b'\n') if line.strip()]
    return lines[-1].decode('utf-8', 'replace').strip() if lines else ''


def is_progress(line):
    """Whether a line is one of --progress's ("1234/5678 kB (21%), 0/1 tablespace")."""
    return 'kB' in line


class BaseCopy(object):
    """One pg_basebackup from the source (`src_node`, a forest_pg.Node) into the server's data
    directory through replication slot `slot`; the password comes from the workspace's passfile."""

    def __init__(self, server, src_node, slot, passfile, max_rate=None, say=None, every=10.0):
        self.server = server
        self.src_node = src_node
        self.slot = slot
        self.passfile = passfile
        self.max_rate = max_rate
        self.say = say or (lambda text: None)
        self.every = every          # seconds between two progress lines said
        self.process = None
        self.finished = False       # exited 0: nothing of it is left to kill

    def argv(self):
        argv = [self.server.tool('pg_basebackup'), '--pgdata=' + self.server.data_dir, '--wal-method=stream',
                '--checkpoint=fast', '--create-slot', '--slot=' + self.slot, '--progress', '--no-password',
                '--dbname=' + self.src_node.conninfo_string('postgres', bulk=True,
                                                            application_name='pgforest_basebackup')]
        if self.max_rate:
            argv.append('--max-rate=' + self.max_rate)
        return argv

    def start(self):
        env = dict(os.environ, PGPASSFILE=self.passfile)
        env.pop('PGPASSWORD', None)
        # A process group of its own: pg_basebackup forks a WAL streamer, which would outlive a killed
        # parent and hold the pipe open; the group goes as one (kill).
        self.process = children.start(self.server.as_user(self.argv()), env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, start_new_session=True)

    def run(self, source_serverid):
        """Start, follow and wait for the copy; the bytes now in the data directory."""
        started = time.monotonic()
        self.start()
        output = self.follow()
        if self.process.wait() != 0:
            raise RecoveryError('pg_basebackup from serverid %d failed (exit %s): %s'
                                % (source_serverid, self.process.returncode, output[-600:]))
        self.finished = True
        copied = tree_size(self.server.data_dir)
        seconds = time.monotonic() - started
        self.say('base backup done: %d MB in %.1fs (%.0f MB/s)'
                 % (copied >> 20, seconds, (copied >> 20) / max(seconds, 0.001)))
        return copied

    def follow(self):
        """Say pg_basebackup's --progress line every `every` seconds until it ends; its last output.
        The thread only reads the pipe (a read that blocks would otherwise hold the caller)."""
        tail = ['']

        def reader():
            buffer = b''
            shown = time.monotonic()
            for chunk in iter(lambda: self.process.stderr.read1(4096), b''):
                buffer = (buffer + chunk)[-4096:]
                line = last_line(buffer)
                if line:
                    tail[0] = line
                    if is_progress(line) and time.monotonic() - shown >= self.every:
                        shown = time.monotonic()
                        self.say('pg_basebackup: %s' % line)
            tail.append(buffer.decode('utf-8', 'replace'))

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        self.process.wait()
        if not ready_within(lambda: not thread.is_alive(), READER_GRACE_SECONDS, 0.1):
            self.kill()  # the main process is gone but a child holds stderr
        thread.join()
        return tail[-1].strip()

    def kill(self):
        """pg_basebackup and what it forked (its process group), if it was started and has not finished."""
        if self.process is None or self.finished:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except OSError:  # already gone
            pass
        self.process.wait()
