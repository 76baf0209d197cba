"""The shapes (module_utils/shapes.py) are what their makers make: a field added to a maker and
not to its shape (or the other way round) fails here."""
from ansible_collections.pgforest.cluster.plugins.module_utils import shapes
from ansible_collections.pgforest.cluster.plugins.module_utils.status_read import new_view
from ansible_collections.pgforest.cluster.plugins.module_utils.status_rules import merge
from ansible_collections.pgforest.cluster.plugins.module_utils.forest_pg import ForestPgError, Node

from test_status_merge import view


def fields(shape):
    return set(shape.__annotations__)


def test_a_view_is_a_view():
    made = new_view(Node('db.example', 5432, 'postgres', None))
    assert set(made) == fields(shapes.View)
    assert set(view(0, {0: 1, 1: 1})) == fields(shapes.View)  # the unit tests' stand-in too


def test_the_merged_status_its_nodes_and_its_actions():
    for values, reachable in (({0: 1, 1: 1}, True), ({0: 1, 1: -1}, True), ({0: 1, 1: 1}, False),
                              ({0: -1, 1: -1}, True)):
        status = merge([view(0, values), view(1, values, reachable=reachable)])
        assert set(status) == fields(shapes.PairStatus)
        assert all(set(node) == fields(shapes.StatusNode) for node in status['nodes'])
        action = status['recommended_action']
        assert {'action', 'reason'} <= set(action) <= fields(shapes.Action)
        assert all(set(error) == fields(shapes.NodeError) for error in status['unreached'])


def test_an_error_from_a_server_is_a_node_error():
    error = ForestPgError('serverid 1', 'read server_info', 'connection refused', sqlstate='08001')
    assert set(error.as_dict()) == fields(shapes.NodeError)
