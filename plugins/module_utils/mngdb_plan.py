# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Changes to the nodes' management databases, planned first and applied together: what
forest_mngdb (mngdb_job.Keeper) builds on.

Every change is planned with the line it reports and the diff lines it shows (before and after,
per node), so check mode and --diff tell exactly what a run does; apply() then runs the steps in
order, and the management database steps of every node commit together, or not at all."""

from __future__ import annotations

import contextlib
from typing import NamedTuple, Optional

from .forest_pg import ForestPgError, Node
from .job import Job
from . import mngdb
from .options import options_from
from .status_read import find_peer


class MngdbOptions(NamedTuple):
    """What a forest_mngdb call asks for, apart from where (the connection options): forest_mngdb's
    options, typed, built once by the module.  Defaults live in the module's argument spec."""
    servers: Optional[list] = None          # this node's server_info: create or keep its databases
    create_userdb: bool = True
    overwrite: bool = False                 # replace a server_info that differs
    global_config: Optional[dict] = None
    local_config: Optional[dict] = None
    configid: str = mngdb.DEFAULT_CONFIGID
    serverid: Optional[int] = None          # with validity: the node whose validity is set
    validity: Optional[int] = None
    force: bool = False                     # act although drivers are connected
    record_identity: bool = False

    from_params = classmethod(options_from)


class MngdbPlan(Job):
    """The planned steps on this node and its peer, one connection per node and database (the
    reads and the writes of a run share it, so a node's changes are one transaction)."""

    def __init__(self, params, options, check_mode=False, log=None):
        super().__init__(params, check_mode, log)
        self.options = options
        self.this = Node.from_params(params)
        self.cached = {}
        self.changes = []
        self.steps = []  # (node, database, function(conn)), applied in order
        self.before = {}
        self.after = {}
        self.sessions = {}

    # --- connections ---------------------------------------------------------
    def conn(self, node, dbname):
        """The run's connection to dbname on node (closed by Job.close)."""
        key = (node.label, dbname)
        if key not in self.cached:
            self.cached[key] = node.connect(dbname)
            self.conns.append(self.cached[key])
        return self.cached[key]

    def this_address(self):
        """'host:port' as this node's server names itself (it may be listed by another address)."""
        row = self.conn(self.this, 'postgres').execute(
            'SELECT host(inet_server_addr()), inet_server_port()').fetchone()
        return '%s:%s' % row

    def owner(self, node, rows):
        """The serverid a view's node is in server_info (None when it is not listed)."""
        addresses = ['%s:%s' % (node.host, node.port)] + ([self.this_address] if node is self.this else [])
        return mngdb.serverid_at(rows, *addresses)

    # --- planning ------------------------------------------------------------
    def plan(self, node, change, step, dbname=None):
        """Record a change; step(conn) runs on dbname (default the management database)."""
        self.changes.append('%s: %s' % (node.label, change))
        self.steps.append((node, dbname or self.mngdb, step))

    def show(self, label, before, after):
        """Add lines to a node's diff: every change of one run shows, whatever else it changes."""
        self.before[label] = self.before.get(label, '') + before
        self.after[label] = self.after.get(label, '') + after

    def pair_views(self, require_all):
        """This node's and its peer's management databases, whose server_info must agree:
        ([(node, conn, server_info rows)], [errors of the nodes that did not answer])."""
        conn = self.conn(self.this, self.mngdb)
        rows = mngdb.read_server_info(conn)
        views = [(self.this, conn, rows)]
        peer = find_peer(self.this, self.p, rows, self.this_address)
        unreached = []
        if peer is not None:
            try:
                peer_conn = self.conn(peer, self.mngdb)
                views.append((peer, peer_conn, mngdb.read_server_info(peer_conn)))
            except ForestPgError as exc:
                if require_all:
                    raise mngdb.MngdbError('%s; this change must be made on both nodes, so nothing was changed' % exc)
                unreached.append(exc.as_dict())
        elif require_all:
            raise mngdb.MngdbError('cannot find the other node in server_info of %s: give peer_host' % self.this.label)
        for node, node_conn, _rows in views:
            missing = mngdb.missing_tables(node_conn)
            if missing:
                raise mngdb.MngdbError('the management database of %s is missing %s: recreate it (forest_mngdb with '
                                       'servers=... overwrite=true on that node, or playbooks/provision.yml) before '
                                       'changing it; nothing was changed' % (node.label, ', '.join(missing)))
        differing = [view for view in views[1:] if mngdb.urls_of(view[2]) != mngdb.urls_of(rows)]
        if differing:
            raise mngdb.MngdbError('the pair is misconfigured: server_info differs (%s has %s, %s has %s); refusing to '
                                   'act on it. Make both identical first (servers + overwrite=true on the wrong node)'
                                   % (self.this.label, urls_text(rows), differing[0][0].label,
                                      urls_text(differing[0][2])))
        return views, unreached

    def refuse_if_drivers(self, nodes, what):
        found = mngdb.application_sessions([(node.label, self.conn(node, 'postgres')) for node in nodes],
                                           [self.userdb, self.mngdb])
        self.sessions.update((node.label, found.get(node.label, [])) for node in nodes)
        if found and not self.options.force:
            raise mngdb.MngdbError('cannot %s while drivers or other sessions are connected (the PostgresForest guide '
                                   'forbids it); stop the applications, or set force=true. Connected: %s'
                                   % (what, mngdb.describe_applications(found)))

    # --- applying ------------------------------------------------------------
    def apply(self):
        """Run the planned steps in order.  CREATE DATABASE runs on its own; the
        management database changes of each node commit together, or not at all."""
        with contextlib.ExitStack() as transactions:
            open_on = set()
            for node, dbname, step in self.steps:
                conn = self.conn(node, dbname)
                if dbname == self.mngdb and node.label not in open_on:
                    transactions.enter_context(conn.transaction())
                    open_on.add(node.label)
                try:
                    step(conn)
                except ForestPgError as exc:  # leaving the block rolls back every node's transaction
                    if dbname != self.mngdb:
                        raise
                    raise mngdb.MngdbError('%s; the management database changes were rolled back on every node: run '
                                           'it again once both nodes answer' % exc)
        self.steps = []

    def apply_unless_checking(self):
        if not self.check_mode:
            self.apply()

    def diff(self):
        """--diff: each node's rows before and after."""
        return [dict(before_header=label, after_header=label, before=self.before.get(label, ''),
                     after=self.after.get(label, '')) for label in sorted(self.after)]

    def failure_result(self):
        """What a failed run reports: the changes applied before it (none when it refused)."""
        return dict(changes=self.changes)


def urls_text(rows):
    return ', '.join('%s=%s' % pair for pair in mngdb.urls_of(rows))
