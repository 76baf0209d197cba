# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shapes of the data that travels between the layers: one node's view of the pair, the
merged status and its nodes, a recommended action, one table's compare/repair result.

They are TypedDicts, so the values stay plain dicts (the modules return them as they are, the
online recovery's state file stores status nodes as JSON) while each field is named in one
place; the functions that make and read them are annotated with these names, and
tests/unit/test_shapes.py fails when a maker and its shape part ways."""

from __future__ import annotations

from typing import Dict, List, Optional

# Every state a status can have, least bad first: the pair's state over several user databases is
# its worst database's (cluster_status), and the metrics give each one a series (filter forest_metrics).
# 'diverged' is given by divergence.flag_divergence after a count comparison.
# Here, with no import, so the controller's metrics filter reads it without loading psycopg.
STATES = ('healthy', 'recovering', 'degraded', 'diverged', 'misconfigured', 'split_brain', 'down')

try:
    from typing import TypedDict
except ImportError:  # Python 3.7 on a managed node: the shapes are documentation only there
    TypedDict = dict


class NodeError(TypedDict):
    """Why a server could not be read or act: where, doing what, what PostgreSQL or the network
    said, and what to do (forest_pg.ForestPgError.as_dict, forest_pg.node_error)."""
    node: str
    action: str
    sqlstate: Optional[str]
    detail: str
    hint: Optional[str]


class ServerInfoRow(TypedDict):
    serverid: int
    udb_url: str
    udb_validity: Optional[int]


class View(TypedDict):
    """What one server says about the pair (status_read.read_view)."""
    label: str                       # host:port as the module reached it
    host: str
    port: int
    reachable: bool
    error: Optional[NodeError]
    mngdb: str                       # present, missing, broken or unknown
    server_info: Optional[List[ServerInfoRow]]
    server_version: Optional[int]
    in_recovery: Optional[bool]
    server_addr: Optional[str]       # the address the server sees itself on
    broken_log: List[dict]
    ssl: Optional[bool]              # this module's session encrypted (pg_stat_ssl)
    tls_version: Optional[str]
    tls_client_dn: Optional[str]     # the client certificate the server verified (ssl_cert)
    replication_slots: List[dict]    # an online recovery's slots: name, active, lag_bytes
    read_duration: Optional[dict]    # mngdb_read_duration: seconds, lowered (poll_interval's record)
    # the node as it is (system_identifier, mngdb_id) and the pair's record of both nodes in this view
    # (recorded: rows, None before the identity tables)
    identity: Optional[dict]


class StatusNode(TypedDict):
    """One server of the pair in the merged status (status_rules.merge); the jobs' source and target."""
    serverid: int
    url: str                         # udb_url: host:port/userdb
    host: Optional[str]
    port: Optional[int]
    userdb: Optional[str]
    reachable: bool
    validity: Optional[int]          # the merged udb_validity: -1 wins, then 0, else 1
    validity_name: str               # valid, suppressed, broken or unknown
    views: Dict[str, Optional[int]]  # what each node's own view says of this one, by serverid
    server_version: Optional[int]
    in_recovery: Optional[bool]
    ssl: Optional[bool]              # the module's session to it encrypted (pg_stat_ssl); None: not read
    tls_version: Optional[str]       # e.g. TLSv1.3
    tls_client_dn: Optional[str]     # the module's client certificate as the server verified it
    replication_slots: List[dict]    # on a recovery's source: its slot, active, lag_bytes held back
    read_duration: Optional[dict]    # its mngdb_read_duration (seconds) and a run's lowering (lowered)
    mngdb: str
    error: Optional[NodeError]
    identity: Optional[dict]         # system_identifier, mngdb_id, recorded (the views' rows for it), verdict, reason
    replaced: bool                   # not the node the pair recorded: a new server, never healthy until recovered


class Action(TypedDict, total=False):
    """What to do next (status_rules): always action and reason; the rest where they apply."""
    action: str
    reason: str
    source: int
    target: int
    online_possible: bool
    command: str


class PairStatus(TypedDict):
    """The pair as both views together describe it (status_rules.merge)."""
    cluster_state: str               # healthy, degraded, recovering, split_brain, down, misconfigured
    healthy: bool
    nodes: List[StatusNode]
    views_agree: bool
    disagreements: List[dict]
    problems: List[str]
    recommended_action: Action
    broken_log: List[dict]
    unreached: List[NodeError]


class DatabaseStatus(PairStatus):
    """One user database's status, as forest_status lists it in `databases`."""
    userdb: str


class PairOfDatabases(PairStatus):
    """The pair over all its user databases (cluster_status.pair_of_databases): the worst
    database's status, named, and every database's."""
    userdb: str                      # the worst database (the first of the worst)
    unhealthy_userdbs: List[str]
    databases: List[DatabaseStatus]


class TableResult(TypedDict, total=False):
    """One table's (or the large objects') line of a compare or sync report (dbsync_job.Sync)."""
    table: str                       # schema.table, quoted where SQL needs it
    status: str                      # equal, different, repaired, would_repair, failed, schema_differs, ...
    missing: int
    extra: int
    changed: int
    keys: Dict[str, List[dict]]      # a sample of the differing rows' keys, by kind
    rows_copied: int
    bytes_copied: int
    method: str                      # keys, reload, all
    rows_source: int
    rows_target: int
    scope: str
    seconds: float
    detail: Optional[str]
