"""Pure pieces of a resync recovery (method=resync): names, refusals, the subscription's conninfo,
and forest_recover's methods per mode."""
from ansible_collections.pgforest.cluster.plugins.module_utils import resync_logical as logical
from ansible_collections.pgforest.cluster.plugins.module_utils.forest_pg import Node
from ansible_collections.pgforest.cluster.plugins.module_utils.online_method import resync_needs
from ansible_collections.pgforest.cluster.plugins.modules import forest_recover


def test_slot_names_are_per_target_and_database_and_valid_slot_names():
    names = {logical.slot_name(target, oid) for target in (0, 1) for oid in (16384, 16385)}
    assert len(names) == 4
    # A replication slot name: lower-case letters, digits and underscores, at most 63 characters.
    assert all(name.replace('_', '').isalnum() and name == name.lower() and len(name) <= 63 for name in names)
    assert logical.slot_name(1, 16384) == 'pgforest_resync_1_16384'


def test_wal_level_refusal_names_the_setting_and_each_node():
    assert logical.wal_level_refusal({'serverid 0': 'logical', 'serverid 1': 'logical'}) is None
    refusal = logical.wal_level_refusal({'serverid 0': 'replica', 'serverid 1': 'logical'})
    assert 'wal_level = logical' in refusal and 'serverid 0 has wal_level = replica' in refusal
    assert 'serverid 1' not in refusal and refusal.endswith('Nothing was changed')
    assert 'provision.yml' in refusal and 'method=basebackup' in refusal


def test_identity_refusal_names_every_table_per_database():
    assert logical.identity_refusal({'userdb': [], 'spare': []}) is None
    refusal = logical.identity_refusal({'userdb': ['public.a', 'public."B b"'], 'spare': [], 'x': ['s.t']})
    assert 'userdb: public.a, public."B b"' in refusal and 'x: s.t' in refusal and 'spare' not in refusal
    assert 'REPLICA IDENTITY' in refusal and refusal.endswith('Nothing was changed')


def test_subscription_conninfo_has_the_passfile_and_no_password():
    node = Node('10.0.0.1', 5433, 'forest', password='secret')
    info = logical.subscription_conninfo(node, 'userdb', '/data.pgforest-recovery/pgpass')
    assert 'secret' not in info
    assert "passfile='/data.pgforest-recovery/pgpass'" in info or 'passfile=/data.pgforest-recovery/pgpass' in info
    assert "dbname='userdb'" in info and 'statement_timeout' not in info


def test_each_mode_has_its_methods_default_first():
    assert forest_recover.METHODS == dict(offline=('diff', 'dump'), online=('basebackup', 'resync', 'auto'))


def test_method_auto_names_the_first_condition_of_a_resync_not_met():
    assert resync_needs(True, None, [], None) is None
    assert 'not initialized' in resync_needs(False, 'ignored', ['x'], 'ignored')
    assert resync_needs(True, 'exit 1', ['x'], None).startswith("the node's server does not start (exit 1)")
    assert resync_needs(True, None, ['a'], 'r') == 'the node lacks the forest database a: a physical copy brings it'
    assert resync_needs(True, None, [], 'needs wal_level. Nothing was changed') == \
        'resync would be refused: needs wal_level'
