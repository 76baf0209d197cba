# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""forest_recover mode=online method=auto: resync where it can work, basebackup otherwise, and why
(docs/recovery.md, "Which method").

Resync keeps the broken node's data directory and moves only the drift, so it needs that data directory
(initialized, the source's major), the node's server to start, its forest databases, wal_level =
logical on both nodes and a replica identity on every table (resync_logical's refusals).  Whatever
fails of those makes it a basebackup, a physical copy of the whole server, with the reason.  Two majors
are refused instead: no physical copy crosses them, and a resync across majors is the DBA's choice
(playbooks/recover.yml -e method=resync).  Nothing changes while choosing, except that a stopped target is
started to be looked at (as a resync would), and stopped again when the choice is basebackup."""

from __future__ import annotations

from typing import NamedTuple

from .errors import RecoveryError
from .forest_pg import ForestPgError, run
from .mngdb import database_names
from .online_phases import PHASES
from .online_resync import ResyncRecovery
from .pg_platform import data_dir_major
from .recovery_workspace import Workspace
from .local_server import LocalServer

AUTO = 'auto'


class MethodChoice(NamedTuple):
    """What method=auto chose, and why (the result's method_choice)."""
    method: str
    reason: str


def resync_needs(initialized, start_error, missing_databases, refusal):
    """The first unmet condition of a resync, as the reason for a basebackup, or None when all are met (pure).
    start_error: why the node's server did not start (None: it runs); missing_databases: forest databases
    of the source absent on the target; refusal: resync_logical's refusal (wal_level, replica identity)."""
    if not initialized:
        return 'the data directory is not initialized: there is nothing of the node to keep'
    if start_error is not None:
        return 'the node\'s server does not start (%s): a physical copy replaces its data directory' % start_error
    if missing_databases:
        return 'the node lacks the forest database%s %s: a physical copy brings %s' % (
            '' if len(missing_databases) == 1 else 's', ', '.join(missing_databases),
            'it' if len(missing_databases) == 1 else 'them')
    if refusal:
        return 'resync would be refused: %s' % refusal.replace('. Nothing was changed', '')
    return None


def choose_online_method(params, options, check_mode=False, log=None):
    """(the MethodChoice for an online recovery run with method=auto, the progress lines of choosing)."""
    if options.phase not in ('all', PHASES[0].name):  # a later phase, or cancel: the recovery in progress says
        state = Workspace(LocalServer.from_params(params)).load()
        recorded = (state or {}).get('method', 'basebackup')
        return MethodChoice(recorded, 'the online recovery in progress here is method=%s' % recorded
                            if state else 'no online recovery is in progress here'), []
    probe = ResyncRecovery(params, options._replace(method='resync'), check_mode, log)
    try:
        return probe_method(probe), probe.progress
    finally:
        probe.close()


def probe_method(probe):
    source, target = probe.choose(online=True)
    _node, src_admin = probe.connect(source, 'postgres')
    server = LocalServer.from_params(probe.p)
    source_major = int(run(src_admin, 'SHOW server_version_num')[0]['server_version_num']) // 10000
    target_major = data_dir_major(server.data_dir)
    if target_major is not None and target_major != source_major:
        raise RecoveryError('method=auto does not choose across majors: serverid %d runs PostgreSQL %d and serverid '
                            '%d\'s data directory here is PostgreSQL %d. No physical copy crosses them; '
                            'method=resync (logical) can, with the node\'s schema loaded first (docs/forest_node.md, '
                            '"Moving the pair to a new major"). Nothing was changed'
                            % (source['serverid'], source_major, target['serverid'], target_major))
    if not server.initialized():
        return MethodChoice('basebackup', resync_needs(False, None, [], None))
    start_error = None
    started_here = False
    if not server.running():
        if probe.check_mode:
            return MethodChoice('resync', 'the data directory is there, PostgreSQL %d like the source; the server is '
                                          'stopped, so check mode did not start it to look at its databases'
                                % source_major)
        try:
            server.start()
            started_here = True
            probe.say('started the server of %s to look at it (method=auto)' % server.data_dir)
        except Exception as exc:  # whatever keeps it from starting is a reason for a physical copy
            start_error = str(exc) or exc.__class__.__name__
    reason = resync_needs(True, start_error, [], None)
    try:
        if reason is None:
            reason = look_at_the_pair(probe, src_admin)
    except ForestPgError as exc:
        reason = 'the node\'s server does not answer (%s): a physical copy replaces its data directory' \
            % exc.detail.strip()
    finally:
        if reason is not None and started_here:
            server.stop()
            probe.say('stopped the server of %s again, as it was (method=auto chose basebackup)' % server.data_dir)
    if reason is not None:
        return MethodChoice('basebackup', reason)
    return MethodChoice('resync', 'the data directory is there, PostgreSQL %d like the source, with every forest '
                                  'database; wal_level = logical on both nodes and every table has a replica identity'
                        % source_major)


def look_at_the_pair(probe, src_admin):
    """With the target's server running: the reason for a basebackup, or None (resync can run)."""
    probe.userdbs = probe.choose_scope()
    with probe.node(probe.target).connect('postgres') as tgt_admin:
        present = set(database_names(tgt_admin))
    missing = [name for name in probe.userdbs if name not in present]
    if missing:
        return resync_needs(True, None, missing, None)
    try:
        probe.refusals(src_admin)
    except RecoveryError as exc:
        return resync_needs(True, None, [], str(exc))
    return None
