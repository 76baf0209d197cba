# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Logical backups (one run for the pair): pg_dump in directory format (-j) of the user and
management databases from a valid node, in one exported snapshot that the row counts of the
manifest come from too.  The restore loads both databases into fresh databases on both nodes
at once, checks their row counts, and only then swaps them in by renaming: until the swap, a
failure changes nothing."""

from __future__ import annotations

import os
import subprocess
import time

from . import backup, children
from .backup_jobs import BackupJob, run_tool
from .divergence import row_counts
from .forest_pg import ident, run, run_without_monitors, shown_name, sql
from .mngdb import database_exists, refuse_if_applications, parse_udb_url, set_validity
from .node_identity import accept_node
from .pair_choice import backup_source
from .sync_catalog import roles_needed
from .wording import listed

DATABASE_SQL = ('SELECT to_jsonb(d) AS row, pg_get_userbyid(d.datdba) AS owner, pg_encoding_to_char(d.encoding) '
                'AS encoding, pg_database_size(d.oid) AS size FROM pg_database d WHERE datname = %s')
# Databases a restore loads into first, and the old ones between swap and drop (per key).
LOADING = {'userdb': 'pgforest_restore_userdb', 'mngdb': 'pgforest_restore_mngdb'}
REPLACED = {'userdb': 'pgforest_replaced_userdb', 'mngdb': 'pgforest_replaced_mngdb'}
DUMP_DIRS = ('userdb', 'mngdb')


def database_facts(conn, dbname):
    """Owner, encoding, locale and size of a database, and the roles its objects need."""
    found = run(conn, DATABASE_SQL, [dbname], action='read pg_database')[0]
    row = found['row']
    provider = row.get('datlocprovider', 'c')
    return dict(name=dbname, owner=found['owner'], encoding=found['encoding'], collate=row['datcollate'],
                ctype=row['datctype'], locale_provider='icu' if provider == 'i' else 'libc',
                icu_locale=row.get('daticulocale') or row.get('datlocale'), size_bytes=found['size'],
                roles=roles_needed(conn))


class LogicalBackup(BackupJob):
    def run(self):
        status = self.read_status()
        self.source = backup_source(status['nodes'], self.options.source, self.options.allow_invalid_source)
        name = self.options.name or backup.backup_name('logical')
        final = os.path.join(self.backup_dir(), name)
        if os.path.exists(final):
            raise backup.BackupError('%s exists already: choose another name' % final)
        self.say('logical backup %s of serverid %d (%s)'
                 % (name, self.source['serverid'], self.source['validity_name']))
        if self.check_mode:
            return self.result(name, final, None, [])
        backup.make_private_dir(self.backup_dir())
        partial = final + '.partial'
        backup.remove_tree(partial)
        os.mkdir(partial, 0o700)
        try:
            databases = dict((key, self.timed('dump ' + key, self.dump, key, dbname, partial))
                             for key, dbname in (('userdb', self.userdb), ('mngdb', self.mngdb)))
            manifest = self.timed('checksums', self.manifest, name, partial, databases, status)
            os.rename(partial, final)
        except BaseException:
            backup.remove_tree(partial)
            raise
        removed = backup.prune(self.backup_dir(), self.options.keep, 'logical')
        self.say('%d files, %d bytes; retention (keep %s) removed %s' % (
            len(manifest['files']), manifest['total_bytes'], self.options.keep, ', '.join(removed) or 'nothing'))
        return self.result(name, final, manifest, removed)

    def dump(self, key, dbname, folder):
        """pg_dump -Fd -j of dbname, in a snapshot the row counts are read in too."""
        node, conn = self.connect(self.source, dbname, bulk=True)
        run(conn, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
        snapshot = run(conn, 'SELECT pg_export_snapshot() AS id')[0]['id']
        facts = database_facts(conn, dbname)
        facts.update(tables=row_counts(conn), dir=key, server_version=conn.info.server_version)
        run_tool([self.tool('pg_dump'), '--no-password', '--format=directory', '--jobs=%d' % self.options.jobs,
                  '--snapshot=' + snapshot, '--file=' + os.path.join(folder, key),
                  '--dbname=' + node.conninfo_string(dbname, bulk=True)],
                 node.child_env(os.environ), 'pg_dump of %s on serverid %d' % (dbname, self.source['serverid']))
        run(conn, 'COMMIT')
        self.say('%s: %d tables, %d rows dumped from serverid %d' % (
            dbname, len(facts['tables']), sum(facts['tables'].values()), self.source['serverid']))
        return facts

    def manifest(self, name, folder, databases, status):
        files = backup.file_checksums(folder)
        manifest = dict(
            format=backup.FORMAT, kind='logical', name=name, created=backup.utc_now(),
            source=dict((k, self.source[k]) for k in ('serverid', 'host', 'port', 'validity')),
            cluster_state=status['cluster_state'],
            server_info=[dict(serverid=n['serverid'], url=n['url']) for n in status['nodes']],
            server_version=databases['userdb']['server_version'],
            pg_dump=run_tool([self.tool('pg_dump'), '--version'], None, 'pg_dump --version').stdout.strip(),
            databases=databases, files=files, total_bytes=sum(f['size'] for f in files.values()))
        backup.write_manifest(folder, manifest)
        return manifest

    def result(self, name, path, manifest, removed):
        return dict(changed=True, kind='logical', name=name, backup=path,
                    source=self.source['serverid'], removed=removed, phases=self.phases, progress=self.progress,
                    total_bytes=manifest and manifest['total_bytes'],
                    row_counts=manifest and dict((k, v['tables']) for k, v in manifest['databases'].items()),
                    seconds=round(time.monotonic() - self.started, 3))


class LogicalRestore(BackupJob):
    def run(self):
        path = backup.resolve(self.options.backup, self.options.backup_dir)
        manifest = backup.read_manifest(path)
        if manifest['kind'] != 'logical':
            raise backup.BackupError('%s is a %s backup: restore it with kind=physical' % (path, manifest['kind']))
        self.check_files(path, manifest)
        targets = self.targets(manifest)
        self.say('restore of %s (from serverid %d, %s) onto serverid %s' % (
            manifest['name'], manifest['source']['serverid'], manifest['created'],
            ' and '.join(str(t['serverid']) for t in targets)))
        self.refuse_without_confirmation('drops %s and %s on both nodes' % (
            self.userdb, self.mngdb))
        admins = [self.check_target(target, manifest) for target in targets]
        if self.check_mode:
            return self.result(path, manifest, targets)
        try:
            self.timed('load', self.load, targets, admins, path, manifest)
            self.timed('verify', self.verify, targets, manifest)
        except BaseException:
            self.drop(admins, LOADING)
            raise
        self.timed('swap', self.swap, targets, admins)
        try:
            self.timed('validity', self.mark_valid, targets)
            self.drop(admins, REPLACED)
        except Exception as exc:
            raise backup.BackupError('the backup is restored on both nodes, but the last step failed: %s. Set both nodes '
                                     'valid (forest_mngdb serverid=N validity=1) and drop %s on each node by hand'
                                     % (exc, ' and '.join(REPLACED.values())))
        return self.result(path, manifest, targets)

    def check_files(self, path, manifest):
        problems = self.timed('checksums', backup.verify_files, path, manifest['files'])
        if problems:
            raise backup.BackupError('backup %s is damaged, nothing was changed: %s' % (path, '; '.join(problems[:10])))
        self.say('%d files match their SHA-256' % len(manifest['files']))

    def targets(self, manifest):
        """Both nodes of the backup's server_info, which this pair's must equal."""
        backup_urls = sorted((n['serverid'], n['url']) for n in manifest['server_info'])
        status = self.read_status()
        now = sorted((n['serverid'], n['url']) for n in status['nodes'])
        if now and now != backup_urls:
            raise backup.BackupError('this backup belongs to the pair %s, but these nodes list %s in server_info: '
                                     'restore it where it came from (nothing was changed)' % (
                                         _urls_text(backup_urls), _urls_text(now)))
        targets = []
        for sid, url in backup_urls:
            host, port, _db = parse_udb_url(url)
            targets.append(dict(serverid=sid, host=host, port=port))
        return targets

    def check_target(self, target, manifest):
        """The node's admin connection, once it passed every check."""
        _node, admin = self.connect(target, 'postgres')
        where = 'serverid %d' % target['serverid']
        facts = run(admin, 'SELECT pg_is_in_recovery() AS standby, current_setting(%s)::int AS version',
                    ['server_version_num'])[0]
        if facts['standby']:
            raise backup.BackupError('%s is a standby (an online recovery is under way?): finish or cancel it first'
                                     % where)
        if facts['version'] // 10000 < manifest['server_version'] // 10000:
            raise backup.BackupError('%s runs PostgreSQL %d, the backup comes from %d: restore onto the same or a newer '
                                     'major version' % (where, facts['version'] // 10000,
                                                        manifest['server_version'] // 10000))
        refuse_if_applications([(where, admin)], [self.userdb, self.mngdb], backup.BackupError,
                               'a restore drops %s and %s' % (self.userdb, self.mngdb), 'Stop the applications first')
        needed = set(r for db in manifest['databases'].values() for r in db['roles'])
        present = set(r['rolname'] for r in run(admin, 'SELECT rolname FROM pg_roles'))
        if needed - present:
            raise backup.BackupError('%s lacks the roles %s that own or were granted objects in the backup: create them '
                                     '(CREATE ROLE) first; nothing was changed' % (
                                         where, listed(shown_name(role) for role in sorted(needed - present))))
        leftover = [name for name in REPLACED.values() if database_exists(admin, name)]
        if leftover:
            raise backup.BackupError('%s has %s from an earlier restore that did not finish (the databases as they were '
                                     'before it): rename them back or drop them, then retry' % (where, listed(leftover)))
        return admin

    def load(self, targets, admins, path, manifest):
        """Both databases into fresh databases on both nodes, all four pg_restore at once."""
        self.drop(admins, LOADING)
        loading = []
        for target, admin in zip(targets, admins):
            node = self.node(target)
            for key in DUMP_DIRS:
                create_like(admin, LOADING[key], manifest['databases'][key])
                argv = [self.tool('pg_restore'), '--no-password', '--exit-on-error', '--jobs=%d' % self.options.jobs,
                        '--dbname=' + node.conninfo_string(LOADING[key], bulk=True),
                        os.path.join(path, manifest['databases'][key]['dir'])]
                loading.append(('%s on serverid %d' % (manifest['databases'][key]['name'], target['serverid']),
                                children.start(argv, env=node.child_env(os.environ), stdout=subprocess.DEVNULL,
                                               stderr=subprocess.PIPE, text=True)))
        failures = []
        for what, child in loading:
            _out, err = child.communicate()
            if child.returncode:
                failures.append('%s: pg_restore exited %d: %s' % (what, child.returncode, err.strip()[-600:]))
            else:
                self.say('%s loaded' % what)
        if failures:
            raise backup.BackupError('the restore failed and changed nothing (the loaded copies were dropped): %s'
                                     % '; '.join(failures))

    def verify(self, targets, manifest):
        problems = []
        for target in targets:
            for key in DUMP_DIRS:
                _node, conn = self.connect(target, LOADING[key])
                problems += backup.compare_counts(manifest['databases'][key]['tables'], row_counts(conn),
                                                  'serverid %d %s' % (target['serverid'], manifest['databases'][key]['name']))
                conn.close()
        if problems:
            raise backup.BackupError('the loaded copies do not have the backup\'s row counts, nothing was changed: %s'
                                     % '; '.join(problems[:10]))
        self.say('row counts equal to the manifest on both nodes')

    def swap(self, targets, admins):
        """Old databases aside, loaded ones in under the real names; undone on a failure."""
        done = []
        names = {'userdb': self.userdb, 'mngdb': self.mngdb}
        try:
            for target, admin in zip(targets, admins):
                for key in DUMP_DIRS:
                    if database_exists(admin, names[key]):
                        rename_database(admin, names[key], REPLACED[key])
                        done.append((admin, names[key], REPLACED[key]))
                    rename_database(admin, LOADING[key], names[key])
                    done.append((admin, LOADING[key], names[key]))
        except BaseException:
            for admin, before, after in reversed(done):  # undo: each rename back
                rename_database(admin, after, before)
            raise
        self.say('restored databases in place on both nodes')

    def mark_valid(self, targets):
        for target in targets:
            _node, conn = self.connect(target, self.mngdb)
            for other in targets:
                set_validity(conn, other['serverid'], 1)
        views = dict((target['serverid'], self.connect(target, self.mngdb)[1]) for target in targets)
        for serverid, conn in views.items():  # both hold the backup's management database: each its own again
            accept_node(serverid, conn, list(views.values()))
        self.say('udb_validity 1 for both nodes on both nodes')

    def drop(self, admins, names):
        for admin in admins:
            for name in names.values():
                run(admin, sql.SQL('DROP DATABASE IF EXISTS {}').format(ident(name)), action='drop ' + name)

    def result(self, path, manifest, targets):
        return dict(changed=True, kind='logical', name=manifest['name'], backup=path,
                    restored=[t['serverid'] for t in targets], created=manifest['created'],
                    row_counts=dict((k, v['tables']) for k, v in manifest['databases'].items()),
                    phases=self.phases, progress=self.progress, seconds=round(time.monotonic() - self.started, 3))


def _urls_text(urls):
    """[(serverid, url)] as `serverid 0 at host:port/db, serverid 1 at ...`."""
    return ', '.join('serverid %s at %s' % (sid, url) for sid, url in urls) or 'no server'


def create_like(admin, name, facts):
    """An empty database with the backup's owner, encoding and locale."""
    query = 'CREATE DATABASE {} TEMPLATE template0 OWNER {} ENCODING {} LC_COLLATE {} LC_CTYPE {}'
    args = [ident(name), ident(facts['owner']), sql.Literal(facts['encoding']), sql.Literal(facts['collate']), sql.Literal(facts['ctype'])]
    if facts['locale_provider'] == 'icu':
        query += ' LOCALE_PROVIDER icu ICU_LOCALE {}'
        args.append(sql.Literal(facts['icu_locale']))
    run(admin, sql.SQL(query).format(*args), action='create database ' + name)


def rename_database(admin, old, new):
    run_without_monitors(admin, old, sql.SQL('ALTER DATABASE {} RENAME TO {}').format(ident(old), ident(new)),
                         action='rename database %s to %s' % (old, new))
