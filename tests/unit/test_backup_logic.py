"""Pure logic of backups: checksums, retention, finding a backup (choosing the node: test_pair_choice)."""
import datetime
import os

import pytest

from ansible_collections.pgforest.cluster.plugins.module_utils import backup as b


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as handle:
        handle.write(data)


def test_verify_files_finds_every_kind_of_damage(tmp_path):
    root = str(tmp_path)
    write(os.path.join(root, 'userdb', 'toc.dat'), b'table of contents')
    write(os.path.join(root, 'userdb', '3001.dat.gz'), b'rows' * 1000)
    write(os.path.join(root, 'mngdb', 'toc.dat'), b'mngdb')
    recorded = b.file_checksums(root)
    assert sorted(recorded) == ['mngdb/toc.dat', 'userdb/3001.dat.gz', 'userdb/toc.dat']
    b.write_manifest(root, dict(format=b.FORMAT, files=recorded))
    assert b.verify_files(root, recorded) == []
    write(os.path.join(root, 'userdb', '3001.dat.gz'), b'rowz' + b'rows' * 999)  # same size, one byte off
    os.remove(os.path.join(root, 'mngdb', 'toc.dat'))
    write(os.path.join(root, 'userdb', 'toc.dat'), b'short')
    write(os.path.join(root, 'userdb', 'extra.dat'), b'?')
    assert b.verify_files(root, recorded) == [
        'mngdb/toc.dat is missing',
        'userdb/3001.dat.gz does not match its SHA-256 in the manifest',
        'userdb/toc.dat has 5 bytes, the manifest says 17',
        'userdb/extra.dat is not in the manifest',
    ]


def test_manifest_round_trip_and_foreign_files(tmp_path):
    b.write_manifest(str(tmp_path), dict(format=b.FORMAT, kind='logical'))
    assert b.read_manifest(str(tmp_path))['kind'] == 'logical'
    write(os.path.join(str(tmp_path), 'other', b.MANIFEST), b'{"format": "something else"}')
    with pytest.raises(b.BackupError, match='not a pgforest.cluster backup 1 manifest'):
        b.read_manifest(os.path.join(str(tmp_path), 'other'))
    with pytest.raises(b.BackupError, match='not a readable backup manifest'):
        b.read_manifest(os.path.join(str(tmp_path), 'missing'))


def make_backup(root, kind, minute, complete=True):
    name = b.backup_name(kind, datetime.datetime(2026, 11, 21, 10, minute, 0))
    folder = os.path.join(root, name, b.part_dir(1)) if kind == 'physical' else os.path.join(root, name)
    os.makedirs(folder)
    if complete:
        b.write_manifest(folder, dict(format=b.FORMAT, kind=kind))
    return name


def test_retention_keeps_the_newest_complete_backups_of_the_kind(tmp_path):
    root = str(tmp_path)
    logical = [make_backup(root, 'logical', minute) for minute in (1, 3, 5, 7)]
    physical = [make_backup(root, 'physical', minute) for minute in (2, 4)]
    unfinished = make_backup(root, 'logical', 9, complete=False)
    os.makedirs(os.path.join(root, logical[0] + '.partial'))
    os.makedirs(os.path.join(root, 'notes'))
    assert [x['name'] for x in b.list_backups(root)] == [logical[3], logical[2], physical[1], logical[1],
                                                         physical[0], logical[0]]
    assert b.prune(root, 2, 'logical') == [logical[1], logical[0]]
    assert b.prune(root, 0, 'physical') == []
    assert sorted(os.listdir(root)) == sorted([logical[0] + '.partial', 'notes', unfinished, logical[2], logical[3]]
                                              + physical)


def test_resolve_latest_name_or_path(tmp_path):
    root = str(tmp_path)
    with pytest.raises(b.BackupError, match='no complete backup'):
        b.resolve('latest', root)
    older, newer = make_backup(root, 'logical', 1), make_backup(root, 'physical', 2)
    assert b.resolve('latest', root) == os.path.join(root, newer)
    assert b.resolve(older, root) == os.path.join(root, older)
    assert b.resolve(os.path.join(root, older), None) == os.path.join(root, older)
    assert b.backup_kind('latest', root) == 'physical'
    with pytest.raises(b.BackupError, match='does not exist'):
        b.resolve('forest-logical-20200101T000000Z', root)
    os.makedirs(os.path.join(root, 'mine'))
    with pytest.raises(b.BackupError, match='not named like a backup'):
        b.backup_kind('mine', root)


def test_compare_counts_names_each_difference():
    assert b.compare_counts({'public.t': 3}, {'public.t': 3}, 'serverid 0 userdb') == []
    assert b.compare_counts({'public.t': 3, 'public.u': 1}, {'public.t': 2, 'public.v': 0}, 'serverid 1 userdb') == [
        'serverid 1 userdb: public.t has 2 rows, the backup 3',
        'serverid 1 userdb: table public.u is missing (the backup has 1 rows)',
        'serverid 1 userdb: table public.v is not in the backup',
    ]
