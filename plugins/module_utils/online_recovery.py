# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Online recovery (the modern form of guide §8.2; step by step in docs/recovery.md): the
applications keep writing to the valid node S while the broken node T, on the
host this runs on, is rebuilt from it.

base     stop T, move its data directory aside (its own configuration files
         saved), pg_basebackup -X stream from S through a replication slot, put
         T's files back, start T as a streaming standby of S;
cut      inside the write freeze (quiesce): wait until T has replayed S's WAL,
         promote T, check that nothing wrote to S meanwhile, copy every
         sequence and the contents of the unlogged tables (a physical copy
         leaves them empty), udb_validity of T := 1 on both nodes;
cleanup  drop the slot, take the standby settings out, remove the old data
         directory and the private password file;
cancel   from any failed step back to the state before: T on its old data
         directory, -1, S untouched and valid, no slot, nothing left behind.

Each phase can run on its own (the guide's PGHARecovery.sh -base/-cleanup/...):
what a later phase needs is kept in a state file in the workspace next to the
data directory (never a password; that is in a 0600 passfile removed at the end).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from typing import NamedTuple, Optional

from . import dbsync, freeze_writes
from .forest_pg import (
    ForestPgError, close_all, libpq_conninfo, run)
from .local_server import LocalServer, tree_size
from .cluster_status import read_databases
from .mngdb import (
    SYSTEM_DATABASES, accept_node, database_names, forest_userdbs, mngdb_name, set_validity)
from .pair_choice import online_scope
from .poll_interval import PollInterval, PollIntervalError, freeze_notice
from .quiesce import OWN_XID_SQL, Quiesce
from .recovery import Recovery, RecoveryError

# The target's own configuration, kept across the copy (forest.conf: the forest_node role's include).
KEEP_FILES = ['postgresql.conf', 'postgresql.auto.conf', 'pg_hba.conf', 'pg_ident.conf', 'forest.conf']
STANDBY_MARK = '# pgforest.cluster online recovery: standby settings (removed at cleanup)'
APPLICATION = 'pgforest_recovery'


class Phase(NamedTuple):
    """One step of an online recovery, as the state file, the module and the role know it."""
    name: str
    needs: Optional[str]    # the stage the state file must be at (None: no recovery in progress)
    leaves: str             # the stage it leaves in the state file
    rolls_back: bool        # a failure undoes the whole recovery (before the cut is committed)


# The one table of the online recovery's steps, in order.  phase=all runs them all; phase=cancel
# undoes a recovery whose cut has not happened.  forest_recover's choices and the forest_recovery
# role's (tests/unit/test_online_recovery_logic.py checks the role) come from here.
PHASES = (
    Phase('base', needs=None, leaves='standby', rolls_back=True),
    Phase('cut', needs='standby', leaves='promoted', rolls_back=True),
    Phase('cleanup', needs='promoted', leaves='done', rolls_back=False),
)
PHASE_CHOICES = ('all',) + tuple(phase.name for phase in PHASES) + ('cancel',)
# Stages of the state file besides the phases' own: a base copy under way, a cancel half done.
STARTED, CANCEL_PENDING, CANCELLED = 'base', 'cancel_pending', 'cancelled'


def phase_named(name):
    return [phase for phase in PHASES if phase.name == name][0]


def next_phase(stage):
    """What continues a recovery left at `stage`: the phase that needs it, else cancel."""
    return ([phase.name for phase in PHASES if phase.needs == stage] or ['cancel'])[0]


WAL_POSITION_SQL = "SELECT pg_current_wal_lsn()::text AS lsn"
ROLLBACK_RETRY_SECONDS = 30
# What the node's configuration files say (our own session overrides lock_timeout).
OWN_SETTINGS_SQL = """
SELECT name, setting FROM pg_file_settings
WHERE applied AND name IN ('lock_timeout', 'listen_addresses', 'primary_conninfo', 'primary_slot_name')
"""


def _interrupted(signum, _frame):
    raise KeyboardInterrupt('interrupted (%s)' % signal.Signals(signum).name)


class Workspace(object):
    """<data_dir>.pgforest-recovery: the state file, saved config files, the old data directory, the passfile."""

    def __init__(self, server):
        self.server = server
        self.path = server.data_dir.rstrip('/') + '.pgforest-recovery'
        self.state_file = os.path.join(self.path, 'state.json')
        self.conf_dir = os.path.join(self.path, 'conf')
        self.old_data = os.path.join(self.path, 'old-data')
        self.passfile = os.path.join(self.path, 'pgpass')

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
        os.replace(temporary, self.state_file)

    def create(self):
        os.mkdir(self.path, 0o700)
        self.server.own(self.path, 0o700)  # the server's user reads the passfile in it
        os.mkdir(self.conf_dir, 0o700)

    def write_passfile(self, node):
        """A libpq passfile for the source, for pg_basebackup and the standby's primary_conninfo."""
        def escape(value):
            return str(value).replace('\\', '\\\\').replace(':', '\\:')
        self.server.write_private(self.passfile, '%s:%s:*:%s:%s\n' % (
            escape(node.host), node.port, escape(node.user), escape(node.password or '')))

    def remove(self):
        if os.path.exists(self.passfile):
            os.remove(self.passfile)  # first: the only file with a secret
        shutil.rmtree(self.path, ignore_errors=True)


class OnlineRecovery(Recovery):
    """The phases of one online recovery of the broken node, run on its host."""

    def __init__(self, params, check_mode=False, log=None):
        super().__init__(params, check_mode, log)
        self.server = None
        self.workspace = None
        self.state = None
        self.freeze_window = None
        self.cut_report = {}
        self.cleanup_report = {}
        self.basebackup = None  # the running pg_basebackup, killed by a rollback
        # Every forest user database of the server goes through the recovery (pair_choice.online_scope),
        # and the other databases the DBA allowed to be replaced (replace_databases).
        self.userdbs = [self.userdb]
        self.replaced = []
        self._poll = None

    # --- the drivers' poll interval, shortened for the recovery (poll_interval) ------------------
    @property
    def poll(self):
        """None when notice_wait is given: the DBA says how long the drivers take, nothing is lowered."""
        if self._poll is None and self.p['notice_wait'] is None:
            self._poll = PollInterval(self.p.get('freeze_read_duration') or 1,
                                      'online recovery of serverid %d' % self.target['serverid'], self.say)
        return self._poll

    def mngdb_conns(self, node):
        """{label: connection} to each covered management database on `node` (a status node dict)."""
        return dict(('serverid %d %s' % (node['serverid'], mngdb_name(userdb)),
                     self.connect(node, mngdb_name(userdb))[1]) for userdb in self.userdbs)

    def answering_mngdb_conns(self, node):
        try:
            return self.mngdb_conns(node)
        except ForestPgError as exc:
            self.say('serverid %d does not answer (%s): its management databases are left as they are'
                     % (node['serverid'], exc.detail.strip()))
            return {}

    def put_back_poll_interval(self, strict):
        """The DBA's mngdb_read_duration back on both nodes (those answering, unless strict)."""
        if self.poll is None:
            return []
        conns = self.mngdb_conns(self.source) if strict else self.answering_mngdb_conns(self.source)
        conns.update(self.mngdb_conns(self.target) if strict else self.answering_mngdb_conns(self.target))
        return self.poll.put_back(conns, strict=strict)

    # --- driving the phases --------------------------------------------------------------
    def run(self):
        wanted = self.p['phase']
        if wanted == 'cancel':
            return self.cancel()
        steps = PHASES if wanted == 'all' else (phase_named(wanted),)
        if steps[0].needs is None:
            self.start_new()
        else:
            self.resume(steps[0])
        work = dict(base=self.base, cut=self.cut, cleanup=self.cleanup_phase)
        for step in steps:
            if self.check_mode and step.needs is not None:  # needs what an earlier phase would have done
                self.say('would run phase %s of the recovery of serverid %d' % (step.name, self.target['serverid']))
                return self.result(changed=True)
            if step.rolls_back:
                self.guarded(step.name, work[step.name])
            else:
                self.timed(step.name, work[step.name])
            if self.check_mode:  # a recovery that would run changes the node: "would change"
                return self.result(changed=True)
        return self.result()

    def guarded(self, name, function):
        """Run a phase; on failure roll everything back and say what happened and what was undone.
        SIGTERM counts as an interruption too; during the rollback both are ignored: Ctrl-C on
        ansible-playbook sends the module SIGINT and, a moment later, SIGTERM, which would otherwise
        kill it half-way through putting things back."""
        previous = signal.signal(signal.SIGTERM, _interrupted)
        try:
            self.timed(name, function)
        except (Exception, KeyboardInterrupt) as exc:  # any failure, or Ctrl-C: undo, then report the cause
            if self.check_mode or self.state is None:
                raise
            cause = '%s failed: %s' % (name, exc or 'interrupted (SIGINT)')
            self.say(cause)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                self.rollback()
            except Exception as undo:  # the cause first, then what is left to undo
                raise RecoveryError('%s. The rollback did not finish: %s' % (cause, undo))
            raise RecoveryError('%s. Rolled back: serverid %d is on its old data directory again and marked '
                                'broken (-1), serverid %d is untouched and valid, the replication slot and the '
                                'standby settings are gone. Fix the cause and run the recovery again'
                                % (cause, self.state['target']['serverid'], self.state['source']['serverid']))
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def start_new(self):
        self.choose(online=True)
        self.lock_and_choose_again(online=True)
        source, target = self.source, self.target
        self.userdbs = self.choose_scope()
        self.lock_pair()
        self.local_server(source)
        state = self.workspace.load()
        if state:
            raise RecoveryError('an online recovery of serverid %d is in progress here (stage %s, last step %s): '
                                'continue with phase=%s or undo it with phase=cancel'
                                % (state['target']['serverid'], state['stage'], state['updated'],
                                   next_phase(state['stage'])))
        self.say('online recovery of serverid %d from serverid %d; data directory %s; user database%s %s'
                 % (target['serverid'], source['serverid'], self.server.data_dir,
                    '' if len(self.userdbs) == 1 else 's', ', '.join(self.userdbs)))

    def choose_scope(self):
        """The forest user databases of the source server, each checked (pair_choice.online_scope):
        the physical copy replaces all of them on the target, and every other database too."""
        _s, src_admin = self.connect(self.source, 'postgres')
        source_names = database_names(src_admin)
        userdbs = forest_userdbs(source_names)
        target_names = []
        try:
            tgt_admin = self.node(self.target).connect('postgres')
        except ForestPgError as exc:
            self.say('serverid %d does not answer (%s): its databases are taken to be those of serverid %d'
                     % (self.target['serverid'], exc.detail.strip(), self.source['serverid']))
        else:
            with tgt_admin:
                target_names = database_names(tgt_admin)
        forest_names = set(userdbs) | set(mngdb_name(userdb) for userdb in userdbs)
        others = sorted((set(source_names) | set(target_names)) - forest_names - set(SYSTEM_DATABASES))
        statuses = read_databases(self.p, userdbs)
        scope = online_scope(statuses, self.source['serverid'], self.target['serverid'],
                             self.p.get('include_valid') or (), others, self.p.get('replace_databases') or ())
        self.replaced = others
        if others:
            self.say('databases replaced with serverid %d\'s copy, as asked (replace_databases): %s'
                     % (self.source['serverid'], ', '.join(others)))
        return sorted(scope, key=lambda userdb: (userdb != self.userdb, userdb))

    def locked_mngdbs(self):
        return [mngdb_name(userdb) for userdb in self.userdbs]

    def resume(self, phase):
        """A phase after the first: the state the earlier phase left."""
        self.local_server(None)
        state = self.workspace.load()
        if not state or state['stage'] != phase.needs:
            raise RecoveryError('phase=%s needs an online recovery at stage %s, but %s: run %s. Nothing was changed'
                                % (phase.name, phase.needs, 'none is in progress here' if not state else
                                   'it is at stage %s' % state['stage'],
                                   'phase=%s first' % PHASES[0].name if not state
                                   else 'phase=%s' % next_phase(state['stage'])))
        self.state = state
        self.source, self.target = state['source'], state['target']
        self.userdbs = state.get('userdbs') or [self.userdb]
        self.replaced = state.get('replaced_databases') or []
        self.lock_pair()

    def local_server(self, source):
        """This host's server; the binaries must match the source's major version."""
        major = None
        if source is not None:
            _node, admin = self.connect(source, 'postgres')
            major = int(run(admin, 'SHOW server_version_num')[0]['server_version_num']) // 10000
        self.server = LocalServer.from_params(self.p, major)
        self.workspace = Workspace(self.server)
        if major is not None and self.server.major_version() != major:
            raise RecoveryError('serverid %d runs PostgreSQL %d but %s here is %d: a physical copy needs the same '
                                'major version; install it or set pg_bindir. Nothing was changed'
                                % (source['serverid'], major, self.server.bindir, self.server.major_version()))

    # --- base: the physical copy -----------------------------------------------------------
    def check_base(self, admin):
        """Refuse what would fail later: wrong directory, tablespaces, too little disk space."""
        data_dir = self.server.data_dir
        if not self.server.initialized():
            raise RecoveryError('%s is not an initialized data directory: online recovery keeps the target\'s own '
                                'configuration files, so provision the node first (playbooks/provision.yml --limit '
                                '<host>), then recover. Nothing was changed' % data_dir)
        source_dir = run(admin, 'SHOW data_directory')[0]['data_directory']
        if os.path.realpath(source_dir) == os.path.realpath(data_dir):
            raise RecoveryError('%s is the data directory of serverid %d, the valid source: run the recovery on '
                                'the broken node\'s host with its data_dir. Nothing was changed'
                                % (data_dir, self.source['serverid']))
        if os.path.ismount(data_dir):
            raise RecoveryError('%s is a mount point and cannot be moved aside: mount the parent directory '
                                'instead. Nothing was changed' % data_dir)
        spaces = run(admin, "SELECT spcname FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')")
        if spaces:
            raise RecoveryError('serverid %d has tablespaces (%s): online recovery copies only the data directory; '
                                'recover offline. Nothing was changed'
                                % (self.source['serverid'], ', '.join(row['spcname'] for row in spaces)))
        needed = run(admin, 'SELECT sum(pg_database_size(oid))::bigint AS size FROM pg_database')[0]['size']
        needed = int(needed * 1.1) + (256 << 20)  # WAL written meanwhile
        free = shutil.disk_usage(os.path.dirname(data_dir)).free
        if free < needed:
            raise RecoveryError('%s has %d MB free but the copy needs about %d MB (the old data directory stays '
                                'until cleanup): free some space. Nothing was changed'
                                % (os.path.dirname(data_dir), free >> 20, needed >> 20))
        return needed

    def base(self):
        src_node, admin = self.connect(self.source, 'postgres')
        needed = self.check_base(admin)
        slot = 'pgforest_recovery_%d' % self.target['serverid']
        if self.check_mode:
            self.say('would stop the server of %s, copy serverid %d (about %d MB, user databases %s) into it and '
                     'start it as a standby' % (self.server.data_dir, self.source['serverid'], needed >> 20,
                                                ', '.join(self.userdbs)))
            return
        polled = {}
        if self.poll is not None:  # refuse before anything changes where drivers cannot be told
            polled = self.mngdb_conns(self.source)
            polled.update(self.answering_mngdb_conns(self.target))
            self.poll.check(polled)
        self.drop_slot(admin, slot, leftover=True)
        state = dict(stage=STARTED, source=self.source, target=self.target, slot=slot, userdbs=self.userdbs,
                     replaced_databases=self.replaced,
                     data_dir=self.server.data_dir, was_running=self.server.running(), moved_aside=False,
                     source_view_of_target=self.source_view_of_target())
        self.workspace.create()
        self.state = state
        self.workspace.save(self.state)
        if self.poll is not None:  # drivers take the short interval while the copy runs
            self.poll.lower(polled)
        if self.server.stop():
            self.say('stopped the server of %s' % self.server.data_dir)
        self.move_aside()
        self.workspace.write_passfile(src_node)
        self.base_backup(src_node, slot)
        self.put_back_own_config(standby=src_node)
        self.server.start()
        self.wait_streaming(admin)
        self.state['stage'] = phase_named('base').leaves
        self.workspace.save(self.state)

    def source_view_of_target(self):
        """{management database: udb_validity of the target there}, on the source (a cancel puts it back)."""
        seen = {}
        for userdb in self.userdbs:
            _node, mngdb = self.connect(self.source, mngdb_name(userdb))
            rows = run(mngdb, 'SELECT udb_validity FROM server_info WHERE serverid = %s', [self.target['serverid']])
            seen[mngdb_name(userdb)] = rows[0]['udb_validity'] if rows else None
        return seen

    def move_aside(self):
        for name in KEEP_FILES:
            path = os.path.join(self.server.data_dir, name)
            if os.path.isfile(path):
                shutil.copy2(path, os.path.join(self.workspace.conf_dir, name))
        os.rename(self.server.data_dir, self.workspace.old_data)
        self.state['moved_aside'] = True
        self.workspace.save(self.state)
        self.say('moved the old data directory aside to %s (its configuration files saved)'
                 % self.workspace.old_data)

    def base_backup(self, src_node, slot):
        argv = [self.server.tool('pg_basebackup'), '--pgdata=' + self.server.data_dir, '--wal-method=stream',
                '--checkpoint=fast', '--create-slot', '--slot=' + slot, '--progress', '--no-password',
                '--dbname=' + src_node.conninfo_string('postgres', bulk=True,
                                                       application_name='pgforest_basebackup')]
        if self.p['max_rate']:
            argv.append('--max-rate=' + self.p['max_rate'])
        env = dict(os.environ, PGPASSFILE=self.workspace.passfile)
        env.pop('PGPASSWORD', None)
        self.say('pg_basebackup from serverid %d (slot %s)' % (self.source['serverid'], slot))
        started = time.monotonic()
        # A process group of its own: pg_basebackup forks a WAL streamer, which would outlive a killed
        # parent and hold the pipe open; the group goes as one (kill_basebackup).
        process = subprocess.Popen(self.server.as_user(argv), env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, start_new_session=True)
        self.basebackup = process
        last = self.follow_progress(process)
        if process.wait() != 0:
            raise RecoveryError('pg_basebackup from serverid %d failed (exit %s): %s'
                                % (self.source['serverid'], process.returncode, last[-600:]))
        self.basebackup = None  # done, and its group with it
        self.bytes_copied = tree_size(self.server.data_dir)
        seconds = time.monotonic() - started
        self.say('base backup done: %d MB in %.1fs (%.0f MB/s)'
                 % (self.bytes_copied >> 20, seconds, (self.bytes_copied >> 20) / max(seconds, 0.001)))

    def follow_progress(self, process, every=10.0):
        """Log pg_basebackup's --progress line every `every` seconds; return its last output."""
        tail = ['']
        shown = [time.monotonic()]

        def reader():
            buffer = b''
            for chunk in iter(lambda: process.stderr.read1(4096), b''):
                buffer = (buffer + chunk)[-4096:]
                parts = [part for part in buffer.replace(b'\r', b'\n').split(b'\n') if part.strip()]
                if parts:
                    tail[0] = parts[-1].decode('utf-8', 'replace').strip()
                    if 'kB' in tail[0] and time.monotonic() - shown[0] >= every:
                        shown[0] = time.monotonic()
                        self.say('pg_basebackup: %s' % tail[0])
            tail.append(buffer.decode('utf-8', 'replace'))

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        ended = None
        while thread.is_alive():
            thread.join(0.5)
            if process.poll() is not None:
                ended = ended or time.monotonic()
                if time.monotonic() - ended > 5:  # the main process is gone but a child holds stderr
                    self.kill_basebackup()
        return tail[-1].strip()

    def put_back_own_config(self, standby=None):
        """T's own files over the source's copies; with `standby`, stream from it."""
        for name in sorted(os.listdir(self.workspace.conf_dir)):
            destination = os.path.join(self.server.data_dir, name)
            shutil.copy2(os.path.join(self.workspace.conf_dir, name), destination)
            self.server.own(destination, 0o600)
        if standby is None:
            return
        conninfo = libpq_conninfo(host=standby.host, port=standby.port, user=standby.user,
                                  passfile=self.workspace.passfile, application_name=APPLICATION,
                                  connect_timeout=standby.connect_timeout, **standby.tls_keywords())
        auto_conf = os.path.join(self.server.data_dir, 'postgresql.auto.conf')
        with open(auto_conf, 'a') as handle:
            handle.write('%s\nprimary_conninfo = \'%s\'\nprimary_slot_name = \'%s\'\n'
                         % (STANDBY_MARK, conninfo.replace("'", "''"), self.state['slot']))
        self.server.own(auto_conf, 0o600)
        signal_file = os.path.join(self.server.data_dir, 'standby.signal')
        open(signal_file, 'w').close()
        self.server.own(signal_file, 0o600)
        self.say('own configuration files back in place; starting as a standby of serverid %d'
                 % self.source['serverid'])

    def wait_streaming(self, admin):
        deadline = time.monotonic() + self.p['start_timeout']
        while True:
            rows = run(admin, 'SELECT state FROM pg_stat_replication WHERE application_name = %s', [APPLICATION])
            if rows and rows[0]['state'] == 'streaming':
                self.say('serverid %d streams from serverid %d' % (self.target['serverid'], self.source['serverid']))
                return
            if time.monotonic() > deadline:
                raise RecoveryError('serverid %d started as a standby but does not stream from serverid %d after %ss '
                                    '(see %s)' % (self.target['serverid'], self.source['serverid'],
                                                  self.p['start_timeout'], self.server.log_file))
            time.sleep(0.2)

    # --- cut: promotion inside the write freeze ---------------------------------------------
    def cut(self):
        _s, src_admin = self.connect(self.source, 'postgres')
        src_users = dict((userdb, self.connect(self.source, userdb)[1]) for userdb in self.userdbs)
        src_mngdbs = dict((userdb, self.connect(self.source, mngdb_name(userdb))[1]) for userdb in self.userdbs)
        _t, tgt_admin = self.connect(self.target, 'postgres')
        if not run(tgt_admin, 'SELECT pg_is_in_recovery() AS standby')[0]['standby']:
            raise RecoveryError('serverid %d is not a standby any more: someone promoted it outside the recovery'
                                % self.target['serverid'])
        if self.poll is not None:  # lowered by the base phase (or again now, if someone put it back)
            labelled = dict(('serverid %d %s' % (self.source['serverid'], mngdb_name(userdb)), conn)
                            for userdb, conn in src_mngdbs.items())
            self.poll.lower(labelled)
            self.poll.wait_for_drivers(labelled)
        self.catch_up(src_admin, tgt_admin)
        unlogged = []  # (userdb, tables, bulk connection to the source)
        for userdb, src_user in src_users.items():
            tables = dbsync.unlogged_tables(src_user)
            if tables:
                unlogged.append((userdb, tables, self.connect(self.source, userdb, bulk=True)[1]))
                self.say('%s: %d unlogged table(s), %d MB: a physical copy leaves them empty, so they are copied '
                         'inside the write freeze: %s' % (userdb, len(tables), sum(t['bytes'] for t in tables) >> 20,
                                                          ', '.join(dbsync.table_name(t) for t in tables)))
        notice = self.p['notice_wait']
        if notice is None:  # every database's drivers must notice: the longest poll interval
            notice = freeze_notice(src_mngdbs.values())
        self.cut_report['notice_seconds'] = notice
        self.say('write freeze: serverid %d to 0 in %s, waiting %.1fs for drivers to notice'
                 % (self.target['serverid'], ', '.join(mngdb_name(userdb) for userdb in self.userdbs), notice))
        freeze = Quiesce(dict(('serverid %d %s' % (self.source['serverid'], mngdb_name(userdb)), conn)
                              for userdb, conn in src_mngdbs.items()),
                         list(src_users.values()), self.target['serverid'],
                         notice, self.p['idle_wait_timeout'], final_validity=1, watch=src_admin, say=self.say)
        try:
            freeze.run(lambda frozen: self.promote_in_freeze(frozen, src_admin, src_users, src_mngdbs, tgt_admin,
                                                             unlogged))
        finally:
            self.freeze_window = self.cut_report['freeze_window'] = freeze.window
            self.cut_report.update(waited_before_freeze=round(freeze.waited_before, 3),
                                   freezes_undone=[undone['window'] for undone in freeze.undone])
        self.state['stage'] = phase_named('cut').leaves
        self.workspace.save(self.state)
        self.say('write freeze released after %ss: serverid %d is valid (1) on both nodes'
                 % (self.freeze_window, self.target['serverid']))
        failures = self.put_back_poll_interval(strict=False)  # the cleanup tries again
        if failures:
            self.cut_report['read_duration_not_put_back'] = failures

    def lag(self, src_admin, tgt_admin):
        replayed = run(tgt_admin, "SELECT coalesce(pg_last_wal_replay_lsn(), '0/0')::text AS lsn")[0]['lsn']
        return int(run(src_admin, 'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)::bigint AS lag',
                       [replayed])[0]['lag'])

    def catch_up(self, src_admin, tgt_admin, close_enough=1 << 20):
        """Before freezing: let the standby come within a megabyte of the source."""
        deadline = time.monotonic() + self.p['catch_up_timeout']
        lag = self.lag(src_admin, tgt_admin)
        self.cut_report['lag_before_freeze'] = lag
        while lag > close_enough:
            if time.monotonic() > deadline:
                raise RecoveryError('serverid %d is still %d MB behind serverid %d after %ss: the source writes '
                                    'faster than the standby replays; retry when the load is lower or raise '
                                    'catch_up_timeout' % (self.target['serverid'], lag >> 20,
                                                          self.source['serverid'], self.p['catch_up_timeout']))
            time.sleep(0.2)
            lag = self.lag(src_admin, tgt_admin)

    def copy_unlogged(self, userdb, src_bulk, tables):
        """Inside the freeze (the source is not written): the contents of the unlogged
        tables, which the promoted copy has empty, in one transaction."""
        started = time.monotonic()
        rows = 0
        _t, tgt_user = self.connect(self.target, userdb, bulk=True)
        with tgt_user.transaction():
            run(tgt_user, 'SET LOCAL session_replication_role = replica', action='disable triggers')
            for table in tables:
                run(tgt_user, dbsync.sql.SQL('DELETE FROM {}').format(dbsync.ident(table['schema'], table['name'])),
                    action='empty unlogged table %s' % dbsync.table_name(table))
                rows += dbsync.copy_relation(src_bulk, tgt_user, table)[0]
        report = self.cut_report
        report.update(unlogged_tables=report.get('unlogged_tables', 0) + len(tables),
                      unlogged_rows=report.get('unlogged_rows', 0) + rows,
                      unlogged_seconds=round(report.get('unlogged_seconds', 0) + time.monotonic() - started, 3))
        self.say('%s: copied %d rows of %d unlogged table(s) in %.3fs'
                 % (userdb, rows, len(tables), time.monotonic() - started))

    def promote_in_freeze(self, freeze, src_admin, src_users, src_mngdbs, tgt_admin, unlogged=()):
        before = freeze.own_xid  # taken by the idle check, just before its last look
        position = run(src_admin, WAL_POSITION_SQL)[0]
        self.cut_report['lag_at_cut'] = self.lag(src_admin, tgt_admin)
        self.wait_replayed(tgt_admin, position['lsn'])
        promoted = time.monotonic()
        if not run(tgt_admin, 'SELECT pg_promote(true, %s) AS done', [self.p['start_timeout']])[0]['done']:
            raise RecoveryError('serverid %d did not finish promotion within %ss (see %s)'
                                % (self.target['serverid'], self.p['start_timeout'], self.server.log_file))
        self.cut_report['promote_seconds'] = round(time.monotonic() - promoted, 3)
        after = run(src_admin, OWN_XID_SQL, action='take a transaction id')[0]['xid']
        self.check_no_forest_write(src_admin, src_users, src_mngdbs, before, after, position['lsn'])
        copied = 0
        tgt_mngdbs = []
        for userdb, src_user in src_users.items():
            _t, tgt_user = self.connect(self.target, userdb)
            _t, tgt_mngdb = self.connect(self.target, mngdb_name(userdb))
            copied += self.copy_sequences(src_user, tgt_user) + self.copy_sequences(src_mngdbs[userdb], tgt_mngdb)
            tgt_mngdbs.append(tgt_mngdb)
        self.cut_report['sequences_copied'] = copied
        for userdb, tables, src_bulk in unlogged:
            self.copy_unlogged(userdb, src_bulk, tables)
        for tgt_mngdb in tgt_mngdbs:
            set_validity(tgt_mngdb, self.target['serverid'], 1)
        for src_mngdb, tgt_mngdb in zip(src_mngdbs.values(), tgt_mngdbs):  # the pair accepts the copy as this node
            accept_node(self.target['serverid'], tgt_mngdb, [src_mngdb, tgt_mngdb])

    def check_no_forest_write(self, src_admin, src_users, src_mngdbs, before, after, position):
        """Other transactions than ours may have taken ids on the source between the idle check and
        the promotion (freeze_writes): a write of user data into a forest database after the
        position the target was promoted at is lost on the target (refused, rolled back); statistics,
        vacuum and writes elsewhere (postgres, or a database the copy replaces as asked) are not."""
        if after == before + 1:
            return
        lost = 'a transaction wrote to serverid %d during the write freeze (transaction ids %d to %d), after the ' \
               'position serverid %d had replayed' % (self.source['serverid'], before + 1, after - 1,
                                                      self.target['serverid'])
        cause = ': a client ignores udb_validity=0 (not a PostgresForest driver, or its notice time is longer ' \
                'than notice_wait)'
        conns = dict(src_users)
        conns.update((mngdb_name(userdb), conn) for userdb, conn in src_mngdbs.items())
        try:
            oids = dict((row['datname'], row['oid']) for row in run(
                src_admin, 'SELECT oid::int8 AS oid, datname FROM pg_database WHERE datname = ANY(%s)', [list(conns)]))
            written, harmless, still_open = freeze_writes.look(
                src_admin, before, after, position, dict((oids[name], (name, conn)) for name, conn in conns.items()))
        except (ForestPgError, freeze_writes.FreezeWritesError) as exc:
            raise RecoveryError('%s%s (could not read the WAL to tell what they wrote: %s)' % (lost, cause, exc))
        if written:
            raise RecoveryError('%s, into %s%s' % (lost, freeze_writes.describe_lost(written), cause))
        if still_open:
            raise RecoveryError('%s: a transaction is still open in a forest database and may write there yet: %s%s'
                                % (lost, freeze_writes.describe_open(still_open), cause))
        self.cut_report['other_writes_in_freeze'] = True
        self.cut_report['writes_not_lost'] = harmless
        self.say('%d other transaction(s) took an id on serverid %d during the freeze; none changed user data of a '
                 'forest database (statistics, vacuum, or postgres%s, which the copy replaces)'
                 % (after - before - 1, self.source['serverid'], ''.join(' or ' + name for name in self.replaced)))

    def wait_replayed(self, tgt_admin, lsn):
        started = time.monotonic()
        while not run(tgt_admin, 'SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn AS done', [lsn])[0]['done']:
            if time.monotonic() - started > self.p['replay_wait_timeout']:
                raise RecoveryError('serverid %d did not replay up to %s within %ss inside the write freeze'
                                    % (self.target['serverid'], lsn, self.p['replay_wait_timeout']))
            time.sleep(0.01)
        self.cut_report['replay_wait_seconds'] = round(time.monotonic() - started, 3)

    @staticmethod
    def copy_sequences(source, target):
        """WAL logs sequences ahead: a promoted copy would hand out other ids than the source."""
        sequences = dbsync.read_sequences(source)
        for seq in sequences.values():
            dbsync.set_sequence(target, seq)
        return len(sequences)

    # --- cleanup ---------------------------------------------------------------------------
    def cleanup_phase(self):
        try:
            self.cleanup()
        except Exception as exc:  # the node serves already: never roll back now
            raise RecoveryError('serverid %d is recovered and valid, but the cleanup did not finish: %s. Run '
                                'phase=cleanup again' % (self.target['serverid'], exc))

    def cleanup(self):
        _s, src_admin = self.connect(self.source, 'postgres')
        self.drop_slot(src_admin, self.state['slot'])
        self.put_back_own_config()
        for leftover in ('standby.signal', 'recovery.signal'):
            path = os.path.join(self.server.data_dir, leftover)
            if os.path.exists(path):
                os.remove(path)
        if not self.server.running():  # it crashed or was stopped after the cut: it is a primary now
            self.server.start()
            self.say('started the server of %s (it was not running)' % self.server.data_dir)
        self.put_back_poll_interval(strict=True)
        _t, tgt_admin = self.connect(self.target, 'postgres')
        run(tgt_admin, 'SELECT pg_reload_conf()')
        self.wait_standby_settings_gone(tgt_admin)
        shutil.rmtree(self.workspace.old_data, ignore_errors=True)
        self.workspace.remove()
        self.state['stage'] = phase_named('cleanup').leaves
        settings = dict((row['name'], row['setting']) for row in run(tgt_admin, OWN_SETTINGS_SQL))
        self.cleanup_report = dict(target_settings=settings)
        self.say('cleanup done: slot dropped, standby settings and old data directory removed; serverid %d runs '
                 'with its own configuration (lock_timeout %s)' % (self.target['serverid'], settings.get('lock_timeout')))

    def wait_standby_settings_gone(self, tgt_admin, timeout=10):
        deadline = time.monotonic() + timeout
        while run(tgt_admin, "SELECT setting FROM pg_settings WHERE name = 'primary_conninfo'")[0]['setting']:
            if time.monotonic() > deadline:
                raise RecoveryError('serverid %d still has primary_conninfo set after a reload' %
                                    self.target['serverid'])
            time.sleep(0.1)

    def drop_slot(self, admin, slot, leftover=False, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            rows = run(admin, 'SELECT active FROM pg_replication_slots WHERE slot_name = %s', [slot])
            if not rows:
                return
            if not rows[0]['active']:
                run(admin, 'SELECT pg_drop_replication_slot(%s)', [slot])
                self.say('dropped %sreplication slot %s on serverid %d'
                         % ('the leftover ' if leftover else '', slot, self.source['serverid']))
                return
            if time.monotonic() > deadline:
                raise RecoveryError('replication slot %s on serverid %d is still in use by a standby: stop it, then '
                                    'run this again' % (slot, self.source['serverid']))
            time.sleep(0.2)

    # --- cancel and rollback --------------------------------------------------------------
    def cancel(self):
        self.local_server(None)
        self.state = self.workspace.load()
        if not self.state:
            self.say('no online recovery in progress for %s: nothing to cancel' % self.server.data_dir)
            return self.result(changed=False)
        if self.state['stage'] == phase_named('cut').leaves:
            raise RecoveryError('the cut is done: serverid %d is valid and the applications write to it, so '
                                'cancelling would lose their writes; finish with phase=cleanup'
                                % self.state['target']['serverid'])
        self.source, self.target = self.state['source'], self.state['target']
        self.userdbs = self.state.get('userdbs') or [self.userdb]
        self.replaced = self.state.get('replaced_databases') or []
        try:
            self.lock_pair()
        except ForestPgError as exc:
            self.say('serverid %d does not answer (%s): cancelling here without the pair lock'
                     % (self.source['serverid'], exc))
        if not self.check_mode:
            self.timed('cancel', self.rollback)
        return self.result()

    def rollback(self):
        """Back to the state before the recovery; every step may be repeated."""
        state = self.state
        if not state.get('target_restored'):
            self.kill_basebackup()
            if self.server.stop():
                self.say('stopped the server of %s' % self.server.data_dir)
            if state.get('moved_aside') and os.path.exists(self.workspace.old_data):
                if os.path.exists(self.server.data_dir):
                    shutil.rmtree(self.server.data_dir)
                os.rename(self.workspace.old_data, self.server.data_dir)
                self.say('the old data directory is back in %s' % self.server.data_dir)
            if state.get('was_running'):
                self.server.start()
                self.say('started the server of %s again, as before' % self.server.data_dir)
            state['target_restored'] = True
            state['stage'] = CANCEL_PENDING
            self.workspace.save(state)
        self.reset_source()
        if self.poll is not None:  # the target's own (old) management databases, if it lowered them
            self.poll.put_back(self.answering_mngdb_conns(self.target), strict=False)
        self.workspace.remove()
        state['stage'] = CANCELLED
        self.say('cancelled: serverid %d as before the recovery, no slot on serverid %d'
                 % (self.target['serverid'], self.source['serverid']))

    def views_before(self):
        """{management database: the target's validity there before the recovery} from the state file
        (a state file of an earlier version holds one value, for the module's own database)."""
        before = self.state.get('source_view_of_target')
        return before if isinstance(before, dict) else {self.mngdb: before}

    def kill_basebackup(self):
        """pg_basebackup and what it forked (its process group), if it was started and not yet killed."""
        if self.basebackup is None:
            return
        try:
            os.killpg(self.basebackup.pid, signal.SIGKILL)
        except OSError:  # already gone
            pass
        self.basebackup.wait()

    def reset_source(self):
        """Slot dropped and the freeze's 0 undone on the source; retried while it does not answer."""
        deadline = time.monotonic() + ROLLBACK_RETRY_SECONDS
        while True:
            try:
                _s, admin = self.connect(self.source, 'postgres')
                self.drop_slot(admin, self.state['slot'])
                for name, before in self.views_before().items():
                    _s, mngdb = self.connect(self.source, name)
                    current = run(mngdb, 'SELECT udb_validity FROM server_info WHERE serverid = %s',
                                  [self.target['serverid']])
                    if current and current[0]['udb_validity'] == 0 and before is not None:
                        set_validity(mngdb, self.target['serverid'], before)
                        self.say('udb_validity of serverid %d set back to %s in %s on serverid %d'
                                 % (self.target['serverid'], before, name, self.source['serverid']))
                if self.poll is not None:
                    self.poll.put_back(self.mngdb_conns(self.source))
                return
            except (ForestPgError, RecoveryError, PollIntervalError) as exc:
                close_all(self.conns)
                self.conns = []
                if time.monotonic() > deadline:
                    raise RecoveryError('serverid %d is back on its old data directory, but serverid %d did not '
                                        'answer for %ss, so its replication slot %s, the write freeze and a lowered '
                                        'mngdb_read_duration may remain (%s). When it answers, run phase=cancel again'
                                        % (self.target['serverid'], self.source['serverid'],
                                           ROLLBACK_RETRY_SECONDS, self.state['slot'], exc))
                time.sleep(1)

    # --- result ------------------------------------------------------------------------------
    def failure_result(self):
        """What a failed run reports: its steps, and the cut's figures so far (freezes undone, waits)."""
        return dict(super().failure_result(), cut=self.cut_report)

    def result(self, changed=None):
        state = self.state or {}
        return dict(mode='online', phase=self.p['phase'], changed=bool(state) if changed is None else changed,
                    stage=state.get('stage', 'none'),
                    source=self.source and self.source['serverid'], target=self.target and self.target['serverid'],
                    userdbs=state.get('userdbs', self.userdbs),
                    phases=self.phases, bytes_copied=self.bytes_copied, freeze_window=self.freeze_window,
                    read_duration=self._poll.report if self._poll is not None else None,
                    cut=self.cut_report, cleanup=self.cleanup_report, progress=self.progress,
                    seconds=round(time.monotonic() - self.started, 3))
