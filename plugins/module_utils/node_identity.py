# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The nodes' identities: is a node the server the pair recorded, or one new to it (a rebuilt host,
a lost data directory, a restored copy), and the record a recovery leaves."""

from __future__ import annotations

from .errors import MngdbError
from .forest_pg import run

# A node is its server (system_identifier, set by initdb and kept by a physical copy) and its
# management database (mngdb_origin.mngdb_id, a random id given when the database is created,
# adopted into the identity tables or taken over by a recovery).  Every management database holds
# the pair's record of both nodes (node_identity, the same rows in both views); a node whose
# identity is not the recorded one is a new server to the pair -- a rebuilt host, a lost data
# directory, a restored copy -- and is never valid until a recovery accepts it.
# These tables are not in TABLES: a management database from before them is complete, not broken
# (the next provision adds them).
IDENTITY_TABLES = ('mngdb_origin', 'node_identity')
IDENTITY_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS mngdb_origin (
         one boolean PRIMARY KEY DEFAULT true CHECK (one),
         mngdb_id text NOT NULL,
         created_at timestamptz NOT NULL DEFAULT now(),
         how text NOT NULL CHECK (how IN ('created', 'adopted', 'recovered')))""",
    """CREATE TABLE IF NOT EXISTS node_identity (
         serverid integer PRIMARY KEY,
         system_identifier text NOT NULL,
         mngdb_id text NOT NULL,
         recorded_at timestamptz NOT NULL DEFAULT now())""",
)
# How a management database got its mngdb_id: made by forest_mngdb, given to one that existed
# before identities were recorded, or a copy of the other node's taken over by a recovery.
ORIGIN_CREATED, ORIGIN_ADOPTED, ORIGIN_RECOVERED = 'created', 'adopted', 'recovered'
RECOVER_HINT = 'playbooks/recover.yml brings it back (a copy of the valid node)'


def identity_tables_present(conn):
    rows = run(conn, "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                     "WHERE n.nspname = 'public' AND c.relname = ANY(%s) AND c.relkind = 'r'",
               [list(IDENTITY_TABLES)], action='look for the identity tables')
    return len(rows) == len(IDENTITY_TABLES)


def create_identity_tables(conn, how):
    """The identity tables, and this management database's own id (kept when it has one)."""
    for statement in IDENTITY_SCHEMA:
        run(conn, statement, action='create the identity tables')
    run(conn, 'INSERT INTO mngdb_origin (mngdb_id, how) VALUES (gen_random_uuid()::text, %s) '
              'ON CONFLICT (one) DO NOTHING', [how], action='give the management database its id')


def new_mngdb_id(conn, how):
    """A fresh id for this management database: a copy of the other node's (a recovery) is a
    management database of its own from now on, so a later copy of the other node is told apart."""
    run(conn, 'UPDATE mngdb_origin SET mngdb_id = gen_random_uuid()::text, created_at = now(), how = %s',
        [how], action='give the management database a new id')


def system_identifier(conn):
    """The server's system_identifier (pg_control_system; as text: JSON keeps no 64-bit integer)."""
    return run(conn, 'SELECT system_identifier::text AS sysid FROM pg_control_system()',
               action='read system_identifier')[0]['sysid']


def read_origin(conn):
    """{mngdb_id, how, created_at} of this management database, or None before the identity tables."""
    if not identity_tables_present(conn):
        return None
    rows = run(conn, 'SELECT mngdb_id, how, created_at::text AS created_at FROM mngdb_origin',
               action='read mngdb_origin')
    return rows[0] if rows else None


def read_identities(conn):
    """The pair's record in this view: [{serverid, system_identifier, mngdb_id, recorded_at}], or
    None before the identity tables."""
    if not identity_tables_present(conn):
        return None
    return run(conn, 'SELECT serverid, system_identifier, mngdb_id, recorded_at::text AS recorded_at '
                     'FROM node_identity ORDER BY serverid', action='read node_identity')


def current_identity(conn):
    """{system_identifier, mngdb_id} of the node conn's management database is on (mngdb_id None
    before the identity tables)."""
    origin = read_origin(conn)
    return dict(system_identifier=system_identifier(conn), mngdb_id=origin and origin['mngdb_id'])


def write_identity(conn, serverid, identity):
    run(conn, 'INSERT INTO node_identity (serverid, system_identifier, mngdb_id) VALUES (%s, %s, %s) '
              'ON CONFLICT (serverid) DO UPDATE SET system_identifier = EXCLUDED.system_identifier, '
              'mngdb_id = EXCLUDED.mngdb_id, recorded_at = now()',
        [serverid, identity['system_identifier'], identity['mngdb_id']], action='record node identity')


def identity_text(identity):
    return 'system_identifier %s, management database id %s' % (
        identity.get('system_identifier'), identity.get('mngdb_id') or 'none')


def identity_verdict(actual, recorded, standby=False):
    """The one rule comparing a node with the pair's record of it.

    actual: {system_identifier, mngdb_id} of the node as it is now, or None when it was not read;
    recorded: the rows the views hold for that serverid ({system_identifier, mngdb_id, ...}; any
    number, a view without one gives none).  Returns (verdict, reason): 'unknown' (not read),
    'unrecorded' (no view records it: a pair from before identities, or one being provisioned),
    'matches', or 'replaced' -- any view recording something else is enough.  A standby (standby=True)
    is an online recovery's copy of the other node under way: it is judged once promoted, when the
    recovery records it."""
    if not actual or not actual.get('system_identifier'):
        return 'unknown', 'its identity could not be read'
    if standby:
        return 'unknown', 'a standby (an online recovery\'s copy under way): judged once it is promoted'
    if not recorded:
        return 'unrecorded', 'the pair has no record of its identity yet'
    for row in recorded:
        if row['system_identifier'] != actual['system_identifier']:
            return 'replaced', ('its server is not the one the pair recorded (system_identifier %s, recorded %s): '
                                'a new initdb (rebuilt host, lost data directory) or a copy of another server'
                                % (actual['system_identifier'], row['system_identifier']))
        if row['mngdb_id'] != actual.get('mngdb_id'):
            return 'replaced', ('its management database is not the one the pair recorded (id %s, recorded %s): '
                                'made anew, or a copy of the other node\'s or of an older one'
                                % (actual.get('mngdb_id') or 'none', row['mngdb_id']))
    return 'matches', 'its identity is the one the pair recorded'


def peer_holds_pair(peer):
    """Whether the peer's management database belongs to a pair already in service -- so a node
    whose forest databases are missing is new to it -- rather than one being provisioned with this
    node right now.  peer: {mngdb (bool: present), identities (rows, None before the identity
    tables), origin ({how}, None before the identity tables)}."""
    if not peer['mngdb']:
        return False
    if peer['identities'] is None:  # from before identities: it served a pair already
        return True
    if peer['identities']:
        return True
    return (peer['origin'] or {}).get('how') != ORIGIN_CREATED


def new_node_reason(serverid, missing, peer_serverid, peer):
    """Why serverid, whose databases `missing` are about to be created, is new to an established
    pair (None when it is not: a brand new pair, both nodes provisioned together).  peer is None
    when the other node does not answer: then nobody can tell, and creating the databases valid
    could hand the applications an empty copy, so that is refused."""
    if not missing:
        return None
    if peer is None:
        raise MngdbError('serverid %d lacks %s, and serverid %d does not answer, so nobody can tell whether '
                         'serverid %d is new to a pair in service (its databases would be empty); nothing was '
                         'created. Start serverid %d and run it again'
                         % (serverid, ' and '.join(missing), peer_serverid, serverid, peer_serverid))
    if not peer_holds_pair(peer):
        return None
    return ('its forest databases are missing while serverid %d has them (a new server: a rebuilt host or a lost '
            'data directory)' % peer_serverid)


def new_node_message(serverid, reason):
    """The one line a DBA reads when a node is new to the pair (the same for every forest database,
    so Ansible shows it once)."""
    return ('serverid %d is new to the pair: %s. It is marked broken (-1) in the forest databases on both nodes, '
            'so no driver uses it; %s' % (serverid, reason, RECOVER_HINT))


def accept_node(serverid, target_mngdb, views, how=ORIGIN_RECOVERED):
    """After a recovery made serverid valid: record its identity as it is now in every view (conns
    to management databases, the target's own among them), so the pair accepts it.  A management
    database that is a copy of another view's (online recovery, a dump) gets an id of its own first.
    Returns the identity recorded."""
    if not identity_tables_present(target_mngdb):
        create_identity_tables(target_mngdb, how)
    mine = read_origin(target_mngdb)
    others = [read_origin(conn) for conn in views if conn is not target_mngdb and identity_tables_present(conn)]
    if any(other and other['mngdb_id'] == mine['mngdb_id'] for other in others):
        new_mngdb_id(target_mngdb, how)
    identity = current_identity(target_mngdb)
    for conn in views:
        if not identity_tables_present(conn):
            create_identity_tables(conn, ORIGIN_ADOPTED)
        write_identity(conn, serverid, identity)
    return identity
