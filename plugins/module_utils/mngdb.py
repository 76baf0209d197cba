# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgresForest management database <userdb>_pghainfo (guide §9).

Pure parts (settings, their ranges, URL handling, diffs) need no server; the
rest reads and writes a management database over a forest_pg connection.
"""

from __future__ import annotations

from .errors import ForestError
from .forest_pg import (
    APPLICATION_NAME, ident, run)

INT_MAX = 2147483647
MNGDB_SUFFIX = '_pghainfo'
# Drivers LISTEN here; a NOTIFY makes them re-read server_info at once.
NOTIFY_CHANNEL = 'pgforest_server_info'

# key: (default, range) -- range None means any string.
GLOBAL_CONFIG = {
    'mngdb_read_duration': ('30', (0, INT_MAX)),
    'mngcon_create_timeout': ('10', (0, INT_MAX)),
    'mngquery_exec_timeout': ('10', (0, INT_MAX)),
    'mngdb_max_burst_error': ('2', (-1, INT_MAX)),
    'broken_error_prefix': ('08,53,57P,3D', None),
    'log_level': ('2', (0, 4)),
    'log_formatter_name': ('org.postgresforest.util.ForestLogFormatter', None),
    'log_console_enable': ('1', (0, 1)),
    'log_file_enable': ('0', (0, 1)),
    'log_file_name': ('/var/log/forest/forest.log.%u-%g', None),
    'log_file_size_mb': ('0', (0, INT_MAX)),
    'log_file_rotate_count': ('1', (0, INT_MAX)),
}
LOCAL_CONFIG = {
    'api_exec_timeout': ('600', (0, INT_MAX)),
    'fast_api_return_on_db_fail': ('1', (0, 1)),
}
DEFAULT_CONFIGID = 'DEFAULT'

TABLES = ('server_info', 'global_config', 'local_config', 'broken_log_detail')
SCHEMA = (
    """CREATE TABLE server_info (
         serverid integer PRIMARY KEY,
         udb_url text NOT NULL,
         udb_validity integer NOT NULL DEFAULT 1 CHECK (udb_validity IN (-1, 0, 1)))""",
    "CREATE TABLE global_config (key text PRIMARY KEY, value text)",
    """CREATE TABLE local_config (configid text NOT NULL, key text NOT NULL, value text,
         PRIMARY KEY (configid, key))""",
    """CREATE TABLE broken_log_detail (
         serverid integer, time timestamptz DEFAULT now(), client text, api_task text,
         err_msg text, err_type text, err_state text, err_query text, err_stack text,
         app_thread text, app_stack text)""",
    "CREATE INDEX broken_log_detail_time ON broken_log_detail (time)",
    """CREATE VIEW broken_log AS
         SELECT serverid, time, client, api_task, err_msg, err_type, err_state, err_query
         FROM broken_log_detail""",
)


class MngdbError(ForestError):
    """Bad input or a management database that cannot be acted on."""


def mngdb_name(userdb):
    if not isinstance(userdb, str) or not userdb.strip():
        raise MngdbError('userdb must be a non-empty database name')
    name = userdb + MNGDB_SUFFIX
    if len(name.encode('utf-8')) > 63:
        raise MngdbError('userdb %r is too long: %s must fit in 63 bytes (PostgreSQL truncates longer names)'
                         % (userdb, name))
    return name


def udb_url(host, port, userdb):
    return '%s:%s/%s' % (host, int(port), userdb)


def parse_udb_url(url, strict=True):
    """'host:port/db' -> (host, port, db).  A malformed url is refused, or with strict=False gives
    (None, None, None): the status reports it as a configuration problem, it always answers."""
    try:
        address, db = url.split('/', 1)
        host, port = address.rsplit(':', 1)
        return host, int(port), db
    except (ValueError, AttributeError):
        if not strict:
            return None, None, None
        raise MngdbError('udb_url %r is not host:port/db' % (url,))


def serverid_at(rows, *addresses, strict=True):
    """The serverid that server_info `rows` list at the first of `addresses` ('host:port', or a
    callable giving one, asked only when the earlier ones matched no row) that one of them has; None
    when none does.  A node is known by the address a connection used, else by its server's own."""
    for address in addresses:
        address = address() if callable(address) else address
        for row in rows:
            host, port, _db = parse_udb_url(row['udb_url'], strict)
            if host is not None and '%s:%s' % (host, port) == address:
                return row['serverid']
    return None


def desired_server_info(servers, userdb):
    """[{serverid, udb_url}] from the `servers` option (host:port, in serverid order)."""
    if len(servers) != 2:
        raise MngdbError('servers must list exactly two host:port entries, serverid 0 first (got %d)'
                         % len(servers))
    rows = []
    for serverid, server in enumerate(servers):
        host, sep, port = str(server).rpartition(':')
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise MngdbError('servers[%d] = %r is not host:port' % (serverid, server))
        rows.append(dict(serverid=serverid, udb_url=udb_url(host, port, userdb)))
    if rows[0]['udb_url'] == rows[1]['udb_url']:
        raise MngdbError('servers lists the same server twice (%s)' % rows[0]['udb_url'])
    return rows


def validate_setting(table, key, value):
    """The value as stored (text), or MngdbError saying what is allowed."""
    known = GLOBAL_CONFIG if table == 'global_config' else LOCAL_CONFIG
    if key not in known:
        raise MngdbError('unknown %s key %r; known keys: %s' % (table, key, ', '.join(sorted(known))))
    if value is None:
        raise MngdbError('%s.%s needs a value' % (table, key))
    if isinstance(value, bool):
        value = int(value)
    text = str(value).strip()
    allowed = known[key][1]
    if allowed is None:
        return text
    low, high = allowed
    try:
        number = int(text)
    except ValueError:
        raise MngdbError('%s.%s must be an integer from %d to %d (got %r)' % (table, key, low, high, value))
    if not low <= number <= high:
        raise MngdbError('%s.%s must be from %d to %d (got %d)' % (table, key, low, high, number))
    return str(number)


def validate_settings(table, settings):
    return dict((key, validate_setting(table, key, value)) for key, value in (settings or {}).items())


def server_info_text(rows):
    return ''.join('%s %s %s\n' % (row['serverid'], row['udb_url'], row.get('udb_validity', ''))
                   for row in rows)


def urls_of(rows):
    """What must be identical on both nodes: serverid -> udb_url."""
    return [(row['serverid'], row['udb_url']) for row in rows]


# --- on a server -------------------------------------------------------------

def database_exists(conn, dbname):
    return bool(run(conn, 'SELECT 1 FROM pg_database WHERE datname = %s', [dbname]))


# Databases every server has; an online recovery replaces them without asking (they hold no
# application data in a forest: docs/recovery.md).
SYSTEM_DATABASES = ('postgres', 'template0', 'template1')


def database_names(conn):
    """Every database of conn's server, by name."""
    return [row['datname'] for row in run(conn, 'SELECT datname FROM pg_database ORDER BY datname',
                                          action='list databases')]


def forest_userdbs(names):
    """The user databases among `names` that have their management database beside them."""
    present = set(names)
    return [name for name in names if not name.endswith(MNGDB_SUFFIX) and mngdb_name_or_none(name) in present]


def mngdb_name_or_none(userdb):
    try:
        return mngdb_name(userdb)
    except MngdbError:
        return None


def create_database(conn, dbname):
    run(conn, ident_sql('CREATE DATABASE {}', dbname), action='create database %s' % dbname)


def ident_sql(template, *names):
    from psycopg import sql
    return sql.SQL(template).format(*[ident(name) for name in names])


def missing_tables(conn):
    rows = run(conn, "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                     "WHERE n.nspname = 'public' AND c.relname = ANY(%s) AND c.relkind IN ('r', 'v')",
               [list(TABLES) + ['broken_log']])
    present = set(row['relname'] for row in rows)
    return [name for name in TABLES + ('broken_log',) if name not in present]


def create_schema(conn):
    with conn.transaction():
        for statement in SCHEMA:
            run(conn, statement, action='create management tables')


def read_server_info(conn):
    return run(conn, 'SELECT serverid, udb_url, udb_validity FROM server_info ORDER BY serverid',
               action='read server_info')


def read_config(conn, table, configid=DEFAULT_CONFIGID):
    if table == 'global_config':
        rows = run(conn, 'SELECT key, value FROM global_config')
    else:
        rows = run(conn, 'SELECT key, value FROM local_config WHERE configid = %s', [configid])
    return dict((row['key'], row['value']) for row in rows)


def write_config(conn, table, settings, configid=DEFAULT_CONFIGID):
    for key, value in sorted(settings.items()):
        if table == 'global_config':
            run(conn, 'INSERT INTO global_config (key, value) VALUES (%s, %s) '
                      'ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value', [key, value],
                action='write global_config')
        else:
            run(conn, 'INSERT INTO local_config (configid, key, value) VALUES (%s, %s, %s) '
                      'ON CONFLICT (configid, key) DO UPDATE SET value = EXCLUDED.value',
                [configid, key, value], action='write local_config')


def write_server_info(conn, rows):
    run(conn, 'DELETE FROM server_info', action='write server_info')
    for row in rows:
        run(conn, 'INSERT INTO server_info (serverid, udb_url, udb_validity) VALUES (%s, %s, %s)',
            [row['serverid'], row['udb_url'], row.get('udb_validity', 1)], action='write server_info')
    notify(conn)


def set_validity(conn, serverid, validity):
    run(conn, 'UPDATE server_info SET udb_validity = %s WHERE serverid = %s', [validity, serverid],
        action='set udb_validity')
    notify(conn)


def notify(conn):
    run(conn, 'SELECT pg_notify(%s, %s)', [NOTIFY_CHANNEL, 'server_info'], action='notify drivers')


def driver_sessions(conn, dbnames):
    """Sessions on dbnames that are not this tool's (drivers, applications, psql)."""
    return run(conn, "SELECT pid, datname, usename, application_name, host(client_addr) AS client_addr, "
                     "state, backend_start::text AS backend_start FROM pg_stat_activity "
                     "WHERE datname = ANY(%s) AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
                     "AND application_name <> %s ORDER BY pid",
               [list(dbnames), APPLICATION_NAME], action='list driver sessions')


def describe_sessions(sessions):
    return '; '.join('pid %(pid)s %(usename)s@%(datname)s from %(client_addr)s (%(application_name)s)' % s
                     for s in sessions)


def application_sessions(conns, dbnames):
    """The one answer to "are applications connected?": {label: [session, ...]} for each
    (label, admin connection) whose server has client sessions on dbnames.  The tool's own
    sessions never count: every connection the collection opens carries APPLICATION_NAME."""
    found = {}
    for label, conn in conns:
        sessions = driver_sessions(conn, dbnames)
        if sessions:
            found[label] = sessions
    return found


def describe_applications(found):
    return ' | '.join('%s: %s' % (label, describe_sessions(sessions)) for label, sessions in sorted(found.items()))


def refuse_if_applications(conns, dbnames, error, needs, remedy):
    """Raise error("<needs>, but these sessions are connected: ... <remedy>; nothing was changed")
    when application_sessions finds any."""
    found = application_sessions(conns, dbnames)
    if found:
        raise error('%s, but these sessions are connected: %s. %s; nothing was changed'
                    % (needs, describe_applications(found), remedy))


# --- the nodes' identities (DESIGN.md "A node new to the pair", docs/forest_node.md) -------------
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
