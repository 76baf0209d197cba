# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Physical backups (one run per node, on its host): the node's server is stopped, its data
directory copied, the server started again; the restore stops it, swaps in a copy of the
backup's data directory and starts it."""

from __future__ import annotations

import os
import shutil
import time

from . import backup
from .backup_jobs import BackupJob
from .status_read import read_view
from .status_rules import merge
from .divergence import row_counts
from .forest_pg import Node
from .local_server import LocalServer, ProgramsMissing
from .pg_platform import data_dir_major, physical_restore_refusal
from .mngdb import refuse_if_applications
from .pair_choice import this_node


class PhysicalJob(BackupJob):
    """One node's server, on this host."""

    def __init__(self, params, options, check_mode=False, log=None):
        super(PhysicalJob, self).__init__(params, options, check_mode, log)
        self.here = Node.from_params(params)  # this host's node, as the module reaches it

    def server(self, major=None):
        return LocalServer.from_params(self.p, major)

    def local_node(self):
        """This host's node (serverid, validity), as its own view names it (pair_choice.this_node)."""
        status = merge([read_view(self.here, self.mngdb, 0)])
        return this_node(status, '%s:%s' % (self.here.host, self.here.port))

    def refuse_if_applications(self, node_dict):
        """An admin connection to the node, once no application is connected."""
        _node, conn = self.connect(node_dict, 'postgres')
        refuse_if_applications([('serverid %d' % node_dict['serverid'], conn)], [self.userdb, self.mngdb],
                               backup.BackupError, 'a physical backup or restore stops the server',
                               'Stop the applications first')
        return conn

    def counts(self, node_dict):
        counts = {}
        for key, dbname in (('userdb', self.userdb), ('mngdb', self.mngdb)):
            _node, conn = self.connect(node_dict, dbname)
            counts[key] = dict(name=dbname, tables=row_counts(conn))
            conn.close()
        return counts


class PhysicalBackup(PhysicalJob):
    def run(self):
        node = self.local_node()
        sid = node['serverid']
        if node['validity'] != 1 and not self.options.allow_invalid_source:
            raise backup.BackupError('serverid %d is %s: a physical backup of it would not restore to a valid pair. '
                                     'Recover it first, or set allow_invalid_source=true' % (sid, node['validity_name']))
        version = self.refuse_if_applications(node).info.server_version
        server = self.server()
        if os.listdir(os.path.join(server.data_dir, 'pg_tblspc')):
            raise backup.BackupError('%s uses tablespaces, which a physical backup does not follow: take a logical '
                                     'backup' % server.data_dir)
        name = self.options.name or backup.backup_name('physical')
        final = os.path.join(self.backup_dir(), name, backup.part_dir(sid))
        if os.path.exists(final):
            raise backup.BackupError('%s exists already: choose another name' % final)
        self.say('physical backup %s of serverid %d (%s)' % (name, sid, server.data_dir))
        if self.check_mode:
            return self.result(name, final, sid, None)
        databases = self.counts(node)
        self.close()
        partial = final + '.partial'
        backup.make_private_dir(os.path.dirname(final))
        backup.remove_tree(partial)
        try:
            self.timed('copy', self.copy, server, partial)
            files = self.timed('checksums', backup.file_checksums, partial)
            manifest = dict(format=backup.FORMAT, kind='physical', name=name, created=backup.utc_now(),
                            node=dict((k, node[k]) for k in ('serverid', 'host', 'port', 'validity')),
                            data_dir=server.data_dir, server_version=version, databases=databases,
                            files=files, total_bytes=sum(f['size'] for f in files.values()))
            backup.write_manifest(partial, manifest)
            os.rename(partial, final)
        except BaseException:
            backup.remove_tree(partial)
            raise
        removed = backup.prune(self.backup_dir(), self.options.keep, 'physical')
        return self.result(name, final, sid, manifest, removed)

    def copy(self, server, partial):
        """Stop, copy the data directory, start again (also when the copy failed)."""
        os.mkdir(partial, 0o700)
        server.stop()
        self.say('server stopped')
        try:
            shutil.copytree(server.data_dir, os.path.join(partial, 'data'),
                            ignore=shutil.ignore_patterns('postmaster.pid', 'postmaster.opts'))
        finally:
            server.start()
            self.say('server started')

    def result(self, name, path, sid, manifest, removed=()):
        return dict(changed=True, kind='physical', name=name, backup=path, source=sid,
                    removed=list(removed), total_bytes=manifest and manifest['total_bytes'],
                    row_counts=manifest and dict((k, v['tables']) for k, v in manifest['databases'].items()),
                    phases=self.phases, progress=self.progress, seconds=round(time.monotonic() - self.started, 3))


class PhysicalRestore(PhysicalJob):
    def run(self):
        sid = self.options.serverid
        if sid is None:
            raise backup.BackupError('a physical restore needs serverid (this host\'s forest_serverid): each node gets '
                                     'its own part of the backup')
        path = backup.resolve(self.options.backup, self.options.backup_dir)
        part = os.path.join(path, backup.part_dir(sid))
        manifest = backup.read_manifest(part)
        node = dict(serverid=sid, host=self.here.host, port=self.here.port)
        if (manifest['node']['host'], manifest['node']['port']) != (node['host'], node['port']):
            raise backup.BackupError('the part of serverid %d was taken from %s:%s, not %s:%s: restore it on its own '
                                     'node (nothing was changed)' % (sid, manifest['node']['host'],
                                                                     manifest['node']['port'], node['host'], node['port']))
        problems = self.timed('checksums', backup.verify_files, part, manifest['files'])
        if problems:
            raise backup.BackupError('backup %s is damaged, nothing was changed: %s' % (part, '; '.join(problems[:10])))
        # A physical copy runs only on its own major (a host moved to a new major, or its programs missing).
        backup_major = int(manifest['server_version']) // 10000
        try:
            server = self.server(backup_major)
            programs, found = server.bindir, server.major_version()
        except ProgramsMissing:  # said below, with the major it needs
            server, programs, found = None, self.p.get('pg_bindir'), None
        refusal = physical_restore_refusal(sid, backup_major, data_dir_major(self.p['data_dir']) if self.p.get(
            'data_dir') else None, programs, found)
        if refusal:
            raise backup.BackupError(refusal)
        self.refuse_without_confirmation('replaces the data directory of serverid %d' % sid)
        if server.running():
            self.refuse_if_applications(node)
            self.close()
        self.say('restore of %s onto serverid %d (%s)' % (manifest['name'], sid, server.data_dir))
        if self.check_mode:
            return self.result(path, manifest)
        staging = server.data_dir + '.pgforest-restoring'
        self.timed('copy', self.stage, part, staging, server)
        self.timed('swap', self.swap, server, staging)
        problems = []
        for key, counted in self.counts(node).items():
            problems += backup.compare_counts(manifest['databases'][key]['tables'], counted['tables'],
                                              'serverid %d %s' % (sid, counted['name']))
        if problems:
            raise backup.BackupError('serverid %d runs on the restored data directory but its row counts differ from '
                                     'the manifest (the old one is in %s.pgforest-replaced): %s'
                                     % (sid, server.data_dir, '; '.join(problems[:10])))
        if not self.options.keep_replaced:
            backup.remove_tree(server.data_dir + '.pgforest-replaced')
        self.say('row counts equal to the manifest')
        return self.result(path, manifest)

    def stage(self, part, staging, server):
        """A copy of the backup's data directory beside the live one, owned by the server's user."""
        backup.remove_tree(staging)
        shutil.copytree(os.path.join(part, 'data'), staging)
        for folder, dirs, files in os.walk(staging):
            for name in dirs + files:
                os.lchown(os.path.join(folder, name), server.uid, server.gid)
        server.own(staging, 0o700)

    def swap(self, server, staging):
        aside = server.data_dir + '.pgforest-replaced'
        if os.path.exists(aside):
            raise backup.BackupError('%s exists (left by an earlier restore): remove it or move it away, then retry'
                                     % aside)
        server.stop()
        had_one = os.path.exists(server.data_dir)  # both nodes lost: there may be none left
        if had_one:
            os.rename(server.data_dir, aside)
        os.rename(staging, server.data_dir)
        try:
            server.start()
        except BaseException:
            if had_one:
                backup.remove_tree(server.data_dir)
                os.rename(aside, server.data_dir)
                server.start()
            raise
        self.say('server started on the restored data directory')

    def result(self, path, manifest):
        return dict(changed=True, kind='physical', name=manifest['name'], backup=path,
                    restored=[self.options.serverid], created=manifest['created'],
                    row_counts=dict((k, v['tables']) for k, v in manifest['databases'].items()),
                    phases=self.phases, progress=self.progress, seconds=round(time.monotonic() - self.started, 3))
