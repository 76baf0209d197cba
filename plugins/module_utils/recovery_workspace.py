# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""An online recovery's workspace beside the target's data directory: the state file that lets
each phase run on its own, the target's own configuration files kept across the copy, its old
data directory (moved aside, put back by a rollback) and the private passfile (never a password in
the state file)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

from .errors import RecoveryError

# The target's own configuration, kept across the copy (forest.conf: the forest_node role's include).
KEEP_FILES = ['postgresql.conf', 'postgresql.auto.conf', 'pg_hba.conf', 'pg_ident.conf', 'forest.conf']


def recorded_scope(state, userdb):
    """(source, target, userdbs, replaced databases) a state file records; one written by an earlier
    version has no userdbs (then the module's userdb alone) and no replaced databases."""
    return (state['source'], state['target'], state.get('userdbs') or [userdb],
            state.get('replaced_databases') or [])


def ignore_interrupts():
    """Called before a cleanup removes the workspace, its last step: from there on SIGINT and SIGTERM are
    ignored.  The recovery is finished once the workspace is gone; an interruption after that would report a
    finished cleanup as failed, and the phase=cleanup the error asks for would find nothing in progress."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Workspace(object):
    """<data_dir>.pgforest-recovery: the state file, saved config files, the old data directory, the passfile."""

    def __init__(self, server):
        self.server = server
        self.path = server.data_dir.rstrip('/') + '.pgforest-recovery'
        # Where remove() renames the workspace before deleting it: a removal stopped midway (Ctrl-C in a
        # cleanup, a kill) leaves this name, which the next recovery deletes, never a workspace without its
        # state file, which would stop every recovery after it.
        self.trash = self.path + '.removing'
        self.state_file = os.path.join(self.path, 'state.json')
        self.conf_dir = os.path.join(self.path, 'conf')
        self.old_data = os.path.join(self.path, 'old-data')
        self.passfile = os.path.join(self.path, 'pgpass')

    # --- the state file ------------------------------------------------------------------------
    def load(self):
        try:
            with open(self.state_file) as handle:
                return json.load(handle)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise RecoveryError('cannot read the recovery state %s (%s): fix or remove it by hand' %
                                (self.state_file, exc))

    def save(self, state):
        state['updated'] = time.strftime('%Y-%m-%dT%H:%M:%S%z')
        temporary = self.state_file + '.new'
        with open(temporary, 'w') as handle:
            json.dump(state, handle, indent=1, sort_keys=True)
        os.replace(temporary, self.state_file)  # a crash leaves the old state or the new one, never half

    # --- the directory and its files ---------------------------------------------------------------
    def refuse_if_left_over(self):
        """A workspace with no state file (removed by hand, or a crash before the first save) may still
        hold the node's old data directory: a new recovery neither uses nor removes it."""
        if os.path.lexists(self.path):
            found = sorted(os.listdir(self.path)) if os.path.isdir(self.path) else []
            raise RecoveryError('%s exists but holds no recovery state (%s): an earlier recovery left it. Look at '
                                'it first (old-data, if there, is the data directory the node had before that recovery), then '
                                'move or remove it by hand and run the recovery again. Nothing was changed'
                                % (self.path, 'contents: ' + ', '.join(found) if found else 'empty'))

    def create(self):
        self.clear_trash()
        os.mkdir(self.path, 0o700)
        self.server.own(self.path, 0o700)  # the server's user reads the passfile in it
        os.mkdir(self.conf_dir, 0o700)

    def write_passfile(self, node):
        """A libpq passfile for the source, for pg_basebackup and the standby's primary_conninfo."""
        def escape(value):
            return str(value).replace('\\', '\\\\').replace(':', '\\:')
        self.server.write_private(self.passfile, '%s:%s:*:%s:%s\n' % (
            escape(node.host), node.port, escape(node.user), escape(node.password or '')))

    def move_aside(self, state):
        """The target's own configuration files saved, then its data directory moved into the workspace."""
        for name in KEEP_FILES:
            path = os.path.join(self.server.data_dir, name)
            if os.path.isfile(path):
                shutil.copy2(path, os.path.join(self.conf_dir, name))
        os.rename(self.server.data_dir, self.old_data)
        state['moved_aside'] = True
        self.save(state)

    def put_back_own_config(self):
        """The target's own files over the source's copies."""
        for name in sorted(os.listdir(self.conf_dir)):
            destination = os.path.join(self.server.data_dir, name)
            shutil.copy2(os.path.join(self.conf_dir, name), destination)
            self.server.own(destination, 0o600)

    def put_back_old_data(self, state):
        """The old data directory in place again, if it was moved aside (a rollback; may be repeated)."""
        if not (state.get('moved_aside') and os.path.exists(self.old_data)):
            return False
        if os.path.exists(self.server.data_dir):
            shutil.rmtree(self.server.data_dir)
        os.rename(self.old_data, self.server.data_dir)
        return True

    def remove(self):
        if os.path.exists(self.passfile):
            os.remove(self.passfile)  # first: the only file with a secret
        self.clear_trash()
        if os.path.lexists(self.path):
            os.rename(self.path, self.trash)  # the state file goes with the rest, at once
        self.clear_trash()

    def clear_trash(self):
        """What an earlier remove() renamed but did not finish deleting (the old data directory, maybe)."""
        if os.path.lexists(self.trash):
            shutil.rmtree(self.trash, ignore_errors=True)
