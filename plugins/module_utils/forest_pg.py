# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection layer shared by the pgforest.cluster modules (psycopg 3).

Every connection gets a short connect timeout and a server-side statement
timeout, so a module never waits forever on a dead or hung node.  Failures are
raised as ForestPgError, whose message names the node, the SQLSTATE and what the
DBA can do about it.
"""

from __future__ import annotations

import re
import traceback

from ansible.module_utils.basic import env_fallback
from .errors import ForestError
from .shapes import NodeError

PSYCOPG_IMPORT_ERROR = None
try:
    import psycopg
    from psycopg import sql
except ImportError:  # pragma: no cover - exercised by missing_required_lib
    psycopg = None
    sql = None
    PSYCOPG_IMPORT_ERROR = traceback.format_exc()

APPLICATION_NAME = 'pgforest.cluster'
# The exporter's kept sessions (estate_read.KeptConnections) on the management databases.  Not an application:
# the checks for connected applications leave them out.  But they sit on the database between scrapes, and
# PostgreSQL drops or renames no database a session is in: whatever does (a dump recovery, a restore's swap)
# ends them first (run_without_monitors); the exporter opens new ones at its next scrape.
MONITOR_APPLICATION_NAME = 'pgforest.cluster exporter'
TOOL_APPLICATION_NAMES = (APPLICATION_NAME, MONITOR_APPLICATION_NAME)
# How often a DROP or RENAME of a database is tried again when the exporter came back in between.
MONITOR_RETRIES = 5
# A name SQL reads as it is, unquoted (keywords aside).
PLAIN_NAME = re.compile(r'^[a-z_][a-z0-9_$]*$')

# What a DBA should do for the SQLSTATEs this tool meets most.
SQLSTATE_HINTS = {
    '28P01': 'check the password (login_password / forest_pg_password)',
    '28000': 'pg_hba.conf of that node rejects this client: add a scram-sha-256 entry for it',
    '3D000': 'the database does not exist: check the name, or create it with forest_mngdb',
    '57014': 'a query ran past statement_timeout: raise statement_timeout or retry when the node is less busy',
    '55P03': 'a lock could not be taken in time: another session holds it, retry later',
    '53300': 'the node has no free connection slots: close idle sessions or raise max_connections',
    '57P03': 'the node is starting up or shutting down: wait and retry',
}


def connection_argument_spec():
    """Module options every pgforest.cluster module accepts to reach a node."""
    return dict(
        login_host=dict(type='str', default='localhost', aliases=['host']),
        login_port=dict(type='int', default=5432, aliases=['port']),
        login_user=dict(type='str', default='postgres', aliases=['user']),
        login_password=dict(type='str', no_log=True, aliases=['password'],
                            fallback=(env_fallback, ['PGPASSWORD'])),
        connect_timeout=dict(type='int', default=3),
        statement_timeout=dict(type='int', default=30000),
        ssl_mode=dict(type='str', choices=list(SSL_MODES)),
        ssl_rootcert=dict(type='path'),
        ssl_cert=dict(type='path'),
        ssl_key=dict(type='path', no_log=False),  # a file name, not the key
    )


# libpq's sslmode values, weakest first.  Unset: libpq's default (prefer).
SSL_MODES = ('disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full')
# module option -> libpq keyword: every connection, every child program (psql, pg_dump,
# pg_basebackup) and a recovered standby's primary_conninfo get them (Node.tls_keywords).
TLS_KEYWORDS = (('ssl_mode', 'sslmode'), ('ssl_rootcert', 'sslrootcert'), ('ssl_cert', 'sslcert'),
                ('ssl_key', 'sslkey'))


def node_error(node, action, detail, sqlstate=None, hint=None) -> NodeError:
    """The one maker of a NodeError (shapes.py): where, doing what, what was said, what to do."""
    return dict(node=node, action=action, sqlstate=sqlstate, detail=detail, hint=hint)


class ForestPgError(ForestError):
    """A connection or query failure, with the node and SQLSTATE it concerns."""

    def __init__(self, node, action, detail, sqlstate=None):
        self.node = node
        self.action = action
        self.detail = detail
        self.sqlstate = sqlstate
        super().__init__(self.describe())

    @property
    def hint(self):
        if self.sqlstate == '28000' and 'no encryption' in self.detail:
            return ('that node admits only encrypted connections (TLS is on for the pair): connect with ssl_mode '
                    'require or stronger (forest_tls: true in the inventory gives verify-full, or set '
                    'forest_pg_ssl_mode)')
        if self.sqlstate in SQLSTATE_HINTS:
            return SQLSTATE_HINTS[self.sqlstate]
        return _hint_from_text(self.detail)

    def describe(self):
        state = ' [SQLSTATE %s]' % self.sqlstate if self.sqlstate else ''
        text = '%s: %s failed%s: %s' % (self.node, self.action, state, self.detail.strip())
        if self.hint:
            text += ' -- what to do: %s' % self.hint
        return text

    def as_dict(self):
        return node_error(self.node, self.action, self.detail.strip(), self.sqlstate, self.hint)


# libpq reports a refused login as text only; the server sent these SQLSTATEs.
CONNECT_SQLSTATES = (
    ('password authentication failed', '28P01'),
    ('no pg_hba.conf entry', '28000'),
    ('database', '3D000', 'does not exist'),
    ('too many clients', '53300'),
    ('remaining connection slots are reserved', '53300'),
    ('the database system is starting up', '57P03'),
    ('the database system is shutting down', '57P03'),
)


def sqlstate_from_text(detail):
    text = detail.lower()
    for entry in CONNECT_SQLSTATES:
        if all(word in text for word in (entry[0],) + entry[2:]):
            return entry[1]
    return None


TLS_FAILURE_WORDS = ('certificate', 'ssl error', 'sslmode', 'does not support ssl', 'tlsv1 alert')


def _hint_from_text(detail):
    text = detail.lower()
    if 'timeout expired' in text or 'timed out' in text:
        return ('the node did not answer within connect_timeout: its server may be hung '
                '(stopped process, full disk, network) or overloaded')
    # Not any text with "SSL" in it: "SSL SYSCALL error: EOF detected" is a server gone mid-session.
    if any(words in text for words in TLS_FAILURE_WORDS):
        return ('TLS failed: with ssl_mode verify-ca or verify-full, ssl_rootcert (forest_pg_ssl_rootcert) must be '
                'the CA that signed the node\'s certificate, and verify-full needs the address connected to in the '
                'certificate; a node without TLS needs ssl_mode prefer or disable')
    if 'connection refused' in text or 'no such file or directory' in text:
        return 'no server listens there: check that PostgreSQL runs on that host and port'
    return None


class Node(object):
    """How to reach one PostgreSQL server, and a label for messages."""

    def __init__(self, host, port=5432, user='postgres', password=None,
                 connect_timeout=3, statement_timeout=30000, label=None, tls=None):
        self.host = host
        self.tls = dict(tls or {})  # {module option: value} of TLS_KEYWORDS, unset ones left out
        self.port = int(port)
        self.user = user
        self.password = password
        self.connect_timeout = max(int(connect_timeout), 1)
        self.statement_timeout = int(statement_timeout)
        self.label = label or '%s:%s' % (host, self.port)
        self.deadlock_timeout = None  # ms, the server's, read by the first bulk connection (learn_deadlock_timeout)

    @classmethod
    def from_params(cls, params, label=None):
        tls = dict((option, params[option]) for option, _keyword in TLS_KEYWORDS if params.get(option))
        return cls(params['login_host'], params['login_port'], params['login_user'],
                   params.get('login_password'), params['connect_timeout'],
                   params['statement_timeout'], label=label, tls=tls)

    def sibling(self, host, port):
        """The same credentials, timeouts and TLS settings, for another node."""
        return Node(host, port, self.user, self.password, self.connect_timeout, self.statement_timeout,
                    tls=self.tls)

    def tls_keywords(self):
        """The libpq keywords of this node's TLS settings (sslmode, sslrootcert, sslcert, sslkey)."""
        return dict((keyword, self.tls[option]) for option, keyword in TLS_KEYWORDS if self.tls.get(option))

    def session_options(self, bulk=False):
        """The one session-timeout policy of the collection (libpq `options`).

        Interactive sessions (status, management database, locks, checks): every
        statement bounded by statement_timeout.  Bulk sessions (hashing, COPY,
        psql pipes, pg_dump, restores, pg_basebackup): statements run as long as
        the data needs, but lock waits stay bounded (bulk_lock_timeout), so a bulk
        step never hangs behind another session's lock, and outlast the wait after
        which autovacuum gives way, so autovacuum never fails one."""
        if not bulk:
            return '-c statement_timeout=%d -c lock_timeout=%d' % (self.statement_timeout, self.statement_timeout)
        return '-c statement_timeout=0 -c lock_timeout=%d' % self.bulk_lock_timeout()

    def bulk_lock_timeout(self):
        """A bulk session's lock_timeout (ms) on this server: see bulk_lock_timeout()."""
        return bulk_lock_timeout(self.statement_timeout, self.deadlock_timeout or DEFAULT_DEADLOCK_TIMEOUT)

    def learn_deadlock_timeout(self, conn):
        """Read the server's deadlock_timeout (as this session has it: the waiter's own decides when
        autovacuum is told to give way) and, when it moves the bulk lock_timeout away from what the
        session was opened with, set the session's lock_timeout again.  Once per Node."""
        before = self.bulk_lock_timeout()
        self.deadlock_timeout = int(run(conn, "SELECT setting FROM pg_settings WHERE name = 'deadlock_timeout'",
                                        action='read deadlock_timeout')[0]['setting'])
        if self.bulk_lock_timeout() != before:
            run(conn, "SELECT set_config('lock_timeout', %s, false)", ['%dms' % self.bulk_lock_timeout()],
                action='set lock_timeout')

    def conninfo(self, dbname, bulk=False):
        """libpq keywords; the password stays in memory, never in a string or argv."""
        info = dict(host=self.host, port=self.port, user=self.user, dbname=dbname,
                    connect_timeout=self.connect_timeout,
                    application_name=APPLICATION_NAME,
                    options=self.session_options(bulk))
        info.update(self.tls_keywords())
        if self.password:
            info['password'] = self.password
        return info

    def conninfo_string(self, dbname, bulk=False, **overrides):
        """A libpq connection string for child programs (psql, pg_dump, pg_basebackup), without the password."""
        info = self.conninfo(dbname, bulk)
        info.pop('password', None)
        info.update(overrides)
        return libpq_conninfo(**info)

    def child_env(self, base):
        """Environment for a child program: the password in PGPASSWORD, never in argv."""
        env = dict(base)
        env.pop('PGPASSWORD', None)
        if self.password:
            env['PGPASSWORD'] = self.password
        return env

    def connect(self, dbname, autocommit=True, bulk=False, kept=False, replication=False):
        """Open a connection to dbname (bulk: see session_options), or raise ForestPgError naming this node.
        kept: the exporter's, kept between scrapes: named as the monitor's, and bounded at the TCP level too,
        since a connection a firewall dropped in silence would otherwise hang a query for the kernel's
        retransmission time (about 15 minutes), not its connect_timeout.
        replication: a logical replication connection (replication=database), for the replication
        commands (CREATE_REPLICATION_SLOT) that only such a session accepts."""
        _require_psycopg()
        where = '%s (%s:%s/%s)' % (self.label, self.host, self.port, dbname)
        info = self.conninfo(dbname, bulk)
        if kept:
            info.update(application_name=MONITOR_APPLICATION_NAME, keepalives=1,
                        keepalives_idle=self.connect_timeout, keepalives_interval=1,
                        keepalives_count=max(1, self.connect_timeout),
                        tcp_user_timeout=self.connect_timeout * 1000)
        if replication:
            info['replication'] = 'database'
        try:
            conn = psycopg.connect(autocommit=autocommit, **info)
        except psycopg.Error as exc:
            raise error_from(exc, where, 'connect')
        conn.forest_where = where
        if bulk:
            try:
                if self.deadlock_timeout is None:
                    self.learn_deadlock_timeout(conn)
                if not autocommit:
                    conn.commit()  # the setting stays; no transaction is left open by connect
            except BaseException:
                conn.close()
                raise
        return conn


# PostgreSQL's default deadlock_timeout (ms): what a bulk session assumes until it has read the server's.
DEFAULT_DEADLOCK_TIMEOUT = 1000
# After deadlock_timeout, a lock request blocked by autovacuum makes it give way (it is cancelled;
# an anti-wraparound vacuum never is), and autovacuum then has to notice and roll back: a moment,
# longer on a loaded machine.  A bulk session's lock wait outlasts both by this much.
AUTOVACUUM_GIVES_WAY = 3000


def bulk_lock_timeout(statement_timeout, deadlock_timeout):
    """lock_timeout (ms) of a bulk session (pure): bounded, so a real client holding a lock ends the
    step with an error naming it, never a hang; at least statement_timeout, as every session's;
    and past deadlock_timeout + AUTOVACUUM_GIVES_WAY, so a lock that autovacuum holds never ends a
    bulk copy: with a lock_timeout below deadlock_timeout, a TRUNCATE gave up before autovacuum
    was even asked to give way."""
    return max(int(statement_timeout), int(deadlock_timeout) + AUTOVACUUM_GIVES_WAY)


# Upper bounds: a day to connect; PostgreSQL's own maximum for statement_timeout (ms, int4).
TIMEOUT_RANGES = (('connect_timeout', 'seconds', 86400), ('statement_timeout', 'milliseconds', 2147483647))


def connection_problems(params):
    """A message naming every connection option out of range, or None.  Checked
    before anything runs: a timeout of 0 or less would report a healthy node as
    unreachable, or wait forever on a hung one."""
    bad = []
    for name, unit, most in TIMEOUT_RANGES:
        if name in params and params[name] is not None and not 1 <= params[name] <= most:
            bad.append('%s must be 1 to %d %s (got %s)' % (name, most, unit, params[name]))
    for name in ('login_port', 'peer_port'):
        if params.get(name) is not None and not 0 < params[name] < 65536:
            bad.append('%s must be a TCP port, 1 to 65535 (got %s)' % (name, params[name]))
    for name in ('login_host', 'peer_host', 'login_user'):
        if name in params and params[name] is not None and (params[name] == '' or '\x00' in params[name]):
            bad.append('%s must be a non-empty name without NUL characters' % name)
    return '; '.join(bad) + '. Nothing was changed' if bad else None


def out_of_range(params, positive=(), fractions=()):
    """A message naming every numeric option out of range (unset ones are fine), or None."""
    bad = ['%s must be above 0 (got %s)' % (name, params[name]) for name in positive
           if params.get(name) is not None and params[name] <= 0]
    bad += ['%s must be above 0 and at most 1 (got %s)' % (name, params[name]) for name in fractions
            if params.get(name) is not None and not 0 < params[name] <= 1]
    return '; '.join(bad) + '. Nothing was changed' if bad else None


def libpq_conninfo(**keywords):
    """A libpq connection string, every value quoted (None leaves a keyword out)."""
    return ' '.join("%s='%s'" % (key, str(value).replace('\\', '\\\\').replace("'", "\\'"))
                    for key, value in sorted(keywords.items()) if value is not None)


def close_all(conns):
    """Close connections, some possibly broken already, without hiding the error that ended the work."""
    for conn in conns:
        try:
            conn.close()
        except Exception:  # a broken connection must not hide the error that ended the work
            pass


def _require_psycopg():
    if psycopg is None:
        raise ImportError('psycopg (version 3) is required: pip install "psycopg[binary]"')


def error_from(exc, where, action):
    """Turn a psycopg error into a ForestPgError for `where` (a node label)."""
    sqlstate = getattr(exc, 'sqlstate', None) or sqlstate_from_text(str(exc))
    diag = getattr(exc, 'diag', None)
    detail = (diag.message_primary if diag is not None and diag.message_primary
              else str(exc)) or exc.__class__.__name__
    return ForestPgError(where, action, detail, sqlstate)


def run(conn, query, params=None, action='query', tuples=False):
    """Execute and fetch all rows (as dicts; as tuples in binary format, faster for
    large results, with tuples=True); failures become ForestPgError."""
    try:
        cursor = conn.cursor(binary=True) if tuples else conn.cursor(row_factory=psycopg.rows.dict_row)
        with cursor as cur:
            cur.execute(query, params)
            return cur.fetchall() if cur.description else []
    except psycopg.Error as exc:
        raise error_from(exc, getattr(conn, 'forest_where', '?'), action)


def run_without_monitors(conn, dbname, query, action):
    """query, a DROP or RENAME of database dbname, once the exporter's kept sessions on it are ended (see
    MONITOR_APPLICATION_NAME).  PostgreSQL waits up to 5 s for the ended sessions to go, then refuses
    (55006); when what is left is the exporter again (it reconnected at a scrape in between), end it and try
    once more.  Any other session still there is somebody's: its error is raised as it is."""
    for attempt in range(MONITOR_RETRIES):
        run(conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                  "AND application_name = %s AND pid <> pg_backend_pid()", [dbname, MONITOR_APPLICATION_NAME],
            action="end the exporter's sessions on %s" % dbname)
        try:
            return run(conn, query, action=action)
        except ForestPgError as exc:
            if exc.sqlstate != '55006' or attempt == MONITOR_RETRIES - 1:
                raise
            others = run(conn, "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = %s "
                               "AND application_name <> %s AND pid <> pg_backend_pid()",
                         [dbname, MONITOR_APPLICATION_NAME], action='list sessions on %s' % dbname)
            if others[0]['n']:
                raise
    return []


def quote_ident(name):
    """Quote an identifier the way PostgreSQL's quote_ident() does, always quoted.

    For messages and command lines; SQL sent to a server uses psycopg.sql.Identifier.
    """
    if not isinstance(name, str) or name == '' or '\x00' in name:
        raise ValueError('invalid identifier %r: it must be a non-empty string without NUL' % (name,))
    return '"%s"' % name.replace('"', '""')


def shown_name(*names):
    """A (possibly qualified) name for messages and results, each part quoted only
    where SQL needs it: orders, "Order Items", "Sales Ünïcode"."Order Items"."""
    return '.'.join(name if PLAIN_NAME.match(name or '') else quote_ident(name) for name in names)


def ident(*names):
    """A (possibly qualified) identifier as a psycopg.sql object."""
    _require_psycopg()
    for name in names:
        quote_ident(name)  # same validation as for messages
    return sql.Identifier(*names)
