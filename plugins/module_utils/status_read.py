# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading what each node of the pair serves (its *view*: server_info, version, recovery state,
broken_log, identity), all nodes at once, and finding the other node of the pair.

read_views() never waits longer than its deadline: a node that does not answer in time (stopped,
or hung under SIGSTOP) is reported unreachable.  status_rules.merge() makes the pair's status of
the views.
"""

from __future__ import annotations

import functools

from .fan_out import fan_out
from .forest_pg import ForestPgError, Node, node_error, run
from . import poll_interval
from .mngdb import missing_tables, parse_udb_url, read_server_info
from .node_identity import read_identities, read_origin, system_identifier
from .shapes import View

# A read gets connect_timeout plus this long before its node is called unreachable.
READ_MARGIN = 0.75
# An online recovery's slot on its source (online_recovery: pgforest_recovery_<target serverid>) and the
# WAL it holds back: the bytes written since the standby last confirmed (none on a standby itself).
RECOVERY_SLOTS_SQL = r"""
SELECT slot_name AS name, active,
       CASE WHEN pg_is_in_recovery() OR restart_lsn IS NULL THEN NULL
            ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint END AS lag_bytes
FROM pg_replication_slots WHERE slot_name LIKE 'pgforest\_recovery\_%' ORDER BY slot_name
"""


def read_pair(params, mngdb, broken_log_limit=0, pool=None):
    """Both nodes' views: this node and peer_host at once; without peer_host, the
    peer is taken from this node's server_info and read right after.  pool: kept connections
    (KeptConnections) to read over, for a reader that reads again and again (the exporter)."""
    this = Node.from_params(params)
    nodes = {(this.host, this.port): this}
    peer = given_peer(this, params)
    if peer is not None:
        nodes[(peer.host, peer.port)] = peer
    deadline = params['connect_timeout'] + READ_MARGIN
    views = read_views(nodes, mngdb, broken_log_limit, deadline, pool)
    for view in list(views.values()):
        others = other_servers(view['server_info'] or [], views, view['server_addr'])
        more = dict((key, this.sibling(*key)) for key in others)
        if more:
            views.update(read_views(more, mngdb, broken_log_limit, deadline, pool))
    return views


def given_peer(this, params):
    """The other node as the peer_host option names it (None without it)."""
    if not params['peer_host']:
        return None
    return this.sibling(params['peer_host'], params['peer_port'] or this.port)


def other_servers(server_info, known, server_addr, strict=False):
    """(host, port) of each server server_info lists, one at a time, but those in `known` and the
    one answering at server_addr ('host:port' as that server names itself).  A malformed udb_url is
    skipped (merge reports it), or refused when strict."""
    for row in server_info:
        host, port, _db = parse_udb_url(row['udb_url'], strict)
        if host is not None and (host, port) not in known and '%s:%s' % (host, port) != server_addr:
            yield host, port


def find_peer(this, params, server_info, this_address):
    """The other node of the pair: peer_host when given, else the first server of this node's
    server_info that is not this node (by the address used or the server's own, this_address():
    asked only then); None when it lists no other."""
    peer = given_peer(this, params)
    if peer is not None:
        return peer
    found = next(other_servers(server_info, [(this.host, this.port)], this_address(), strict=True), None)
    return this.sibling(*found) if found else None


def new_view(node) -> View:
    return dict(label=node.label, host=node.host, port=node.port, reachable=False, error=None,
                mngdb='unknown', server_info=None, server_version=None, in_recovery=None,
                server_addr=None, broken_log=[], ssl=None, tls_version=None, tls_client_dn=None,
                replication_slots=[], read_duration=None, identity=None)


def read_view(node, mngdb, broken_log_limit, pool=None) -> View:
    """What one node serves: its server_info, version, recovery state, broken_log.  Over a new
    connection, closed at the end; with a pool, over the one it keeps for the node and database
    (a kept connection that turns out dead, the server restarted since, is replaced once at once)."""
    if pool is not None:
        return pool.read(node, mngdb, functools.partial(_read_facts, node, mngdb, broken_log_limit),
                         functools.partial(_unconnected, node))
    try:
        conn = node.connect(mngdb)
    except ForestPgError as exc:
        return _unconnected(node, exc)
    with conn:
        return _read_facts(node, mngdb, broken_log_limit, conn)


def _unconnected(node, exc) -> View:
    """The view of a node that could not be connected to: a missing management database still
    means the server answers."""
    view = new_view(node)
    view['error'] = exc.as_dict()
    if exc.sqlstate == '3D000':
        view.update(reachable=True, mngdb='missing')
    return view


def _read_facts(node, mngdb, broken_log_limit, conn) -> View:
    view = new_view(node)
    view.update(reachable=True, server_version=conn.info.server_version)
    try:
        facts = run(conn, 'SELECT pg_is_in_recovery() AS in_recovery, '
                          'host(inet_server_addr()) AS addr, inet_server_port() AS port, '
                          's.ssl, s.version AS tls_version, s.client_dn AS tls_client_dn '
                          'FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()')[0]
        view.update(in_recovery=facts['in_recovery'], server_addr='%s:%s' % (facts['addr'], facts['port']),
                    ssl=facts['ssl'], tls_version=facts['tls_version'], tls_client_dn=facts['tls_client_dn'])
        view['replication_slots'] = run(conn, RECOVERY_SLOTS_SQL, action='read replication slots')
        missing = missing_tables(conn)
        if missing:
            view.update(mngdb='broken', error=node_error(node.label, 'read management database',
                                                         'missing tables: ' + ', '.join(missing), '42P01',
                                                         're-create it with forest_mngdb'))
            return view
        view['server_info'] = read_server_info(conn)
        view['identity'] = read_identity(conn)
        poll = run(conn, poll_interval.READ_SQL, action='read mngdb_read_duration')[0]
        lowered = poll_interval.parse_record(poll['comment'])
        view['read_duration'] = dict(
            seconds=poll_interval.interval(poll['value']), lowered=lowered and dict(
                lowered, for_seconds=round(max(0.0, poll['now'] - float(lowered['at'])), 1)))
        view['broken_log'] = run(conn, 'SELECT serverid, time::text AS time, extract(epoch FROM time)::float8 '
                                       'AS epoch, client, api_task, err_msg, err_type, err_state '
                                       'FROM broken_log ORDER BY time DESC LIMIT %s',
                                 [broken_log_limit], action='read broken_log')
        view['mngdb'] = 'present'
    except ForestPgError as exc:
        view.update(mngdb='broken', error=exc.as_dict())
    return view


def read_identity(conn):
    """The node as it is and the pair's record in this view; None when it cannot be read (a login
    without the right to pg_control_system): unknown, never a reason to call the node replaced."""
    try:
        origin = read_origin(conn)
        return dict(system_identifier=system_identifier(conn), mngdb_id=origin and origin['mngdb_id'],
                    recorded=read_identities(conn))
    except ForestPgError:
        return None


def read_views(nodes, mngdb, broken_log_limit, deadline, pool=None):
    """Read every node concurrently; give up on a node after `deadline` seconds."""
    outcomes = fan_out(dict((key, functools.partial(read_view, node, mngdb, broken_log_limit, pool))
                            for key, node in nodes.items()), timeout=deadline)
    result = {}
    for key, node in nodes.items():
        outcome = outcomes[key]
        if outcome.error is not None:  # a bug or an odd driver error: that node's view says so, the others stand
            failed = new_view(node)
            failed['error'] = node_error(node.label, 'read', str(outcome.error))
            result[key] = failed
        elif outcome.done:
            result[key] = outcome.value
        else:
            hung = new_view(node)
            hung['error'] = node_error(node.label, 'read', 'no answer within %.1f s' % deadline,
                                       hint='the server accepts connections but does not answer: it may be hung '
                                            '(stopped process, full disk, overloaded)')
            result[key] = hung
    return result
