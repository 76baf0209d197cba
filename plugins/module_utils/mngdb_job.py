# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""forest_mngdb's job: create and keep the management databases of a pair (createmngdb.sh),
change their settings and validities on both nodes, and keep the pair's record of its nodes'
identities.  Everything the DBA asked for is checked before the first connection."""

from __future__ import annotations

from .forest_pg import ForestPgError
from . import mngdb
from . import node_identity
from . import poll_interval
from .mngdb_plan import MngdbPlan, urls_text


class Keeper(MngdbPlan):
    """Plans the changes a forest_mngdb call asks for on the nodes' management databases, then
    applies them (check mode: only plans)."""

    def __init__(self, params, options, check_mode=False, log=None):
        # Raised before the job exists, so a refusal reports no partial result.
        self.desired = mngdb.desired_server_info(options.servers, params['userdb']) if options.servers else None
        self.global_config = mngdb.validate_settings('global_config', options.global_config)
        self.local_config = mngdb.validate_settings('local_config', options.local_config)
        super().__init__(params, options, check_mode, log)
        self.new_nodes = []  # [{serverid, reason, mngdb, message}]: nodes new to the pair, marked -1

    def run(self, diff=False):
        """The module's result; each of new_nodes is also for a warning."""
        if self.desired:
            self.ensure_present(self.desired)
            self.apply_unless_checking()
        unreached = []
        validity = self.options.validity
        if self.global_config or self.local_config or validity is not None:
            views, unreached = self.pair_views(require_all=bool(self.global_config or self.local_config))
            if self.local_config:
                self.refuse_if_drivers([view[0] for view in views], 'change local_config')
            if self.global_config:
                self.change_config(views, 'global_config', self.global_config)
            if self.local_config:
                self.change_config(views, 'local_config', self.local_config)
            if validity is not None:
                self.change_validity(views, self.options.serverid, validity)
                if validity == 1:
                    self.change_identity_on_valid(views, self.options.serverid)
            self.apply_unless_checking()
        if self.options.record_identity:
            views, more_unreached = self.pair_views(require_all=False)
            unreached += more_unreached
            self.record_identities(views)
            self.apply_unless_checking()
        result = dict(changed=bool(self.changes), changes=self.changes, unreached=unreached,
                      driver_sessions=self.sessions, new_nodes=self.new_nodes)
        if diff and self.changes:
            result['diff'] = self.diff()
        return result

    # --- servers: this node's management database --------------------------------------------
    def ensure_present(self, desired):
        admin = self.conn(self.this, 'postgres')
        label = self.this.label
        missing = [name for name in (self.userdb, self.mngdb) if not mngdb.database_exists(admin, name)]
        if self.userdb in missing and not self.options.create_userdb:
            raise mngdb.MngdbError('user database %s does not exist on %s: create it, or set create_userdb=true'
                                   % (self.userdb, label))
        me, peer_sid, peer = self.locate(desired)
        peer_state = None
        reason = None
        if me is not None and missing:
            peer_state = self.read_peer(peer)
            reason = node_identity.new_node_reason(me, missing, peer_sid, peer_state)
        if reason:
            desired = self.mark_new(me, peer_sid, peer, peer_state, desired, reason)
        if self.userdb in missing:
            self.plan(self.this, 'create database %s' % self.userdb,
                      lambda conn: mngdb.create_database(conn, self.userdb), 'postgres')
        if self.mngdb in missing:
            identities = (peer_state or {}).get('identities') or [] if reason else []
            settings = pair_settings((peer_state or {}).get('settings') if reason else None)
            self.plan(self.this, 'create database %s with its tables, %s and server_info' % (
                self.mngdb, "the pair's settings as serverid %d has them" % peer_sid
                if (peer_state or {}).get('settings') and reason else 'defaults'),
                lambda conn: self.create_mngdb(conn, desired, identities, settings), 'postgres')
            self.show(label, '', describe(desired, settings['global_config'], dict(
                (key if configid == mngdb.DEFAULT_CONFIGID else '%s %s' % (configid, key), value)
                for configid, values in settings['local_config'].items() for key, value in values.items())))
            return
        conn = self.conn(self.this, self.mngdb)
        missing = mngdb.missing_tables(conn)
        if missing:
            raise mngdb.MngdbError('%s/%s is broken: tables missing: %s. Drop it (after saving broken_log) and run '
                                   'again to re-create it' % (label, self.mngdb, ', '.join(missing)))
        current = mngdb.read_server_info(conn)
        if mngdb.urls_of(current) != mngdb.urls_of(desired):
            if not self.options.overwrite:
                raise mngdb.MngdbError('%s/%s already registers another pair (%s) than asked (%s); nothing changed. '
                                       'Check the order of servers, or set overwrite=true to replace it'
                                       % (label, self.mngdb, urls_text(current), urls_text(desired)))
            self.refuse_if_drivers([self.this], 'rewrite server_info')
            kept = dict((row['serverid'], row) for row in current)
            rows = [dict(row, udb_validity=kept[row['serverid']]['udb_validity']
                         if row['serverid'] in kept and kept[row['serverid']]['udb_url'] == row['udb_url'] else 1)
                    for row in desired]
            self.show(label, mngdb.server_info_text(current), mngdb.server_info_text(rows))
            self.plan(self.this, 'server_info %s -> %s' % (urls_text(current), urls_text(rows)),
                      lambda conn: mngdb.write_server_info(conn, rows))
        elif reason and dict((row['serverid'], row['udb_validity']) for row in current).get(me) != -1:
            self.plan(self.this, 'udb_validity of serverid %d -> -1 (new to the pair)' % me,
                      lambda conn: mngdb.set_validity(conn, me, -1))
        if not node_identity.identity_tables_present(conn):
            self.plan(self.this, 'add the identity tables (%s)' % ', '.join(node_identity.IDENTITY_TABLES),
                      lambda c: node_identity.create_identity_tables(c, node_identity.ORIGIN_ADOPTED))
        self.fill_defaults(conn)

    def locate(self, desired):
        """(this node's serverid, the peer's, the peer Node) from the servers asked for; this
        node's serverid is None when it is not one of them (then nothing is judged)."""
        this = self.owner(self.this, desired)
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
            return dict(mngdb=True, identities=node_identity.read_identities(conn), origin=node_identity.read_origin(conn),
                        server_info=mngdb.read_server_info(conn), settings=self.peer_settings(conn))
        except ForestPgError:
            return None

    @staticmethod
    def peer_settings(conn):
        """The pair's settings as the peer holds them, its DBA's poll interval rather than one an online
        recovery or compare lowered for its length."""
        settings = mngdb.read_all_config(conn)
        settings['global_config'] = poll_interval.dba_settings(conn, settings['global_config'])
        return settings

    def mark_new(self, me, peer_sid, peer, peer_state, desired, reason):
        """This node is new to the pair: broken (-1) in the peer's view at once (before its databases
        exist, so no driver ever sees it valid), and in its own view from the start; the peer's own
        validity and the pair's record of identities as the peer has them."""
        self.new_nodes.append(dict(serverid=me, reason=reason, mngdb=self.mngdb,
                                   message=node_identity.new_node_message(me, reason)))
        seen = dict((row['serverid'], row['udb_validity']) for row in peer_state['server_info'])
        if seen.get(me, -1) != -1:
            self.show(peer.label, 'server_info serverid %d udb_validity = %s\n' % (me, seen[me]),
                      'server_info serverid %d udb_validity = -1\n' % me)
            self.plan(peer, 'udb_validity of serverid %d %s -> -1 (new to the pair)' % (me, seen[me]),
                      lambda conn: mngdb.set_validity(conn, me, -1))
            self.apply_unless_checking()
        return [dict(row, udb_validity=-1 if row['serverid'] == me else seen.get(row['serverid'], 1))
                for row in desired]

    def fill_defaults(self, conn):
        for table, defaults in (('global_config', mngdb.GLOBAL_CONFIG), ('local_config', mngdb.LOCAL_CONFIG)):
            present = mngdb.read_config(conn, table)
            absent = dict((key, spec[0]) for key, spec in defaults.items() if key not in present)
            if absent:
                self.show(self.this.label, '', ''.join(
                    '%s %s = %s\n' % (table, key, value) for key, value in sorted(absent.items())))
                self.plan(self.this, '%s: add default rows %s' % (table, ', '.join(sorted(absent))),
                          lambda c, t=table, a=absent: mngdb.write_config(c, t, a))

    def create_mngdb(self, admin, desired, identities=(), settings=None):
        settings = settings or pair_settings(None)
        mngdb.create_database(admin, self.mngdb)
        with self.this.connect(self.mngdb) as conn:
            # One transaction: a peer provisioned at the same moment sees no tables or all of them, never
            # the guide's tables without the identity ones (which would read as a pair from before them).
            with conn.transaction():
                mngdb.create_schema(conn)
                mngdb.write_config(conn, 'global_config', settings['global_config'])
                for configid, values in sorted(settings['local_config'].items()):
                    mngdb.write_config(conn, 'local_config', values, configid)
                mngdb.write_server_info(conn, desired)
                node_identity.create_identity_tables(conn, node_identity.ORIGIN_CREATED)
                for row in identities:  # the pair's record, the same in both views
                    node_identity.write_identity(conn, row['serverid'], row)

    # --- settings and validity, on both views ------------------------------------------------
    def change_config(self, views, table, wanted):
        for node, conn, _rows in views:
            current = mngdb.read_config(conn, table, self.options.configid)
            delta = dict((k, v) for k, v in wanted.items() if current.get(k) != v)
            self.show(node.label, '', '')
            for key in sorted(delta):
                self.show(node.label, '%s %s = %s\n' % (table, key, current.get(key)),
                          '%s %s = %s\n' % (table, key, delta[key]))
                self.plan(node, '%s %s %s -> %s' % (table, key, current.get(key), delta[key]),
                          lambda c, k=key, v=delta[key]: mngdb.write_config(c, table, {k: v}, self.options.configid))

    def change_validity(self, views, serverid, validity):
        for node, _conn, rows in views:
            current = dict((row['serverid'], row['udb_validity']) for row in rows)
            if serverid not in current:
                raise mngdb.MngdbError('serverid %d is not in server_info of %s' % (serverid, node.label))
            if current[serverid] != validity:
                self.show(node.label, 'server_info serverid %d udb_validity = %s\n' % (serverid, current[serverid]),
                          'server_info serverid %d udb_validity = %s\n' % (serverid, validity))
                self.plan(node, 'udb_validity of serverid %d %s -> %s' % (serverid, current[serverid], validity),
                          lambda c: mngdb.set_validity(c, serverid, validity))

    # --- the pair's record of its nodes' identities -------------------------------------------
    def change_identity_on_valid(self, views, serverid):
        """forest_mngdb serverid=N validity=1 is the DBA saying node N holds the pair's data (after an
        offline repair): the pair accepts it as it is now, or it would stay `replaced`."""
        target = [(node, conn) for node, conn, rows in views if self.owner(node, rows) == serverid]
        if not target:
            return
        node, conn = target[0]
        actual = node_identity.current_identity(conn) if node_identity.identity_tables_present(conn) else None
        recorded = [row for _n, c, _r in views for row in (node_identity.read_identities(c) or []) if row['serverid'] == serverid]
        if actual and node_identity.identity_verdict(actual, recorded)[0] == 'matches' and len(recorded) == len(views):
            return
        self.plan(node, 'record the identity of serverid %d as it is now (the pair accepts it)' % serverid,
                  lambda c: node_identity.accept_node(serverid, c, [view[1] for view in views]))

    def record_identities(self, views):
        """The pair's record of both nodes, in both views: a node not recorded yet is recorded while it
        is valid (1) in both views (a new pair, or one from before identities: what they are now); a
        recorded one missing from a view is copied there; a node that is not the one recorded is marked
        broken (-1) in every view and named."""
        for node, conn, _rows in views:
            if not node_identity.identity_tables_present(conn):
                self.plan(node, 'add the identity tables (%s)' % ', '.join(node_identity.IDENTITY_TABLES),
                          lambda c: node_identity.create_identity_tables(c, node_identity.ORIGIN_ADOPTED))
        if self.check_mode and self.steps:
            return  # what they would hold cannot be read before they exist
        self.apply()
        recorded = dict((id(conn), node_identity.read_identities(conn)) for _n, conn, _r in views)
        for node, conn, rows in views:
            sid = self.owner(node, rows)
            if sid is None:
                continue
            actual = node_identity.current_identity(conn)
            rows_for = [row for found in recorded.values() for row in found if row['serverid'] == sid]
            verdict, reason = node_identity.identity_verdict(actual, rows_for)
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
                                               message=node_identity.new_node_message(sid, reason)))
            elif verdict == 'matches':
                for view_node, view_conn, _vr in views:
                    if not any(row['serverid'] == sid for row in recorded[id(view_conn)]):
                        self.plan(view_node, 'record the identity of serverid %d (%s)' % (sid, node_identity.identity_text(actual)),
                                  lambda c, s=sid, a=actual: node_identity.write_identity(c, s, a))
            elif verdict == 'unrecorded' and len(views) == 2 and validity == [1, 1]:
                for view_node, _vc, _vr in views:
                    self.plan(view_node, 'record the identity of serverid %d (%s)' % (sid, node_identity.identity_text(actual)),
                              lambda c, s=sid, a=actual: node_identity.write_identity(c, s, a))


def pair_settings(peer_settings):
    """The settings a new management database starts with (pure): the guide's defaults, overlaid by the
    peer's rows when this node is new to a pair whose other node holds them (a rebuilt host must not come
    back with, say, the default 30 s poll interval where the pair runs 1 s: drivers reading its view
    would poll the slower one, and a recovery waits for them).  {global_config: {key: value},
    local_config: {configid: {key: value}}}."""
    peer_settings = peer_settings or {}
    global_config = dict((key, spec[0]) for key, spec in mngdb.GLOBAL_CONFIG.items())
    global_config.update(peer_settings.get('global_config') or {})
    local_config = dict((configid, dict(values)) for configid, values in (peer_settings.get('local_config') or {}).items())
    defaults = dict((key, spec[0]) for key, spec in mngdb.LOCAL_CONFIG.items())
    local_config[mngdb.DEFAULT_CONFIGID] = dict(defaults, **local_config.get(mngdb.DEFAULT_CONFIGID, {}))
    return dict(global_config=global_config, local_config=local_config)


def describe(rows, global_config, local_config):
    """A new management database's rows, as --diff shows them."""
    text = ''.join('server_info %s %s %s\n' % (r['serverid'], r['udb_url'], r.get('udb_validity', 1))
                   for r in rows)
    for table, values in (('global_config', global_config), ('local_config', local_config)):
        text += ''.join('%s %s = %s\n' % (table, key, value[0] if isinstance(value, tuple) else value)
                        for key, value in sorted(values.items()))
    return text
