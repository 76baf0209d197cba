# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgresForest management database <userdb>_pghainfo (guide §9).

Pure parts (settings, their ranges, URL handling, diffs) need no server; the
rest reads and writes a management database over a forest_pg connection.
"""

from __future__ import annotations

from .errors import MngdbError
from .forest_pg import (
    TOOL_APPLICATION_NAMES, ident, run)

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


def read_all_config(conn):
    """{global_config: {key: value}, local_config: {configid: {key: value}}}: every setting of the pair."""
    local = {}
    for row in run(conn, 'SELECT configid, key, value FROM local_config', action='read local_config'):
        local.setdefault(row['configid'], {})[row['key']] = row['value']
    return dict(global_config=read_config(conn, 'global_config'), local_config=local)


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
    """Sessions on dbnames that are not this tool's nor its exporter's (drivers, applications, psql)."""
    return run(conn, "SELECT pid, datname, usename, application_name, host(client_addr) AS client_addr, "
                     "state, backend_start::text AS backend_start FROM pg_stat_activity "
                     "WHERE datname = ANY(%s) AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
                     "AND application_name <> ALL(%s) ORDER BY pid",
               [list(dbnames), list(TOOL_APPLICATION_NAMES)], action='list driver sessions')


def describe_sessions(sessions):
    return '; '.join('pid %(pid)s %(usename)s@%(datname)s from %(client_addr)s (%(application_name)s)' % s
                     for s in sessions)


def application_sessions(conns, dbnames):
    """The one answer to "are applications connected?": {label: [session, ...]} for each
    (label, admin connection) whose server has client sessions on dbnames.  The tool's own
    sessions never count: every connection the collection opens carries APPLICATION_NAME (its exporter's,
    MONITOR_APPLICATION_NAME)."""
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
