"""A job's typed options from a module's params: one rule for every module."""
from typing import NamedTuple, Optional

import pytest

from ansible_collections.pgforest.cluster.plugins.module_utils.backup_jobs import BackupOptions
from ansible_collections.pgforest.cluster.plugins.module_utils.dbsync_job import SyncOptions
from ansible_collections.pgforest.cluster.plugins.module_utils.mngdb_plan import MngdbOptions
from ansible_collections.pgforest.cluster.plugins.module_utils.options import options_from


class Example(NamedTuple):
    required: Optional[int]
    rate: float = 0.5
    name: str = 'x'


def test_left_out_options_keep_the_fields_default_and_a_field_without_one_takes_none():
    assert options_from(Example, dict(required=None, rate=None, name='y', other=3)) == Example(None, 0.5, 'y')
    assert options_from(Example, dict(required=2, rate=0.0)) == Example(2, 0.0, 'x')  # 0 is not left out
    assert options_from(Example, dict(required=1), name='z').name == 'z'


def test_a_field_without_a_default_must_be_given():
    with pytest.raises(TypeError):
        options_from(Example, dict(rate=1.0))


def test_every_jobs_options_are_built_the_same_way():
    params = dict(mode='sync', jobs=None, keep=0, force=True, validity=-1, serverid=1, unrelated='x')
    assert SyncOptions.from_params(params) == SyncOptions(mode='sync')
    assert BackupOptions.from_params(params).keep == 0
    assert MngdbOptions.from_params(params)[-4:] == (1, -1, True, False)
