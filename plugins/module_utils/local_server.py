# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL server of the host a module runs on: its data directory,
binaries and service, driven as its OS user (PostgreSQL refuses to run as root).

Online recovery replaces this server's data directory, so it needs more than a
connection: stop, start, the files around the data directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess

from . import children
from .errors import ForestError
from . import pg_platform


class LocalServerError(ForestError):
    pass


class ProgramsMissing(LocalServerError):
    """The server programs (of the major asked for) are not on this host."""


# --- where node N lives: the one rule (the forest_node role's defaults and the playbooks reach it
# through the filters of plugins/filter/node_layout.py, which import these) ----------------------
DEFAULT_OS_USER = 'postgres'
DEFAULT_SERVICE_MANAGER = 'pg_ctl'


def node_base_dir(serverid):
    """/var/lib/pgforest/node<N>: the data directory, sockets and log of node N."""
    return '/var/lib/pgforest/node%d' % serverid


def node_data_dir(base_dir):
    return '%s/data' % base_dir


def node_socket_dir(base_dir):
    return '%s/run' % base_dir


def node_log_file(base_dir):
    return '%s/postgresql.log' % base_dir


def node_tls_dir(base_dir):
    """The node's TLS files (forest_node role, forest_tls): ca.crt, server.crt, server.key."""
    return '%s/tls' % base_dir


def node_tls_ca_file(base_dir):
    return '%s/ca.crt' % node_tls_dir(base_dir)


def node_service_name(serverid):
    """pgforest-node<N>: the systemd unit of node N."""
    return 'pgforest-node%d' % serverid


def local_server_argument_spec():
    """Options of the modules that drive this host's server (doc fragment pgforest.cluster.local_server)."""
    return dict(
        data_dir=dict(type='path'),
        pg_bindir=dict(type='path'),
        os_user=dict(type='str', default=DEFAULT_OS_USER),
        log_file=dict(type='path'),
        service_manager=dict(type='str', choices=['pg_ctl', 'systemd'], default=DEFAULT_SERVICE_MANAGER),
        service_name=dict(type='str'),
        start_timeout=dict(type='int', default=60),
    )


class LocalServer(object):
    """One node's server on this host, managed by pg_ctl or by a systemd unit."""

    @classmethod
    def from_params(cls, params, major=None):
        """From the options of local_server_argument_spec; major: the server version its binaries must run
        (None: the data directory's, else the newest installed)."""
        return cls(params['data_dir'], params['pg_bindir'], params['os_user'], params['log_file'],
                   params['service_manager'], params['service_name'], params['start_timeout'], major)

    def __init__(self, data_dir, bindir=None, os_user=DEFAULT_OS_USER, log_file=None,
                 service_manager=DEFAULT_SERVICE_MANAGER, service_name=None, start_timeout=60, major=None):
        self.data_dir = os.path.abspath(data_dir)
        self.os_user = os_user
        # A host in the middle of an upgrade has two majors installed: the data directory runs only on its own.
        self.bindir = bindir or find_bindir(major if major is not None else pg_platform.data_dir_major(self.data_dir))
        self.log_file = log_file or node_log_file(os.path.dirname(self.data_dir))
        self.service_manager = service_manager
        self.service_name = service_name
        self.start_timeout = int(start_timeout)
        try:
            self.uid, self.gid = pwd.getpwnam(os_user)[2:4]
        except KeyError:
            raise LocalServerError('OS user %r does not exist on this host: set os_user to the user that owns '
                                   'the data directory' % os_user)
        if service_manager == 'systemd' and not service_name:
            raise LocalServerError('service_manager=systemd needs service_name (the unit that runs this node)')

    # --- running commands as the server's OS user ----------------------------------
    def as_user(self, argv):
        if os.geteuid() == self.uid:
            return argv
        if os.geteuid() != 0:
            raise LocalServerError('run this as root (become: true) or as %s: the server\'s files belong to %s'
                                   % (self.os_user, self.os_user))
        return ['runuser', '-u', self.os_user, '--'] + argv

    def run(self, argv, what, env=None, timeout=None, as_server_user=True):
        argv = self.as_user(argv) if as_server_user else argv
        try:
            done = children.run(argv, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LocalServerError('%s did not finish within %ss' % (what, timeout))
        except OSError as exc:
            raise LocalServerError('%s: cannot run %s: %s' % (what, argv[0], exc))
        return done

    def tool(self, name):
        path = os.path.join(self.bindir, name)
        if not os.access(path, os.X_OK):
            raise ProgramsMissing('%s not found in %s: install the PostgreSQL server package or set pg_bindir'
                                  % (name, self.bindir))
        return path

    def major_version(self):
        """Major version of the binaries here (15), to match the source server."""
        out = self.run([self.tool('postgres'), '--version'], 'postgres --version', as_server_user=False).stdout
        try:
            return int(out.split()[-1].split('.')[0])
        except (IndexError, ValueError):
            raise LocalServerError('cannot read the version of %s: %r' % (self.tool('postgres'), out))

    # --- state ------------------------------------------------------------------------
    def initialized(self):
        return os.path.exists(os.path.join(self.data_dir, 'PG_VERSION'))

    def running(self):
        if self.service_manager == 'systemd':
            return self.run(['systemctl', 'is-active', '--quiet', self.service_name], 'systemctl is-active',
                            as_server_user=False).returncode == 0
        if not self.initialized():
            return False
        return self.run([self.tool('pg_ctl'), 'status', '--pgdata=' + self.data_dir], 'pg_ctl status').returncode == 0

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.data_dir, 'postmaster.pid')) as handle:
                return int(handle.readline().strip())
        except (OSError, ValueError):
            return None

    # --- stop and start -------------------------------------------------------------
    def stop(self):
        """Stop the server: fast, else immediate; a hung (SIGSTOPped) postmaster is woken first."""
        if not self.running():
            return False
        if self.service_manager == 'systemd':
            done = self.run(['systemctl', 'stop', self.service_name], 'systemctl stop', as_server_user=False,
                            timeout=self.start_timeout + 30)
            if done.returncode != 0:
                raise LocalServerError('systemctl stop %s failed: %s' % (self.service_name, done.stderr.strip()))
            return True
        pid = self.postmaster_pid()
        if pid:
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        for mode in ('fast', 'immediate'):
            done = self.run([self.tool('pg_ctl'), 'stop', '--pgdata=' + self.data_dir, '--mode=' + mode, '--wait',
                             '--timeout=%d' % self.start_timeout], 'pg_ctl stop', timeout=self.start_timeout + 10)
            # A shutdown already under way (an earlier stop's, interrupted by Ctrl-C) can end between the
            # check above and pg_ctl's: "PID file does not exist" then means stopped, not a failure.
            if done.returncode == 0 or not self.running():
                return True
        raise LocalServerError('cannot stop the server of %s: %s' % (self.data_dir, done.stderr.strip()))

    def start(self):
        if self.service_manager == 'systemd':
            done = self.run(['systemctl', 'start', self.service_name], 'systemctl start', as_server_user=False,
                            timeout=self.start_timeout + 30)
        else:
            done = self.run([self.tool('pg_ctl'), 'start', '--pgdata=' + self.data_dir, '--log=' + self.log_file,
                             '--wait', '--timeout=%d' % self.start_timeout], 'pg_ctl start',
                            timeout=self.start_timeout + 10)
        if done.returncode != 0:
            raise LocalServerError('the server of %s did not start: %s (see %s)'
                                   % (self.data_dir, (done.stderr or done.stdout).strip()[-400:], self.log_file))

    # --- files ----------------------------------------------------------------------------
    def own(self, path, mode):
        """Give a file or directory to the server's OS user with `mode`."""
        os.chown(path, self.uid, self.gid)
        os.chmod(path, mode)

    def write_private(self, path, text):
        """A file only the server's OS user can read (mode 0600), written before anything is in it."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            if os.geteuid() == 0:
                os.fchown(fd, self.uid, self.gid)
            os.write(fd, text.encode('utf-8'))
        finally:
            os.close(fd)


def find_bindir(major=None):
    """/usr/lib/postgresql/<major>/bin (Debian; the newest when major is None), else where pg_ctl is on PATH."""
    versions = sorted(pg_platform.installed_majors(), reverse=True)
    if major is not None:
        versions = [version for version in versions if version == int(major)]
    if versions:
        return pg_platform.bindir(versions[0])
    found = shutil.which('pg_ctl')
    if found:
        return os.path.dirname(found)
    if major is not None:
        raise ProgramsMissing('PostgreSQL %d is not installed here (no %s/pg_ctl, none on PATH): install its server '
                              'package or set pg_bindir' % (int(major), pg_platform.bindir(major)))
    raise ProgramsMissing('pg_ctl not found (no %s/<major>/bin and none on PATH): install the PostgreSQL server '
                          'package or set pg_bindir' % pg_platform.DEBIAN_LIB)


def tree_size(path):
    """Bytes in the files under path (what a base backup copied)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total
