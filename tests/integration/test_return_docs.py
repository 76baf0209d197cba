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
    ('forest_status', dict(userdbs=['userdb'])),
    ('forest_estate_status', dict()),  # ad hoc: the pairs of the hosts given (forest0's)
    ('forest_mngdb', dict(global_config={'mngdb_read_duration': '1'})),
    ('forest_dbsync', dict()),
    ('forest_recover', dict(mode='offline')),  # healthy pair: nothing to do
    ('forest_backup', dict(backup_dir=BACKUPS, check=True)),
    ('forest_backup', dict(backup_dir=BACKUPS)),
    ('forest_restore', dict(backup_dir=BACKUPS, check=True)),  # the backup just taken
]


@pytest.mark.parametrize('module_name, args', CALLS, ids=['%s %s' % (c[0], sorted(c[1])) for c in CALLS])
def test_every_returned_key_is_documented_and_every_always_key_returned(module_name, args):
    args = dict(args)
    check = args.pop('check', False)
    if module_name == 'forest_restore' and not os.path.isdir(BACKUPS):
        # the backup case may have run on another test worker (each has its own sandbox)
        assert not sandbox.module('forest_backup', backup_dir=BACKUPS).get('failed')
    result = sandbox.module(module_name, check=check, **args)
    assert not result.get('failed'), result.get('msg')
    docs = documented(module_name)
    undocumented = sorted(set(result) - set(docs) - STANDARD)
    assert undocumented == [], 'returned but not in RETURN: %s' % undocumented
    missing = sorted(key for key, doc in docs.items() if doc.get('returned') == 'always' and key not in result)
    assert missing == [], 'documented as returned always but not returned: %s' % missing


def test_results_have_the_shapes_of_module_utils_shapes():
    """What forest_status and forest_dbsync return are the shapes' dicts (shapes.py), with a table
    that differs so a compare line carries every field a difference adds."""
    from ansible_collections.pgforest.cluster.plugins.module_utils import shapes
    sandbox.both('DROP TABLE IF EXISTS shape_check; CREATE TABLE shape_check (id int PRIMARY KEY, v text);'
                 "INSERT INTO shape_check SELECT g, 'v' FROM generate_series(1, 50) g")
    sandbox.on(1, "UPDATE shape_check SET v = 'drift' WHERE id = 7")
    try:
        status = sandbox.module('forest_status')
        assert set(status['nodes'][0]) == set(shapes.StatusNode.__annotations__)
        assert set(shapes.PairStatus.__annotations__) <= set(status)
        for mode in ('compare', 'sync'):
            args = dict(mode=mode, source=0) if mode == 'sync' else {}
            result = sandbox.module('forest_dbsync', **args)
            line = [table for table in result['tables'] if table['table'] == 'public.shape_check'][0]
            assert line['status'] == ('different' if mode == 'compare' else 'repaired'), line
            assert set(line) <= set(shapes.TableResult.__annotations__), set(line) - set(
                shapes.TableResult.__annotations__)
    finally:
        sandbox.both('DROP TABLE IF EXISTS shape_check')
