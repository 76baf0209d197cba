"""RETURN documents exactly what each module returns: every key of a real result is
documented, and every key documented as returned always is in it."""
import importlib
import os
import shutil

import pytest
import yaml

from pgforest_dev import sandbox

# Keys every Ansible result carries, or that Ansible adds.
STANDARD = {'changed', 'failed', 'msg', 'invocation', 'diff', 'warnings', 'deprecations', '_stdout', 'exception',
            'skipped', 'ansible_facts'}
BACKUPS = os.path.join(sandbox.SANDBOX, 'return-docs-backups')


def documented(module_name):
    module = importlib.import_module('ansible_collections.pgforest.cluster.plugins.modules.' + module_name)
    return yaml.safe_load(module.RETURN)


@pytest.fixture(scope='module', autouse=True)
def pair():
    sandbox.reset_pair()
    shutil.rmtree(BACKUPS, ignore_errors=True)
    yield
    shutil.rmtree(BACKUPS, ignore_errors=True)
    sandbox.reset_pair()


CALLS = [
    ('forest_status', dict()),
    ('forest_status', dict(compare='counts')),
    ('forest_mngdb', dict(global_config={'mngdb_read_duration': '1'})),
    ('forest_dbsync', dict()),
    ('forest_recover', dict()),  # healthy pair: nothing to do
    ('forest_backup', dict(backup_dir=BACKUPS, check=True)),
    ('forest_backup', dict(backup_dir=BACKUPS)),
    ('forest_restore', dict(backup_dir=BACKUPS, check=True)),  # the backup just taken
]


@pytest.mark.parametrize('module_name, args', CALLS, ids=['%s %s' % (c[0], sorted(c[1])) for c in CALLS])
def test_every_returned_key_is_documented_and_every_always_key_returned(module_name, args):
    args = dict(args)
    check = args.pop('check', False)
    result = sandbox.module(module_name, check=check, **args)
    assert not result.get('failed'), result.get('msg')
    docs = documented(module_name)
    undocumented = sorted(set(result) - set(docs) - STANDARD)
    assert undocumented == [], 'returned but not in RETURN: %s' % undocumented
    missing = sorted(key for key, doc in docs.items() if doc.get('returned') == 'always' and key not in result)
    assert missing == [], 'documented as returned always but not returned: %s' % missing
