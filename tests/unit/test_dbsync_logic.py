"""Pure logic of forest_dbsync: which hash a column gets, table selection, localizing."""
import pytest

from ansible_collections.pgforest.cluster.plugins.module_utils.sync_catalog import schema_difference, selected
from ansible_collections.pgforest.cluster.plugins.module_utils.sync_hash import (
    block_slices, compare_buckets, hash_input, localize, merge_buckets)


@pytest.mark.parametrize('type_name, native', [
    ('integer', True), ('bigint', True), ('text', True), ('character varying(20)', True), ('character(84)', True),
    ('timestamp with time zone', True), ('bytea', True), ('uuid', True),
    ('numeric', False), ('numeric(10,2)', False), ('double precision', False), ('real', False),
    ('jsonb', False), ('json', False), ('interval', False), ('integer[]', False), ('character', False),
    ('timestamp(3) with time zone', False), ('money', False),
])
def test_only_types_whose_equality_is_identity_use_their_own_hash(type_name, native):
    """numeric 1.0 = 1.00, float -0 = 0, interval '1 day' = '24 hours': those go through text."""
    rendered = repr(hash_input('col', type_name))
    assert ('::text' not in rendered) == native, rendered


def test_include_and_exclude_patterns():
    assert selected(('public', 'orders'), ['public.*'], None)
    assert not selected(('audit', 'log'), ['public.*'], None)
    assert not selected(('public', 'tmp_x'), None, ['*.tmp_*'])
    assert selected(('public', 'x'), None, None)
    # plain or quoted as results show it
    assert selected(('Sales Ü', 'Order Items'), ['Sales Ü.*'], None)
    assert selected(('Sales Ü', 'Order Items'), ['"Sales Ü"."Order Items"'], None)
    assert not selected(('Sales Ü', 'Order Items'), None, ['"Sales Ü".*'])


def test_buckets_and_rows_are_localized_to_missing_extra_changed():
    assert compare_buckets({1: (2, 10), 2: (1, 5)}, {1: (2, 10), 3: (1, 7)}) == [2, 3]
    source = {('1',): 11, ('2',): 22, ('3',): 33}
    target = {('2',): 22, ('3',): 34, ('4',): 44}
    assert localize(source, target) == ([('1',)], [('4',)], [('3',)])


def test_schema_differences_are_described_not_guessed():
    def table(*columns, pkey=('id',), via='primary key'):
        return dict(columns=[dict(name=n, type=t, generated=False) for n, t in columns], row_key=list(pkey),
                    row_key_via=via)
    same = table(('id', 'integer'), ('v', 'text'))
    assert schema_difference(same, table(('id', 'integer'), ('v', 'text'))) is None
    assert schema_difference(same, table(('id', 'integer'), ('v', 'varchar'))) == \
        'columns differ: v: text on source, varchar on target'
    assert 'absent on target' in schema_difference(same, table(('id', 'integer')))
    assert schema_difference(same, table(('id', 'integer'), ('v', 'text'), pkey=('v',))) == \
        'row keys differ: primary key (id) on source, primary key (v) on target'
    assert 'unique index' in schema_difference(same, table(('id', 'integer'), ('v', 'text'), via='unique index "u"'))


def test_column_order_is_a_schema_difference():
    def table(*names):
        return dict(columns=[dict(name=n, type='integer', generated=False) for n in names], row_key=['a'],
                    row_key_via='primary key')
    problem = schema_difference(table('a', 'b', 'Ö"x'), table('a', 'Ö"x', 'b'))
    assert problem.startswith('column order differs: (a, b, "Ö""x") on source, (a, "Ö""x", b) on target')
    assert 'never synced' in problem
    assert schema_difference(table('a', 'b'), table('a', 'c')).startswith('columns differ')


def test_a_cut_list_of_keys_says_how_many_more():
    from ansible_collections.pgforest.cluster.plugins.module_utils.sync_report import report_lines
    table = dict(table='public.orders', status='different', missing=12, extra=0, changed=1, rows_copied=0,
                 bytes_copied=0, keys=dict(missing=[dict(id=str(n)) for n in range(8)], changed=[dict(id='99')]))
    [line] = report_lines([table], [])
    assert 'missing: id=0, id=1, id=2, id=3, id=4 (and 7 more)' in line
    assert 'changed: id=99' in line and 'changed: id=99 (and' not in line


@pytest.mark.parametrize('blocks, jobs, slices', [
    (100, 1, [(0, None)]),
    (100, 4, [(0, 25), (25, 50), (50, 75), (75, None)]),
    (10, 3, [(0, 3), (3, 6), (6, None)]),
    (2, 5, [(0, 1), (1, None)]),      # never more slices than blocks
    (0, 4, [(0, None)]),              # empty table: one open slice still reads what is there
])
def test_block_slices_cover_the_table_once_and_the_last_is_open(blocks, jobs, slices):
    assert block_slices(blocks, jobs) == slices


def test_merged_slices_give_the_whole_tables_buckets():
    parts = [{1: (2, 0b1010), 2: (1, 7)}, {1: (1, 0b0110)}, {3: (4, 9)}]
    assert merge_buckets(parts, keyed=True) == {1: (3, 0b1100), 2: (1, 7), 3: (4, 9)}
    assert merge_buckets([{0: (2, 10)}, {0: (3, 5)}], keyed=False) == {0: (5, 15)}  # sums of a keyless table
    assert merge_buckets([], keyed=True) == {}


def test_each_column_is_seeded_by_its_position_and_null_has_its_own_value():
    rendered = repr(hash_input('col', 'integer', 3))
    assert 'hashint4extended' in rendered and 'coalesce' in rendered and 'Literal(3)' in rendered
    assert repr(hash_input('col', 'integer', 3)) != repr(hash_input('col', 'integer', 4))
