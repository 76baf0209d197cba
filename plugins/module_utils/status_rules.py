# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pair's status out of its nodes' views (guide §5.2): the state and the recommended action.

Each node's management database is one *view* of server_info (status_read).  For every
serverid the effective validity is -1 if any view says -1, else 0 if any says 0, else 1.
"""

from __future__ import annotations

from typing import List

from .mngdb import parse_udb_url, serverid_at, urls_of
from .node_identity import identity_verdict
from .shapes import PairStatus, View
from .wording import VALIDITY_NAMES, listed as listed_text, serverids, views as views_text


def effective_validity(values):
    """The guide's rule: -1 wins, then 0, else 1 (None when no view knows)."""
    known = [value for value in values if value is not None]
    if not known:
        return None
    if -1 in known:
        return -1
    if 0 in known:
        return 0
    return 1


def merge(views: List[View]) -> PairStatus:
    """Merge the views (list of read_view() dicts) into the pair's status."""
    listed = [view for view in views if view['server_info']]
    url_lists = [urls_of(view['server_info']) for view in listed]
    reference = listed[0]['server_info'] if listed else []
    problems = []
    if any(urls != url_lists[0] for urls in url_lists[1:]):
        problems.append('server_info differs between the nodes: '
                        + ' | '.join('%s says %s' % (view['label'], ', '.join('%s=%s' % pair for pair in urls_of(
                            view['server_info']))) for view in listed))
    if reference and sorted(row['serverid'] for row in reference) != [0, 1]:
        problems.append('server_info must list serverid 0 and 1 (found %s)'
                        % listed_text([row['serverid'] for row in reference]))
    for view in views:
        if view['mngdb'] == 'missing':
            problems.append('%s: management database missing (create it: forest_mngdb with servers, '
                            'or playbooks/provision.yml)' % view['label'])
        elif view['mngdb'] == 'broken':
            problems.append('%s: management database broken (%s)' % (view['label'], view['error']['detail']))

    problems += ['%s: udb_url %r of serverid %s is not host:port/db: set both servers again (forest_mngdb '
                 'servers=[host:port, host:port] overwrite=true)' % (view['label'], row['udb_url'], row['serverid'])
                 for view in listed for row in view['server_info'] if parse_udb_url(row['udb_url'], strict=False)[0] is None]
    owners = dict((view['label'], serverid_at(reference, '%s:%s' % (view['host'], view['port']), view['server_addr'],
                                              strict=False)) for view in views)
    by_owner = dict((owners[view['label']], view) for view in views if owners[view['label']] is not None)
    nodes = []
    for row in reference:
        sid = row['serverid']
        seen = dict((str(owners[view['label']]), _value_in(view, sid)) for view in listed
                    if owners[view['label']] is not None)
        own = by_owner.get(sid)
        validity = effective_validity(seen.values())
        host, port, db = parse_udb_url(row['udb_url'], strict=False)
        nodes.append(dict(
            serverid=sid, url=row['udb_url'], host=host, port=port, userdb=db,
            reachable=bool(own and own['reachable'] and own['error'] is None),
            validity=validity, validity_name=VALIDITY_NAMES.get(validity, 'unknown'), views=seen,
            server_version=own and own['server_version'], in_recovery=own and own['in_recovery'],
            ssl=own['ssl'] if own else None, tls_version=own['tls_version'] if own else None,
            tls_client_dn=own['tls_client_dn'] if own else None,
            read_duration=own['read_duration'] if own else None,
            replication_slots=own['replication_slots'] if own else [],
            mngdb=own['mngdb'] if own else 'unknown', error=own and own['error'],
            **_identity(sid, own, listed)))
    for view in views:
        if owners[view['label']] is None and reference:
            problems.append('%s (%s:%s) is not one of the servers in server_info'
                            % (view['label'], view['host'], view['port']))
    disagreements = [dict(serverid=node['serverid'], views=node['views']) for node in nodes
                     if len(set(node['views'].values())) > 1]
    state, action = _state_and_action(nodes, problems, views)
    return dict(cluster_state=state, healthy=state == 'healthy', nodes=nodes,
                views_agree=not disagreements and not problems, disagreements=disagreements,
                problems=problems, recommended_action=action,
                broken_log=_merged_broken_log(listed),
                unreached=[view['error'] for view in views if not view['reachable']])


def _identity(serverid, own, views):
    """{identity, replaced} of serverid: its own view's identity against every view's record of it
    (node_identity.identity_verdict, the one rule)."""
    actual = own and own.get('identity')
    recorded = []
    for view in views:
        for row in (view.get('identity') or {}).get('recorded') or []:
            if row['serverid'] == serverid and row not in recorded:
                recorded.append(row)
    verdict, reason = identity_verdict(actual, recorded, standby=bool(own and own['in_recovery']))
    identity = dict(system_identifier=actual and actual['system_identifier'], mngdb_id=actual and actual['mngdb_id'],
                    recorded=recorded, verdict=verdict, reason=reason)
    return dict(identity=identity, replaced=verdict == 'replaced')


def _value_in(view, serverid):
    for row in view['server_info']:
        if row['serverid'] == serverid:
            return row['udb_validity']
    return None


# A driver writes one incident to both management databases, each stamped with
# its own server's now(): rows equal but for a time this close are one incident.
SAME_INCIDENT_SECONDS = 5


def _merged_broken_log(views):
    """Both views' rows, newest first, each incident once, bounded like one view."""
    rows = sorted((dict(row, view=view['label']) for view in views for row in view['broken_log']),
                  key=lambda row: row['epoch'], reverse=True)
    kept = []
    for row in rows:
        fields = _incident(row)
        if not any(_incident(other) == fields and other['view'] != row['view']
                   and abs(other['epoch'] - row['epoch']) <= SAME_INCIDENT_SECONDS for other in kept):
            kept.append(row)
    limit = max([len(view['broken_log']) for view in views] or [0])
    return [dict((k, v) for k, v in row.items() if k != 'view') for row in kept[:limit]]


def _incident(row):
    return tuple((key, value) for key, value in sorted(row.items()) if key not in ('time', 'epoch', 'view'))


def _state_and_action(nodes, problems, views):
    if problems or len(nodes) != 2:
        if not problems:
            problems.append('no management database could be read: %s' % '; '.join(
                '%s: %s' % (view['label'], (view['error'] or {}).get('detail')) for view in views))
            return 'down', _action('investigate', 'no node could be read; ' + problems[0] +
                                   ': check that both servers run and accept this client')
        return 'misconfigured', _action('fix_configuration', '; '.join(problems) + '. Drivers misbehave on '
                                        'such a pair: make server_info identical on both nodes (forest_mngdb '
                                        'with servers in the same order and overwrite=true) before anything else')
    if _split_brain(nodes):
        return 'split_brain', _action('resolve_split_brain', 'each node marks itself valid and the other broken '
                                      '(%s): applications cut off from each other wrote to different nodes, so '
                                      'both may hold writes the other lacks (guide §11.1.2). Nothing picks a source '
                                      'for you: stop the applications, compare the user databases (forest_dbsync '
                                      'mode=compare source=K lists what the node you give up alone holds), copy what '
                                      'must survive from it, mark it broken on both (forest_mngdb serverid=N '
                                      'validity=-1) and the node you keep valid on both (forest_mngdb serverid=K '
                                      'validity=1), then recover it' % '; '.join('serverid %d is seen as %s' % (
                                          node['serverid'], views_text(node['views'])) for node in nodes))
    bad = [node for node in nodes if node['validity'] == -1 or not node['reachable'] or node['replaced']]
    if len(bad) == 2:
        return 'down', _down_action(nodes)
    if len(bad) == 1:
        return 'degraded', _degraded_action(bad[0], [node for node in nodes if node is not bad[0]][0])
    if any(node['validity'] == 0 for node in nodes):
        suppressed = [node['serverid'] for node in nodes if node['validity'] == 0]
        return 'recovering', _action('wait_or_cancel_recovery', '%s %s write-suppressed (0): an online '
                                     'recovery or sync is in its freeze window; if none runs, cancel it '
                                     '(forest_recover phase=cancel) or set validity back' % (
                                         serverids(suppressed), 'is' if len(suppressed) == 1 else 'are'))
    return 'healthy', _action('none', 'both nodes are valid and both views agree')


def _split_brain(nodes):
    """Each node's own view: itself 1, the other -1 (and both nodes answered)."""
    if sorted(node['serverid'] for node in nodes) != [0, 1] or not all(node['reachable'] for node in nodes):
        return False
    by_sid = dict((node['serverid'], node['views']) for node in nodes)
    return all(by_sid[sid].get(str(sid)) == 1 and by_sid[1 - sid].get(str(sid)) == -1 for sid in (0, 1))


def _action(name, reason, **extra):
    extra.update(action=name, reason=reason)
    return extra


def _degraded_action(broken, good):
    """What the tools accept now: a node that does not answer but is not marked -1
    is marked first (drivers do it on their next failed write); a node marked -1
    is recovered, online when the valid node is a reachable primary."""
    online = good['reachable'] and good['validity'] == 1 and not good['in_recovery']
    if broken['replaced']:
        return _replaced_action(broken, good, online)
    how = ('online from serverid %d (applications keep running), or offline with the applications stopped'
           % good['serverid'] if online else
           'offline (online recovery is not possible now: serverid %d is not a reachable primary)' % good['serverid'])
    if broken['validity'] != -1:
        mark = 'forest_mngdb serverid=%d validity=-1' % broken['serverid']
        return _action('mark_broken', 'serverid %d does not answer although it is still marked %s; serverid %d is '
                       'valid and serves the applications. Drivers mark it -1 on their next failed write; if no '
                       'application writes, mark it yourself once you know it is the broken one (%s), then '
                       'recover it %s' % (broken['serverid'], broken['validity_name'], good['serverid'], mark, how),
                       target=broken['serverid'], source=good['serverid'], online_possible=online, command=mark)
    return _action('online_recovery' if online else 'offline_recovery',
                   'serverid %d is marked broken (-1); serverid %d is valid and serves the applications. Recover '
                   'serverid %d %s' % (broken['serverid'], good['serverid'], broken['serverid'], how),
                   target=broken['serverid'], source=good['serverid'], online_possible=online)


def _replaced_action(new, good, online):
    """A node that is not the one the pair recorded holds none of the pair's data, whatever its
    validity says: it is recovered (a copy of the valid node), after being marked -1 if it is not."""
    what = 'serverid %d is replaced: %s' % (new['serverid'], new['identity']['reason'])
    if new['validity'] != -1:
        mark = 'forest_mngdb serverid=%d validity=-1' % new['serverid']
        return _action('mark_broken', '%s. It is still marked %s: mark it broken (%s; playbooks/provision.yml does '
                       'it too), then recover it from serverid %d (playbooks/recover.yml)'
                       % (what, new['validity_name'], mark, good['serverid']),
                       target=new['serverid'], source=good['serverid'], online_possible=online, command=mark)
    return _action('online_recovery' if online else 'offline_recovery',
                   '%s. It is marked broken (-1); serverid %d is valid and serves the applications. Recover serverid '
                   '%d from it (playbooks/recover.yml%s: it has none of the pair\'s data)'
                   % (what, good['serverid'], new['serverid'], '' if online else ' -e mode=offline -e method=dump'),
                   target=new['serverid'], source=good['serverid'], online_possible=online)


def _down_action(nodes):
    unreachable_valid = [node for node in nodes if not node['reachable'] and node['validity'] != -1]
    if unreachable_valid:
        node = unreachable_valid[0]
        return _action('start_servers', 'no node is usable; serverid %d is still marked %s but does not answer: '
                       'bring its server back first (its data may be the only valid copy), then recover the other'
                       % (node['serverid'], node['validity_name']), source=node['serverid'])
    return _action('restore_from_backup', 'both nodes are marked broken (-1): the service is stopped and neither '
                   'copy can be trusted; restore both nodes from a backup (playbooks/restore.yml)')
