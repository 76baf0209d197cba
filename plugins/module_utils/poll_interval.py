# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The drivers' poll interval (global_config.mngdb_read_duration), shortened for the length of
an operation that freezes the applications' writes (docs/recovery.md, "A freeze of about a
second").

Drivers take a changed mngdb_read_duration at their next read of the management database (guide
§9.3, §10.1).  An operation that lowers it from OLD to SHORT at time t therefore knows that from
t + OLD on every driver polls every SHORT seconds, and a freeze from then on needs SHORT seconds of
notice instead of OLD.  The lowering overlaps the operation's long part (an online recovery's base
copy); only what is left of OLD is waited, before the freeze, never inside it.

The DBA's value is put back at the operation's end: after success, cancel, any failure and SIGINT.
If the process dies (SIGKILL, a lost controller), every management database still carries the
record of what was lowered -- a comment on its global_config table, which travels with the
database, physical copies included -- and the next operation that freezes writes on the pair
adopts it and puts the value back at its end.  Never 0 or negative: a driver that reads 0 once
stops polling for good (guide §10.2.1).
"""

from __future__ import annotations

import json
import time

from .errors import ForestError
from .forest_pg import ForestPgError, run, sql
from .wait import pause

KEY = 'mngdb_read_duration'
DEFAULT = 30            # the guide's default when global_config has no row for it
SHORTEST = 1            # seconds; global_config holds whole seconds and 0 stops the drivers' polling
MARK = 'pgforest.cluster lowered mngdb_read_duration: '
READ_SQL = """
SELECT (SELECT value FROM global_config WHERE key = 'mngdb_read_duration') AS value,
       obj_description('global_config'::regclass, 'pg_class') AS comment,
       extract(epoch FROM now())::float8 AS now
"""


# A driver's read of the management database takes time too: one that began just before the 0 was
# set reads again up to one interval plus that long later.  Seen under load in the soak: a driver
# polling every second started a write 1 s after the 0, and the cut refused (safely) to go on.
READ_MARGIN = 0.25


class PollIntervalError(ForestError):
    pass


def freeze_notice(conns):
    """Seconds a freeze waits for the drivers of every management database of `conns`: the longest
    mngdb_read_duration now in force, plus READ_MARGIN."""
    longest = 0
    for conn in conns:
        value = interval(run(conn, READ_SQL, action='read mngdb_read_duration')[0]['value'])
        longest = max(longest, value if value is not None else DEFAULT)
    return longest + READ_MARGIN


def parse_record(comment):
    """The record an operation left on global_config ({dba, short, at, by}), or None."""
    if not comment or not comment.startswith(MARK):
        return None
    try:
        record = json.loads(comment[len(MARK):])
    except ValueError:
        return None
    if not isinstance(record, dict) or not set(('dba', 'short', 'at')) <= set(record):
        return None
    return record


def dba_settings(conn, global_config):
    """global_config ({key: value} as read from conn) with the DBA's mngdb_read_duration in place of a value an
    operation lowered for its length (its record on the table), for a copy that must outlive the operation."""
    record = parse_record(run(conn, READ_SQL, action='read mngdb_read_duration')[0]['comment'])
    if record is None or interval(global_config.get(KEY)) != interval(record['short']):
        return global_config
    kept = dict((key, value) for key, value in global_config.items() if key != KEY)
    if record['dba'] is not None:
        kept[KEY] = str(record['dba'])
    return kept


def interval(value):
    """global_config's text value as seconds (absent: the guide's default; unreadable: None)."""
    if value is None:
        return DEFAULT
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def seconds_left(record, now):
    """How long, from `now` (the server's clock, as the record's), until every driver has read
    the short value: one old interval after the lowering."""
    old = interval(record['dba'])
    return max(0.0, float(record['at']) + (old if old is not None else DEFAULT) - now)


class PollInterval(object):
    """Lower, wait for, and put back mngdb_read_duration in a set of management databases.

    `conns` arguments are {label: connection to a management database}; the labels name them in
    messages (e.g. "serverid 0 userdb_pghainfo")."""

    def __init__(self, short, by, say):
        if short < SHORTEST:
            raise PollIntervalError('freeze_read_duration must be at least %d second (0 or less would stop the '
                                    'drivers\' polling for good); got %s' % (SHORTEST, short))
        self.short = int(short)
        self.by = by            # what lowered it, for the record ("online recovery of serverid 1")
        self.say = say
        self.report = dict(short=self.short, lowered=[], adopted=[], put_back=[], kept=[], waited=0.0)

    def check(self, conns):
        """Refuse, changing nothing, where the drivers cannot be told to poll faster."""
        rows = {}
        for label, conn in conns.items():
            row = rows[label] = run(conn, READ_SQL, action='read mngdb_read_duration')[0]
            current = interval(row['value'])
            if current is None or current <= 0:
                raise PollIntervalError(
                    '%s: mngdb_read_duration is %r: drivers that read 0 or less never poll again (guide §10.2.1), '
                    'so they cannot be told to pause their writes. Set it to a positive number of seconds on both '
                    'nodes (playbooks/config.yml), restart the applications, and retry; or give notice_wait if '
                    'the drivers react to NOTIFY. Nothing was changed' % (label, row['value']))
        return rows

    def lower(self, conns):
        """Every management database of `conns` polled every `short` seconds from one old interval on.
        A record an earlier run left is adopted (its time counts); a value already short is left."""
        for label, row in self.check(conns).items():
            conn = conns[label]
            record = parse_record(row['comment'])
            current = interval(row['value'])
            if record is not None and current == interval(record['short']):
                if label not in self.report['adopted'] + self.report['lowered']:
                    self.report['adopted'].append(label)
                    self.say('%s: mngdb_read_duration is %s since %s lowered it from %s; it goes back at the end of '
                             'this run' % (label, current, record.get('by') or 'an earlier run', record['dba'] or DEFAULT))
                continue
            if current <= self.short:
                continue
            record = dict(dba=row['value'], short=self.short, at=row['now'], by=self.by)
            with conn.transaction():
                run(conn, sql.SQL('COMMENT ON TABLE global_config IS {}').format(
                    sql.Literal(MARK + json.dumps(record, sort_keys=True))), action='record mngdb_read_duration')
                run(conn, "INSERT INTO global_config (key, value) VALUES ('mngdb_read_duration', %s) "
                          'ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value', [str(self.short)],
                    action='lower mngdb_read_duration')
                run(conn, "SELECT pg_notify('pgforest_server_info', 'global_config')")
            self.report['lowered'].append(label)
            self.say('%s: mngdb_read_duration %s -> %d for this run (drivers take it within %ss)'
                     % (label, current, self.short, current))

    def wait_for_drivers(self, conns, progress_every=10.0):
        """Sleep until one old interval has passed since the lowering in every database of `conns`."""
        started = time.monotonic()
        left = 0.0
        for label, conn in conns.items():
            row = run(conn, READ_SQL, action='read mngdb_read_duration')[0]
            record = parse_record(row['comment'])
            if record is not None and interval(row['value']) == interval(record['short']):
                left = max(left, seconds_left(record, row['now']))
        if left > 0:
            self.say('waiting %.1fs before the freeze, until every driver polls every %ds (one old interval '
                     'after the lowering)' % (left, self.short))
            pause(left - (time.monotonic() - started), progress_every,
                  progress=(progress_every, lambda remaining: self.say('%.0fs left before the freeze' % remaining)))
        self.report['waited'] = round(self.report['waited'] + time.monotonic() - started, 3)

    def put_back(self, conns, strict=True):
        """The DBA's value back where a record says it was lowered; a value the DBA changed meanwhile is
        kept.  A database that cannot be written raises (strict) or is reported."""
        failures = []
        for label, conn in conns.items():
            try:
                self.put_back_one(label, conn)
            except ForestPgError as exc:
                failures.append('%s: %s' % (label, exc))
        if failures and strict:
            raise PollIntervalError('could not put mngdb_read_duration back: %s. It stays at %d there until the '
                                    'next recovery or online compare of the pair puts it back, or set it with '
                                    'playbooks/config.yml' % ('; '.join(failures), self.short))
        return failures

    def put_back_one(self, label, conn):
        row = run(conn, READ_SQL, action='read mngdb_read_duration')[0]
        record = parse_record(row['comment'])
        if record is None:
            return
        with conn.transaction():
            if interval(row['value']) == interval(record['short']):
                if record['dba'] is None:
                    run(conn, "DELETE FROM global_config WHERE key = 'mngdb_read_duration'",
                        action='put mngdb_read_duration back')
                else:
                    run(conn, "UPDATE global_config SET value = %s WHERE key = 'mngdb_read_duration'",
                        [record['dba']], action='put mngdb_read_duration back')
                run(conn, "SELECT pg_notify('pgforest_server_info', 'global_config')")
                self.report['put_back'].append(label)
                self.say('%s: mngdb_read_duration back to %s' % (label, record['dba'] or DEFAULT))
            else:
                self.report['kept'].append(label)
                self.say('%s: mngdb_read_duration was changed to %s during the run; kept' % (label, row['value']))
            run(conn, 'COMMENT ON TABLE global_config IS NULL', action='remove the mngdb_read_duration record')
