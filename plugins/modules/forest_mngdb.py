#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: forest_mngdb
short_description: Create and keep the PostgresForest management database
description:
  - The C(createmngdb.sh) equivalent and the management database's keeper.
  - With O(servers), creates the user database (optional) and C(<userdb>_pghainfo) on the node
    it talks to, with the tables C(server_info), C(global_config), C(local_config),
    C(broken_log_detail), the view C(broken_log) and the default rows of the PostgresForest guide, and registers
    serverid 0 and 1 in the order given. An existing, correct management database is left alone;
    one whose C(server_info) differs is refused unless O(overwrite=true).
  - With O(global_config), changes keys on B(both) nodes to the same value (both must answer).
  - With O(local_config), the same, but only while no driver session is connected to the user or
    management database on either node, unless O(force=true).
  - With O(serverid) and O(validity), sets that server's C(udb_validity) in every reachable
    management database and notifies listening drivers.
  - Before changing anything it reads both nodes' C(server_info); if they differ the pair is
    misconfigured and nothing is done. Every value is validated before any connection writes.
  - Every management database holds the pair's record of both nodes' identity (table C(node_identity), the
    server's C(system_identifier) and the management database's own id from C(mngdb_origin)), the same rows in
    both views. A node new to the pair is never valid, see O(servers) and O(record_identity).
version_added: 0.1.0
author: pgforest.cluster developers (@pgforest)
extends_documentation_fragment:
  - pgforest.cluster.connection
  - pgforest.cluster.pair
options:
  servers:
    description:
      - The pair as C(host:port), serverid 0 first. Must be in the same order on both nodes.
      - Creates (or checks) this node's management database.
      - When this node's user or management database is missing while the other node's management database
        serves the pair (it recorded the nodes' identities, or it is from before identities), this node is new
        to the pair (a rebuilt host, a lost data directory), so it is first set to C(-1) in the other node's
        management database, then its databases are created with itself C(-1), and a warning says that
        C(playbooks/recover.yml) brings it back. If the other node does not answer, nothing is created.
      - Adds the identity tables to a management database from before them.
    type: list
    elements: str
  create_userdb:
    description: Create the user database too when it is missing (with O(servers)).
    type: bool
    default: true
  overwrite:
    description: Rewrite a C(server_info) that differs from O(servers) (drivers must be stopped unless O(force=true)).
    type: bool
    default: false
  global_config:
    description: C(global_config) keys to set on both nodes, validated against the guide's ranges.
    type: dict
  local_config:
    description: C(local_config) keys to set on both nodes for O(configid); drivers must be stopped unless O(force=true).
    type: dict
  configid:
    description: C(local_config) configuration id.
    type: str
    default: DEFAULT
  serverid:
    description: Server whose validity to set (with O(validity)).
    type: int
    choices: [0, 1]
  validity:
    description: C(1) valid, C(0) write-suppressed, C(-1) broken.
    type: int
    choices: [-1, 0, 1]
  force:
    description: Change C(local_config) or C(server_info) even while driver sessions are connected.
    type: bool
    default: false
  record_identity:
    description:
      - Compare each node with the pair's record of its identity, in both management databases.
      - A node not recorded yet is recorded as it is now while it is valid (C(1)) in both views (a new pair,
        or one provisioned before identities were recorded); a recorded row missing from a view is copied there.
      - A node whose C(system_identifier) or management database id differs from the record is not the node
        the pair knew (a new initdb, a restored copy), so it is set to C(-1) in every view and named in a warning.
      - O(validity=1) records the node as it is now too (the DBA says it holds the pair's data); so do
        M(pgforest.cluster.forest_recover) and M(pgforest.cluster.forest_restore).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Reports what would change, changes nothing.
  diff_mode:
    support: full
    description: Shows the management database rows before and after, per node.
requirements:
  - psycopg >= 3.1
notes:
  - The PostgresForest guide (§9.2, §10.1) allows changing C(server_info) and C(local_config) only while no driver runs; this
    module checks C(pg_stat_activity) on both nodes for sessions other than its own.
'''

EXAMPLES = r'''
- name: Create the management database on each node (same order on both)
  pgforest.cluster.forest_mngdb:
    userdb: userdb
    servers: [10.0.0.11:5432, 10.0.0.12:5432]

- name: Change the driver's read interval on both nodes
  pgforest.cluster.forest_mngdb:
    userdb: userdb
    global_config:
      mngdb_read_duration: 10
  run_once: true

- name: Record both nodes' identities (provision does it once both nodes have their databases)
  pgforest.cluster.forest_mngdb:
    userdb: userdb
    record_identity: true
  run_once: true

- name: Mark serverid 1 valid again after an offline repair
  pgforest.cluster.forest_mngdb:
    userdb: userdb
    serverid: 1
    validity: 1
  run_once: true
'''

RETURN = r'''
changes:
  description: What was changed (or would be, in check mode), one line each.
  returned: always
  type: list
  elements: str
  sample: ["127.0.0.11:5432: global_config mngdb_read_duration 30 -> 10"]
unreached:
  description: With O(validity), the nodes that did not answer (node, SQLSTATE, detail, hint); the change was
    made on the others. O(global_config) and O(local_config) need both nodes and are refused instead.
  returned: always
  type: list
  elements: dict
driver_sessions:
  description: Sessions other than this module's on the user and management databases, per node (checked with
    O(local_config) and O(overwrite); empty otherwise).
  returned: always
  type: dict
new_nodes:
  description: Nodes found new to the pair (O(servers), O(record_identity)) and marked C(-1), each with its
    C(serverid), C(reason), C(mngdb) and the C(message) also given as a warning.
  returned: always
  type: list
  elements: dict
  sample: [{"serverid": 1, "mngdb": "appdb_pghainfo",
            "reason": "its forest databases are missing while serverid 0 has them (a new server: ...)",
            "message": "serverid 1 is new to the pair: ... playbooks/recover.yml brings it back ..."}]
'''

import contextlib

from ..module_utils.argument_specs import pair_argument_spec
from ..module_utils.forest_pg import ForestPgError, Node
from ..module_utils import mngdb
from ..module_utils.module_runner import forest_module, run_job


class Keeper(object):
    """Plans changes on the nodes' management databases, then applies them."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.userdb = self.params['userdb']
        self.mngdb = mngdb.mngdb_name(self.userdb)
        self.this = Node.from_params(self.params)
        self.conns = {}
        self.changes = []
        self.steps = []  # (node, database, function(conn)), applied in order
        self.before = {}
        self.after = {}
        self.sessions = {}
        self.new_nodes = []  # [{serverid, reason, mngdb, message}]: nodes new to the pair, marked -1

    # --- connections ---------------------------------------------------------
    def conn(self, node, dbname):
        key = (node.label, dbname)
        if key not in self.conns:
            self.conns[key] = node.connect(dbname)
        return self.conns[key]

    def peer_node(self, rows):
        if self.params['peer_host']:
            return self.this.sibling(self.params['peer_host'], self.params['peer_port'] or self.this.port)
        this = self.this_address()
        for row in rows:
            host, port, _db = mngdb.parse_udb_url(row['udb_url'])
            if (host, port) != (self.this.host, self.this.port) and '%s:%s' % (host, port) != this:
                return self.this.sibling(host, port)
        return None

    def this_address(self):
        row = self.conn(self.this, 'postgres').execute(
            'SELECT host(inet_server_addr()), inet_server_port()').fetchone()
        return '%s:%s' % row

    # --- planning ------------------------------------------------------------
    def plan(self, node, change, step, dbname=None):
        """Record a change; step(conn) runs on dbname (default the management database)."""
        self.changes.append('%s: %s' % (node.label, change))
        self.steps.append((node, dbname or self.mngdb, step))

    def ensure_present(self, desired):
        admin = self.conn(self.this, 'postgres')
        label = self.this.label
        missing = [name for name in (self.userdb, self.mngdb) if not mngdb.database_exists(admin, name)]
        if self.userdb in missing and not self.params['create_userdb']:
            raise mngdb.MngdbError('user database %s does not exist on %s: create it, or set create_userdb=true'
                                   % (self.userdb, label))
        me, peer_sid, peer = self.locate(desired)
        peer_state = None
        reason = None
        if me is not None and missing:
            peer_state = self.read_peer(peer)
            reason = mngdb.new_node_reason(me, missing, peer_sid, peer_state)
        if reason:
            desired = self.mark_new(me, peer_sid, peer, peer_state, desired, reason)
        if self.userdb in missing:
            self.plan(self.this, 'create database %s' % self.userdb,
                      lambda conn: mngdb.create_database(conn, self.userdb), 'postgres')
        if self.mngdb in missing:
            identities = (peer_state or {}).get('identities') or [] if reason else []
            self.plan(self.this, 'create database %s with its tables, defaults and server_info' % self.mngdb,
                      lambda conn: self.create_mngdb(conn, desired, identities), 'postgres')
            self.before[label] = ''
            self.after[label] = self.describe(desired, mngdb.GLOBAL_CONFIG, mngdb.LOCAL_CONFIG)
            return
        conn = self.conn(self.this, self.mngdb)
        missing = mngdb.missing_tables(conn)
        if missing:
            raise mngdb.MngdbError('%s/%s is broken: tables missing: %s. Drop it (after saving broken_log) and run '
                                   'again to re-create it' % (label, self.mngdb, ', '.join(missing)))
        current = mngdb.read_server_info(conn)
        if mngdb.urls_of(current) != mngdb.urls_of(desired):
            if not self.params['overwrite']:
                raise mngdb.MngdbError('%s/%s already registers another pair (%s) than asked (%s); nothing changed. '
                                       'Check the order of servers, or set overwrite=true to replace it'
                                       % (label, self.mngdb, _urls(current), _urls(desired)))
            self.refuse_if_drivers([self.this], 'rewrite server_info')
            kept = dict((row['serverid'], row) for row in current)
            rows = [dict(row, udb_validity=kept[row['serverid']]['udb_validity']
                         if row['serverid'] in kept and kept[row['serverid']]['udb_url'] == row['udb_url'] else 1)
                    for row in desired]
            self.before[label] = mngdb.server_info_text(current)
            self.after[label] = mngdb.server_info_text(rows)
            self.plan(self.this, 'server_info %s -> %s' % (_urls(current), _urls(rows)),
                      lambda conn: mngdb.write_server_info(conn, rows))
        elif reason and dict((row['serverid'], row['udb_validity']) for row in current).get(me) != -1:
            self.plan(self.this, 'udb_validity of serverid %d -> -1 (new to the pair)' % me,
                      lambda conn: mngdb.set_validity(conn, me, -1))
        if not mngdb.identity_tables_present(conn):
            self.plan(self.this, 'add the identity tables (%s)' % ', '.join(mngdb.IDENTITY_TABLES),
                      lambda c: mngdb.create_identity_tables(c, mngdb.ORIGIN_ADOPTED))
        self.fill_defaults(conn)

    def locate(self, desired):
        """(this node's serverid, the peer's, the peer Node) from the servers asked for; this
        node's serverid is None when it is not one of them (then nothing is judged)."""
        this = None
        for row in desired:
            host, port, _db = mngdb.parse_udb_url(row['udb_url'])
            if (host, port) == (self.this.host, self.this.port):
                this = row['serverid']
        if this is None:
            address = self.this_address()
            for row in desired:
                host, port, _db = mngdb.parse_udb_url(row['udb_url'])
                if '%s:%s' % (host, port) == address:
                    this = row['serverid']
        if this is None:
            return None, None, None
        other = [row for row in desired if row['serverid'] != this][0]
        host, port, _db = mngdb.parse_udb_url(other['udb_url'])
        return this, other['serverid'], self.this.sibling(host, port)

    def read_peer(self, peer):
        """What the peer holds of this pair ({mngdb, identities, origin, server_info}), None when it does not answer."""
        try:
            if not mngdb.database_exists(self.conn(peer, 'postgres'), self.mngdb):
                return dict(mngdb=False, identities=None, origin=None, server_info=[])
            conn = self.conn(peer, self.mngdb)
            if mngdb.missing_tables(conn):  # being created by this same run on the peer (one transaction)
                return dict(mngdb=False, identities=None, origin=None, server_info=[])
            return dict(mngdb=True, identities=mngdb.read_identities(conn), origin=mngdb.read_origin(conn),
                        server_info=mngdb.read_server_info(conn))
        except ForestPgError:
            return None

    def mark_new(self, me, peer_sid, peer, peer_state, desired, reason):
        """This node is new to the pair: broken (-1) in the peer's view at once (before its databases
        exist, so no driver ever sees it valid), and in its own view from the start; the peer's own
        validity and the pair's record of identities as the peer has them."""
        self.new_nodes.append(dict(serverid=me, reason=reason, mngdb=self.mngdb,
                                   message=mngdb.new_node_message(me, reason)))
        seen = dict((row['serverid'], row['udb_validity']) for row in peer_state['server_info'])
        if seen.get(me, -1) != -1:
            self.before.setdefault(peer.label, '')
            self.before[peer.label] += 'server_info serverid %d udb_validity = %s\n' % (me, seen[me])
            self.after[peer.label] = 'server_info serverid %d udb_validity = -1\n' % me
            self.plan(peer, 'udb_validity of serverid %d %s -> -1 (new to the pair)' % (me, seen[me]),
                      lambda conn: mngdb.set_validity(conn, me, -1))
            if not self.module.check_mode:
                self.apply()
        return [dict(row, udb_validity=-1 if row['serverid'] == me else seen.get(row['serverid'], 1))
                for row in desired]

    def fill_defaults(self, conn):
        for table, defaults in (('global_config', mngdb.GLOBAL_CONFIG), ('local_config', mngdb.LOCAL_CONFIG)):
            present = mngdb.read_config(conn, table)
            absent = dict((key, spec[0]) for key, spec in defaults.items() if key not in present)
            if absent:
                self.before.setdefault(self.this.label, '')
                self.after[self.this.label] = self.after.get(self.this.label, '') + ''.join(
                    '%s %s = %s\n' % (table, key, value) for key, value in sorted(absent.items()))
                self.plan(self.this, '%s: add default rows %s' % (table, ', '.join(sorted(absent))),
                          lambda c, t=table, a=absent: mngdb.write_config(c, t, a))

    def create_mngdb(self, admin, desired, identities=()):
        mngdb.create_database(admin, self.mngdb)
        with self.this.connect(self.mngdb) as conn:
            # One transaction: a peer provisioned at the same moment sees no tables or all of them, never
            # the guide's tables without the identity ones (which would read as a pair from before them).
            with conn.transaction():
                mngdb.create_schema(conn)
                mngdb.write_config(conn, 'global_config', dict((k, v[0]) for k, v in mngdb.GLOBAL_CONFIG.items()))
                mngdb.write_config(conn, 'local_config', dict((k, v[0]) for k, v in mngdb.LOCAL_CONFIG.items()))
                mngdb.write_server_info(conn, desired)
                mngdb.create_identity_tables(conn, mngdb.ORIGIN_CREATED)
                for row in identities:  # the pair's record, the same in both views
                    mngdb.write_identity(conn, row['serverid'], row)

    def describe(self, rows, global_config, local_config):
        text = ''.join('server_info %s %s %s\n' % (r['serverid'], r['udb_url'], r.get('udb_validity', 1))
                       for r in rows)
        for table, values in (('global_config', global_config), ('local_config', local_config)):
            text += ''.join('%s %s = %s\n' % (table, key, value[0] if isinstance(value, tuple) else value)
                            for key, value in sorted(values.items()))
        return text

    def pair_views(self, require_all):
        """This node's and its peer's management databases, whose server_info must agree."""
        conn = self.conn(self.this, self.mngdb)
        rows = mngdb.read_server_info(conn)
        views = [(self.this, conn, rows)]
        peer = self.peer_node(rows)
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
                                   % (self.this.label, _urls(rows), differing[0][0].label, _urls(differing[0][2])))
        return views, unreached

    def refuse_if_drivers(self, nodes, what):
        found = mngdb.application_sessions([(node.label, self.conn(node, 'postgres')) for node in nodes],
                                           [self.userdb, self.mngdb])
        self.sessions.update((node.label, found.get(node.label, [])) for node in nodes)
        if found and not self.params['force']:
            raise mngdb.MngdbError('cannot %s while drivers or other sessions are connected (the PostgresForest guide '
                                   'forbids it); stop the applications, or set force=true. Connected: %s'
                                   % (what, mngdb.describe_applications(found)))

    def change_config(self, views, table, wanted):
        for node, conn, _rows in views:
            current = mngdb.read_config(conn, table, self.params['configid'])
            delta = dict((k, v) for k, v in wanted.items() if current.get(k) != v)
            self.before.setdefault(node.label, '')
            self.after.setdefault(node.label, '')
            for key in sorted(delta):
                self.before[node.label] += '%s %s = %s\n' % (table, key, current.get(key))
                self.after[node.label] += '%s %s = %s\n' % (table, key, delta[key])
                self.plan(node, '%s %s %s -> %s' % (table, key, current.get(key), delta[key]),
                          lambda c, k=key, v=delta[key]: mngdb.write_config(c, table, {k: v}, self.params['configid']))

    def change_validity(self, views, serverid, validity):
        for node, _conn, rows in views:
            current = dict((row['serverid'], row['udb_validity']) for row in rows)
            if serverid not in current:
                raise mngdb.MngdbError('serverid %d is not in server_info of %s' % (serverid, node.label))
            if current[serverid] != validity:
                self.before[node.label] = 'server_info serverid %d udb_validity = %s\n' % (serverid, current[serverid])
                self.after[node.label] = 'server_info serverid %d udb_validity = %s\n' % (serverid, validity)
                self.plan(node, 'udb_validity of serverid %d %s -> %s' % (serverid, current[serverid], validity),
                          lambda c: mngdb.set_validity(c, serverid, validity))

    def change_identity_on_valid(self, views, serverid):
        """forest_mngdb serverid=N validity=1 is the DBA saying node N holds the pair's data (after an
        offline repair): the pair accepts it as it is now, or it would stay `replaced`."""
        target = [(node, conn) for node, conn, rows in views if self.owner(node, rows) == serverid]
        if not target:
            return
        node, conn = target[0]
        actual = mngdb.current_identity(conn) if mngdb.identity_tables_present(conn) else None
        recorded = [row for _n, c, _r in views for row in (mngdb.read_identities(c) or []) if row['serverid'] == serverid]
        if actual and mngdb.identity_verdict(actual, recorded)[0] == 'matches' and len(recorded) == len(views):
            return
        self.plan(node, 'record the identity of serverid %d as it is now (the pair accepts it)' % serverid,
                  lambda c: mngdb.accept_node(serverid, c, [view[1] for view in views]))

    def owner(self, node, rows):
        """The serverid a view's node is in server_info (None when it is not listed)."""
        for row in rows:
            host, port, _db = mngdb.parse_udb_url(row['udb_url'])
            if (host, port) == (node.host, node.port):
                return row['serverid']
        if node is self.this:
            address = self.this_address()
            for row in rows:
                if row['udb_url'].split('/', 1)[0] == address:
                    return row['serverid']
        return None

    def record_identities(self, views):
        """The pair's record of both nodes, in both views: a node not recorded yet is recorded while it
        is valid (1) in both views (a new pair, or one from before identities: what they are now); a
        recorded one missing from a view is copied there; a node that is not the one recorded is marked
        broken (-1) in every view and named."""
        for node, conn, _rows in views:
            if not mngdb.identity_tables_present(conn):
                self.plan(node, 'add the identity tables (%s)' % ', '.join(mngdb.IDENTITY_TABLES),
                          lambda c: mngdb.create_identity_tables(c, mngdb.ORIGIN_ADOPTED))
        if self.module.check_mode and self.steps:
            return  # what they would hold cannot be read before they exist
        self.apply()
        recorded = dict((id(conn), mngdb.read_identities(conn)) for _n, conn, _r in views)
        for node, conn, rows in views:
            sid = self.owner(node, rows)
            if sid is None:
                continue
            actual = mngdb.current_identity(conn)
            rows_for = [row for found in recorded.values() for row in found if row['serverid'] == sid]
            verdict, reason = mngdb.identity_verdict(actual, rows_for)
            validity = [dict((r['serverid'], r['udb_validity']) for r in view_rows).get(sid)
                        for _n, _c, view_rows in views]
            if verdict == 'replaced':
                marked = False
                for view_node, view_conn, view_rows in views:
                    seen = dict((r['serverid'], r['udb_validity']) for r in view_rows).get(sid)
                    if seen != -1:
                        marked = True
                        self.plan(view_node, 'udb_validity of serverid %d %s -> -1 (not the node the pair recorded)'
                                  % (sid, seen), lambda c, s=sid: mngdb.set_validity(c, s, -1))
                if marked:  # one warning per event: a node provision just made -1 was named when it was made
                    self.new_nodes.append(dict(serverid=sid, reason=reason, mngdb=self.mngdb,
                                               message=mngdb.new_node_message(sid, reason)))
            elif verdict == 'matches':
                for view_node, view_conn, _vr in views:
                    if not any(row['serverid'] == sid for row in recorded[id(view_conn)]):
                        self.plan(view_node, 'record the identity of serverid %d (%s)' % (sid, mngdb.identity_text(actual)),
                                  lambda c, s=sid, a=actual: mngdb.write_identity(c, s, a))
            elif verdict == 'unrecorded' and len(views) == 2 and validity == [1, 1]:
                for view_node, _vc, _vr in views:
                    self.plan(view_node, 'record the identity of serverid %d (%s)' % (sid, mngdb.identity_text(actual)),
                              lambda c, s=sid, a=actual: mngdb.write_identity(c, s, a))

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

    def failure_result(self):
        """What a failed run reports: the changes applied before it (none when it refused)."""
        return dict(changes=self.changes)

    def close(self):
        for conn in self.conns.values():
            conn.close()


def _urls(rows):
    return ', '.join('%s=%s' % pair for pair in mngdb.urls_of(rows))


def main():
    argument_spec = pair_argument_spec()
    argument_spec.update(
        servers=dict(type='list', elements='str'),
        create_userdb=dict(type='bool', default=True),
        overwrite=dict(type='bool', default=False),
        global_config=dict(type='dict'),
        local_config=dict(type='dict'),
        configid=dict(type='str', default=mngdb.DEFAULT_CONFIGID),
        serverid=dict(type='int', choices=[0, 1]),
        validity=dict(type='int', choices=[-1, 0, 1]),
        force=dict(type='bool', default=False),
        record_identity=dict(type='bool', default=False),
    )
    module = forest_module(argument_spec, required_together=[('serverid', 'validity')],
                           required_one_of=[('servers', 'global_config', 'local_config', 'validity',
                                             'record_identity')])
    run_job(module, lambda slot: manage(module, slot))


def manage(module, slot):
    params = module.params
    # Everything the user gave is checked before the first connection.
    desired = mngdb.desired_server_info(params['servers'], params['userdb']) if params['servers'] else None
    global_config = mngdb.validate_settings('global_config', params['global_config'])
    local_config = mngdb.validate_settings('local_config', params['local_config'])
    keeper = slot.job = Keeper(module)
    if desired:
        keeper.ensure_present(desired)
        if not module.check_mode:
            keeper.apply()
    unreached = []
    if global_config or local_config or params['validity'] is not None:
        views, unreached = keeper.pair_views(require_all=bool(global_config or local_config))
        if local_config:
            keeper.refuse_if_drivers([view[0] for view in views], 'change local_config')
        if global_config:
            keeper.change_config(views, 'global_config', global_config)
        if local_config:
            keeper.change_config(views, 'local_config', local_config)
        if params['validity'] is not None:
            keeper.change_validity(views, params['serverid'], params['validity'])
            if params['validity'] == 1:
                keeper.change_identity_on_valid(views, params['serverid'])
        if not module.check_mode:
            keeper.apply()
    if params['record_identity']:
        views, more_unreached = keeper.pair_views(require_all=False)
        unreached += more_unreached
        keeper.record_identities(views)
        if not module.check_mode:
            keeper.apply()
    result = dict(changed=bool(keeper.changes), changes=keeper.changes, unreached=unreached,
                  driver_sessions=keeper.sessions, new_nodes=keeper.new_nodes)
    for found in keeper.new_nodes:
        module.warn(found['message'])
    if module._diff and keeper.changes:
        result['diff'] = [dict(before_header=label, after_header=label, before=keeper.before.get(label, ''),
                               after=keeper.after.get(label, '')) for label in sorted(keeper.after)]
    return result


if __name__ == '__main__':
    main()
