# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backups of the pair on disk (guide §6 and §7): names, manifests, checksums, retention.

A backup is a directory <backup_dir>/forest-<kind>-<UTC time> holding a
manifest.json and the files it lists with their size and SHA-256:
  logical:  manifest.json, userdb/ and mngdb/ (pg_dump directory format)
  physical: serverid-<N>/manifest.json and serverid-<N>/data/ (one part per node;
            each host keeps its own node's part)
A directory is written as <name>.partial (or serverid-<N>.partial) and renamed
when complete, so an interrupted backup never looks like one.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil

from .errors import ForestError

FORMAT = 'pgforest.cluster backup 1'
MANIFEST = 'manifest.json'
KINDS = ('logical', 'physical')
NAME_PATTERN = re.compile(r'^forest-(logical|physical)-\d{8}T\d{6}Z$')
CHUNK = 1 << 20


class BackupError(ForestError):
    pass


def backup_name(kind, now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return 'forest-%s-%s' % (kind, now.strftime('%Y%m%dT%H%M%SZ'))


def part_dir(serverid):
    """Where a physical backup keeps one node's data directory and manifest."""
    return 'serverid-%d' % serverid


# --- files ------------------------------------------------------------------------

def file_checksum(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as handle:
        for block in iter(lambda: handle.read(CHUNK), b''):
            digest.update(block)
    return digest.hexdigest()


def file_checksums(root, skip=(MANIFEST,)):
    """{relative path: {size, sha256}} of every file under root (sorted walk)."""
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if rel in skip:
                continue
            found[rel] = dict(size=os.path.getsize(path), sha256=file_checksum(path))
    return found


def verify_files(root, recorded):
    """Problems (list of str) between the files under root and the manifest's record."""
    problems = []
    present = set()
    for folder, _dirs, files in os.walk(root):
        for name in files:
            present.add(os.path.relpath(os.path.join(folder, name), root))
    for rel in sorted(recorded):
        path = os.path.join(root, rel)
        if rel not in present:
            problems.append('%s is missing' % rel)
        elif os.path.getsize(path) != recorded[rel]['size']:
            problems.append('%s has %d bytes, the manifest says %d' % (rel, os.path.getsize(path),
                                                                       recorded[rel]['size']))
        elif file_checksum(path) != recorded[rel]['sha256']:
            problems.append('%s does not match its SHA-256 in the manifest' % rel)
    for rel in sorted(present - set(recorded) - {MANIFEST}):
        problems.append('%s is not in the manifest' % rel)
    return problems


def write_manifest(folder, manifest):
    """manifest.json, written to a temporary name then renamed (never half written)."""
    path = os.path.join(folder, MANIFEST)
    with open(path + '.tmp', 'w') as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
        handle.write('\n')
    os.rename(path + '.tmp', path)
    return path


def read_manifest(folder):
    path = os.path.join(folder, MANIFEST)
    try:
        with open(path) as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as exc:
        raise BackupError('%s is not a readable backup manifest (%s): is %s a pgforest.cluster backup?'
                          % (path, exc, folder))
    if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
        raise BackupError('%s is not a %s manifest' % (path, FORMAT))
    return manifest


def make_private_dir(path):
    os.makedirs(path, mode=0o700, exist_ok=True)


def remove_tree(path):
    """Remove a directory tree; one already gone (another host pruned it) is fine."""
    shutil.rmtree(path, ignore_errors=True)


# --- finding backups, retention ------------------------------------------------------

def list_backups(backup_dir, kind=None):
    """[{name, path, kind, created}] of the complete backups in backup_dir, newest first."""
    found = []
    try:
        names = os.listdir(backup_dir)
    except OSError:
        return []
    for name in names:
        match = NAME_PATTERN.match(name)
        if not match or (kind and match.group(1) != kind):
            continue
        path = os.path.join(backup_dir, name)
        if _is_complete(path, match.group(1)):
            found.append(dict(name=name, path=path, kind=match.group(1)))
    return sorted(found, key=lambda item: item['name'][-16:], reverse=True)


def _is_complete(path, kind):
    if kind == 'logical':
        return os.path.isfile(os.path.join(path, MANIFEST))
    try:
        return any(re.match(r'^serverid-\d+$', entry) and os.path.isfile(os.path.join(path, entry, MANIFEST))
                   for entry in os.listdir(path))
    except OSError:
        return False


def prune(backup_dir, keep, kind):
    """Remove all but the newest `keep` complete backups of `kind`; returns what it removed."""
    if keep is None or keep < 1:
        return []
    removed = []
    for backup in list_backups(backup_dir, kind)[keep:]:
        remove_tree(backup['path'])
        removed.append(backup['name'])
    return removed


def resolve(backup, backup_dir):
    """A backup given as a path, a name in backup_dir, or `latest`: its directory."""
    if backup == 'latest':
        found = list_backups(backup_dir or '')
        if not found:
            raise BackupError('no complete backup in %s: take one first (playbooks/backup.yml), or give its path'
                              % backup_dir)
        return found[0]['path']
    if os.sep not in backup and backup_dir:
        backup = os.path.join(backup_dir, backup)
    if os.path.exists(backup) and not os.path.isdir(backup):
        raise BackupError('backup %s is a file, not a backup (a directory that forest_backup wrote): give its '
                          'directory, its name in backup_dir, or latest' % backup)
    if not os.path.isdir(backup):
        raise BackupError('backup %s does not exist: give its directory, its name in backup_dir, or latest'
                          % backup)
    return os.path.abspath(backup)


def backup_kind(backup, backup_dir):
    """logical or physical, from the backup's directory name (then checked against its manifest)."""
    match = NAME_PATTERN.match(os.path.basename(resolve(backup, backup_dir)))
    if not match:
        raise BackupError('%s is not named like a backup (forest-<kind>-<UTC time>): give a directory that '
                          'forest_backup wrote' % backup)
    return match.group(1)


def compare_counts(expected, found, where):
    """Lines naming each table whose row count differs from the manifest's."""
    lines = []
    for table in sorted(set(expected) | set(found)):
        if table not in found:
            lines.append('%s: table %s is missing (the backup has %d rows)' % (where, table, expected[table]))
        elif table not in expected:
            lines.append('%s: table %s is not in the backup' % (where, table))
        elif expected[table] != found[table]:
            lines.append('%s: %s has %d rows, the backup %d' % (where, table, found[table], expected[table]))
    return lines


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')
