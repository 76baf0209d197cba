# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which node is the source and which the target: the one home of that choice.

Pure functions of the merged status (status_rules.merge: a dict with cluster_state,
recommended_action and nodes, each node a dict with serverid, validity, validity_name,
reachable, in_recovery, error) and of the DBA's options.  Every job that copies data from one
node to the other asks here: offline and online recovery, forest_dbsync, logical backups.
The recovery's pair is the merged status's own recommendation (status_rules decides which
node is broken and which is good; nothing here decides it again)."""

from __future__ import annotations

from typing import List, Optional, Tuple

from .errors import ForestError
from .shapes import PairStatus, StatusNode

# What to do instead of a recovery, by cluster state.
RIGHT_TOOL = {
    'healthy': 'Nothing to recover.',
    'down': 'There is no valid node to recover from: restore both nodes from a backup, or bring the valid '
            'node back first.',
    'recovering': 'A recovery or sync is running, or was interrupted: let it finish or cancel it, then retry.',
    'split_brain': 'Decide which node keeps its writes (see the reason), mark the other broken on both nodes, '
                   'then recover it.',
    'misconfigured': 'Make server_info identical on both nodes first (forest_mngdb servers=... overwrite=true).',
}


class PairChoiceError(ForestError):
    """No source/target can be chosen safely; the message says why and what to do."""


class NothingToRecover(Exception):
    """The pair is healthy: a recovery has nothing to do (ok, not a failure, so CI can run it idempotently)."""


def by_serverid(nodes):
    return dict((node['serverid'], node) for node in nodes)


def recovery_pair(status: PairStatus, online: bool, target: Optional[int] = None) -> Tuple[StatusNode, StatusNode]:
    """(source, target) node dicts for a recovery, or a clear refusal.

    Offline recovery repairs the target over SQL, so it must answer; online recovery replaces
    its data directory, so it may be down, but the source must be a primary that can stream."""
    state, action = status['cluster_state'], status['recommended_action']
    if state == 'healthy':
        raise NothingToRecover('Nothing to recover: the pair is healthy (%s). Whether the user databases hold '
                               'the same data is another question: forest_dbsync mode=compare answers it'
                               % action['reason'])
    if state != 'degraded':
        detail = '; '.join(status['problems']) or action['reason']
        raise PairChoiceError('cannot recover: the pair is %s (%s). %s Nothing was changed.'
                              % (state, detail, RIGHT_TOOL[state]))
    if action['action'] == 'mark_broken' and by_serverid(status['nodes'])[action['target']].get('replaced'):
        raise PairChoiceError('cannot recover yet: %s. Nothing was changed' % action['reason'])
    if action['action'] == 'mark_broken':
        raise PairChoiceError('cannot recover yet: serverid %s does not answer but is not marked broken. Mark it '
                              'once you know it is the broken one (%s), then run the recovery again. Nothing was '
                              'changed' % (action['target'], action['command']))
    nodes = by_serverid(status['nodes'])
    source, broken = nodes[action['source']], nodes[action['target']]
    if target is not None and target != broken['serverid']:
        raise PairChoiceError('serverid %d is valid and serverid %d is broken: recovering serverid %d from the '
                              'broken node would copy the wrong data; nothing was changed'
                              % (source['serverid'], broken['serverid'], target))
    if online and source['in_recovery']:
        raise PairChoiceError('serverid %d is a standby: online recovery copies from a primary. Recover offline, '
                              'or promote serverid %d first' % (source['serverid'], source['serverid']))
    if not broken['reachable'] and not online:
        raise PairChoiceError('serverid %d (the broken node) does not answer: start its PostgreSQL first, then '
                              'recover it (its data will be replaced)' % broken['serverid'])
    return source, broken


def unreached_text(node: StatusNode) -> str:
    """'serverid 1 (where): detail -- what to do' from a status node."""
    error = node.get('error')
    if not error:
        return 'serverid %d does not answer' % node['serverid']
    text = 'serverid %d (%s): %s' % (node['serverid'], error.get('node'), error.get('detail'))
    return text + (' -- what to do: %s' % error['hint'] if error.get('hint') else '')


def dbsync_pair(status: PairStatus, mode: str, source: Optional[int] = None,
                target: Optional[int] = None) -> Tuple[StatusNode, StatusNode]:
    """(source, target) node dicts for a compare or a sync; both nodes must answer.

    Left unnamed, the source is the one valid node; with both valid (or none) a compare reads
    serverid 0 as the source and a sync refuses to guess.  A sync never writes a node that is
    not valid over one that is."""
    if status['cluster_state'] == 'misconfigured':
        raise PairChoiceError('the pair is misconfigured, refusing to compare: %s' % '; '.join(status['problems']))
    nodes = by_serverid(status['nodes'])
    unreachable = [node for node in status['nodes'] if not node['reachable']]
    if unreachable or len(nodes) != 2:
        raise PairChoiceError('both nodes must answer to be compared: %s. Nothing was read or changed' % (
            '; '.join(unreached_text(node) for node in unreachable) or status['recommended_action']['reason']))
    if source is None and target is None:
        valid = [sid for sid, node in nodes.items() if node['validity'] == 1]
        if len(valid) == 1:
            source = valid[0]
        elif mode == 'sync':
            raise PairChoiceError('%s: say which node is the source (source=0 or source=1); this module does not '
                                  'guess which copy is right' % (
                                      'both nodes are valid' if len(valid) == 2 else 'no node is valid'))
        else:
            source = 0
    if source is None:
        source = 1 - target
    if target is None:
        target = 1 - source
    if source == target:
        raise PairChoiceError('source and target are both serverid %d: give two different nodes' % source)
    if mode == 'sync' and nodes[source]['validity'] != 1 and nodes[target]['validity'] == 1:
        raise PairChoiceError('serverid %d is marked %s and serverid %d is valid: a sync from it would write its '
                              'stale data over the valid copy. Sync from serverid %d, or recover serverid %d '
                              '(forest_recover); nothing was changed'
                              % (source, nodes[source]['validity_name'], target, target, source))
    return nodes[source], nodes[target]


def _describe(nodes):
    return ', '.join('serverid %d %s%s' % (node['serverid'], node['validity_name'],
                                           '' if node['reachable'] else ' unreachable') for node in nodes)


def backup_source(nodes: List[StatusNode], source: Optional[int] = None, allow_invalid: bool = False) -> StatusNode:
    """The node dict to dump: a valid (1), reachable one, never a broken one by accident.
    `source` names a serverid; an invalid source needs allow_invalid (e.g. both -1: keep what is
    left before restoring)."""
    by_sid = by_serverid(nodes)
    valid = [node for node in nodes if node['validity'] == 1 and node['reachable']]
    if source is None:
        if valid:
            return valid[0]
        raise PairChoiceError('no node is valid and reachable (%s): a backup must come from a valid node. To keep '
                              'a copy of an invalid node anyway, name it (source=N) and set allow_invalid_source=true'
                              % _describe(nodes))
    if source not in by_sid:
        raise PairChoiceError('serverid %s is not in server_info (%s)' % (source, _describe(nodes)))
    node = by_sid[source]
    if not node['reachable']:
        raise PairChoiceError('serverid %d does not answer: start it, or back up the other node' % source)
    if node['validity'] != 1 and not allow_invalid:
        other = ' serverid %d is valid: back up from it (leave source out).' % valid[0]['serverid'] if valid else ''
        raise PairChoiceError('serverid %d is %s (udb_validity %s): its user database may be stale or damaged.%s '
                              'To back it up anyway, set allow_invalid_source=true'
                              % (source, node['validity_name'], node['validity'], other))
    return node


def this_node(status: PairStatus, where: str) -> StatusNode:
    """The node a module on a node's host acts on (a physical backup or restore), from the status
    its own view alone gives: the one server of the pair that answered."""
    mine = [node for node in status['nodes'] if node['reachable']]
    if not mine:
        raise PairChoiceError('%s does not answer as a node of the pair (%s): start it, or check login_host'
                              % (where, '; '.join(status['problems'])))
    return mine[0]


def online_scope(statuses, source: int, target: int, include_valid=(), other_databases=(), replace=()) -> List[str]:
    """The forest user databases an online recovery of `target` from `source` takes along, or a
    refusal naming each database in the way.  A physical copy replaces every database of the target
    server, so each forest database must be broken there (or named in include_valid, whose target
    copy is still valid: its drivers go through the same freeze), valid on the source, and every
    other database (not forest, not postgres/template*) named in `replace`.

    statuses: {userdb: merged status} of every forest database of the source server."""
    scope, refusals = [], []
    for userdb, status in statuses.items():
        nodes = by_serverid(status['nodes'])
        if status['cluster_state'] in ('misconfigured', 'split_brain', 'diverged') or set(nodes) != {0, 1}:
            refusals.append('%s is %s (%s)' % (userdb, status['cluster_state'], status['recommended_action']['reason']))
            continue
        src, tgt = nodes[source], nodes[target]
        if src['validity'] != 1 or not src['reachable']:
            refusals.append('%s: serverid %d, the source, is %s there%s, so its copy cannot replace serverid %d\'s'
                            % (userdb, source, src['validity_name'], '' if src['reachable'] else ' and unreachable',
                               target))
        elif tgt['validity'] == -1 or userdb in include_valid:
            scope.append(userdb)
        elif tgt['validity'] == 0:
            refusals.append('%s: serverid %d is write-suppressed (0) there: another recovery or sync is in its '
                            'freeze window; let it finish or cancel it' % (userdb, target))
        else:
            refusals.append('%s: serverid %d is still %s there and its drivers use it; the copy would replace it '
                            'with serverid %d\'s. Add it to include_valid if that is what you want (it goes '
                            'through the same write freeze), or mark it broken first'
                            % (userdb, target, tgt['validity_name'], source))
    unknown = [name for name in include_valid if name not in statuses]
    if unknown:
        refusals.append('include_valid names %s, which %s no forest database on serverid %d'
                        % (', '.join(unknown), 'is' if len(unknown) == 1 else 'are', source))
    unasked = [name for name in other_databases if name not in replace]
    if unasked:
        refusals.append('serverid %d also holds %s, which %s not forest database%s: the physical copy replaces '
                        '%s with serverid %d\'s copy. Name %s in replace_databases if that is fine, or move %s '
                        'elsewhere, or recover offline' % (
                            target, ', '.join(unasked), 'is' if len(unasked) == 1 else 'are',
                            '' if len(unasked) == 1 else 's', 'it' if len(unasked) == 1 else 'them', source,
                            'it' if len(unasked) == 1 else 'them', 'it' if len(unasked) == 1 else 'them'))
    if refusals:
        raise PairChoiceError('online recovery of serverid %d replaces every database of its server, but: %s. '
                              'Nothing was changed.' % (target, '; '.join(refusals)))
    if not scope:
        raise PairChoiceError('online recovery of serverid %d: no forest database of serverid %d is broken on it. '
                              'Nothing was changed.' % (target, source))
    return scope
