# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Taking and restoring backups of the pair (guide §6 and §7): what every backup job shares,
the options (BackupOptions), the backup directory and the client programs.  The logical
kind is in backup_logical.py, the physical one in backup_physical.py."""

from __future__ import annotations

import os
from typing import NamedTuple, Optional

from . import backup, children
from .job import Job
from .local_server import find_bindir
from .options import options_from


class BackupOptions(NamedTuple):
    """What a backup or restore does, apart from where (the connection options and this host's
    server); forest_backup and forest_restore build it once from their options."""
    backup_dir: Optional[str] = None   # the directory that holds the backups
    name: Optional[str] = None         # the backup's name (None: forest-<kind>-<UTC time>)
    keep: int = 7                      # retention: backups of the kind kept (0: all)
    source: Optional[int] = None       # logical backup: the node dumped (None: pair_choice.backup_source's)
    allow_invalid_source: bool = False
    jobs: int = 2                      # pg_dump / pg_restore --jobs
    backup: str = 'latest'             # restore: the backup's name or path
    confirm: bool = False              # restore: the DBA confirmed it
    serverid: Optional[int] = None     # physical restore: this host's node
    keep_replaced: bool = False        # physical restore: keep the data directory it replaced
    pg_bindir: Optional[str] = None    # client programs (None: the newest installed)

    from_params = classmethod(options_from)


def run_tool(argv, env, what):
    done = children.run(argv, env=env)
    if done.returncode != 0:
        raise backup.BackupError('%s failed (exit %d): %s' % (what, done.returncode, done.stderr.strip()[-800:]))
    return done


class BackupJob(Job):
    """Taking or restoring a backup: the job base (progress, phases, connections) and the
    backup directory and client programs."""

    def __init__(self, params, options, check_mode=False, log=None):
        super(BackupJob, self).__init__(params, check_mode, log)
        self.options = options
        self.source = None

    def tool(self, name):
        """Client programs: pg_bindir, else the newest installed (it reads older servers too)."""
        return os.path.join(self.options.pg_bindir or find_bindir(), name)

    def backup_dir(self):
        if not self.options.backup_dir:
            raise backup.BackupError('backup_dir is required: the directory that holds the backups '
                                     '(inventory variable forest_backup_dir in the playbooks)')
        return os.path.abspath(self.options.backup_dir)

    def refuse_without_confirmation(self, what):
        if not self.options.confirm and not self.check_mode:
            raise backup.BackupError('a restore %s; nothing was changed. Re-run with confirm=true (playbook: '
                                     '-e confirm_restore=true) once the applications are stopped' % what)
