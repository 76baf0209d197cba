# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The target of an online recovery as a streaming standby of the source: its settings, the
replication slot, and the waits for it (streaming, catching up, replaying a position, its
settings gone after the cleanup)."""

from __future__ import annotations

import os

from .errors import RecoveryError
from .forest_pg import libpq_conninfo, run
from .wait import WaitTimeout, wait_until

STANDBY_MARK = '# pgforest.cluster online recovery: standby settings (removed at cleanup)'
APPLICATION = 'pgforest_recovery'
# Before the freeze the standby comes this close to the source, so the replay inside it is short.
CLOSE_ENOUGH = 1 << 20


def write_settings(server, source, passfile, slot):
    """Stream from `source` (a forest_pg.Node) through `slot`: primary_conninfo and primary_slot_name
    appended to postgresql.auto.conf under STANDBY_MARK, and standby.signal."""
    conninfo = libpq_conninfo(host=source.host, port=source.port, user=source.user,
                              passfile=passfile, application_name=APPLICATION,
                              connect_timeout=source.connect_timeout, **source.tls_keywords())
    auto_conf = os.path.join(server.data_dir, 'postgresql.auto.conf')
    with open(auto_conf, 'a') as handle:
        handle.write('%s\nprimary_conninfo = \'%s\'\nprimary_slot_name = \'%s\'\n'
                     % (STANDBY_MARK, conninfo.replace("'", "''"), slot))
    server.own(auto_conf, 0o600)
    signal_file = os.path.join(server.data_dir, 'standby.signal')
    open(signal_file, 'w').close()
    server.own(signal_file, 0o600)


def remove_signal_files(server):
    for leftover in ('standby.signal', 'recovery.signal'):
        path = os.path.join(server.data_dir, leftover)
        if os.path.exists(path):
            os.remove(path)


class Standby(object):
    """The standby (serverid `target`) of the source (serverid `source`), seen through an admin
    session on each (tgt_admin may be None where only the source is asked)."""

    def __init__(self, source, target, src_admin, tgt_admin=None):
        self.source = source
        self.target = target
        self.src_admin = src_admin
        self.tgt_admin = tgt_admin

    def is_standby(self):
        return run(self.tgt_admin, 'SELECT pg_is_in_recovery() AS standby')[0]['standby']

    def lag(self):
        """Bytes of the source's WAL the standby has not replayed."""
        replayed = run(self.tgt_admin, "SELECT coalesce(pg_last_wal_replay_lsn(), '0/0')::text AS lsn")[0]['lsn']
        return int(run(self.src_admin, 'SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)::bigint AS lag',
                       [replayed])[0]['lag'])

    def streams(self):
        rows = run(self.src_admin, 'SELECT state FROM pg_stat_replication WHERE application_name = %s', [APPLICATION])
        return rows[0]['state'] if rows else None

    def wait_streaming(self, timeout, log_file):
        try:
            wait_until('serverid %d to stream from serverid %d' % (self.target, self.source),
                       lambda: self.streams() == 'streaming', timeout, 0.2,
                       state=lambda: 'replication state %s' % (self.streams() or 'none: not connected'))
        except WaitTimeout as exc:
            raise RecoveryError('serverid %d started as a standby but does not stream: %s (see %s)'
                                % (self.target, exc, log_file))

    def catch_up(self, timeout, lag=None):
        """Before freezing: let the standby come within CLOSE_ENOUGH of the source (`lag`: the lag just read)."""
        lags = [self.lag() if lag is None else lag]  # the last one seen

        def close():
            if lags[0] > CLOSE_ENOUGH:
                lags[0] = self.lag()
            return lags[0] <= CLOSE_ENOUGH
        try:
            wait_until('serverid %d to come within 1 MB of serverid %d' % (self.target, self.source), close,
                       timeout, 0.2, state=lambda: 'still %d MB behind' % (lags[0] >> 20))
        except WaitTimeout as exc:
            raise RecoveryError('%s: the source writes faster than the standby replays; retry when the load is '
                                'lower or raise catch_up_timeout' % exc)

    def wait_replayed(self, lsn, timeout):
        """Inside the write freeze: until the standby has replayed the source up to `lsn`."""
        def replayed():
            return run(self.tgt_admin, 'SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn AS done', [lsn])[0]['done']
        try:
            wait_until('serverid %d to replay up to %s inside the write freeze' % (self.target, lsn), replayed,
                       timeout, 0.01, state=lambda: '%d bytes behind' % self.lag())
        except WaitTimeout as exc:
            raise RecoveryError('%s: the standby replays too slowly; retry when the load is lower or raise '
                                'replay_wait_timeout' % exc)

    def wait_settings_gone(self, timeout=10):
        """After the cleanup's reload: primary_conninfo empty, the node its own primary."""
        def gone():
            return not run(self.tgt_admin, "SELECT setting FROM pg_settings WHERE name = 'primary_conninfo'")[0][
                'setting']
        try:
            wait_until('serverid %d to drop primary_conninfo on reload' % self.target, gone, timeout, 0.1,
                       state=lambda: 'primary_conninfo still set')
        except WaitTimeout as exc:
            raise RecoveryError('%s: take the standby settings out of its postgresql.auto.conf (after "%s") and '
                                'reload it' % (exc, STANDBY_MARK))

    def drop_slot(self, slot, say, leftover=False, timeout=10):
        """Drop replication slot `slot` on the source once no standby uses it (absent: nothing to do)."""
        def dropped():
            rows = run(self.src_admin, 'SELECT active FROM pg_replication_slots WHERE slot_name = %s', [slot])
            if rows and not rows[0]['active']:
                run(self.src_admin, 'SELECT pg_drop_replication_slot(%s)', [slot])
                say('dropped %sreplication slot %s on serverid %d'
                    % ('the leftover ' if leftover else '', slot, self.source))
            return not rows or not rows[0]['active']
        try:
            wait_until('replication slot %s on serverid %d to be released' % (slot, self.source), dropped,
                       timeout, 0.2, state=lambda: 'still in use by a standby')
        except WaitTimeout as exc:
            raise RecoveryError('%s: stop the standby that uses it, then run this again' % exc)
