# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Messages for people in the roles and playbooks.

`value | pgforest.cluster.shown`: a list, dict or set written for people (module_utils/wording.py).

`status | pgforest.cluster.unhealthy_after(what, before)`: why a pair is not healthy at the end of a
recovery or restore, in one line: its state, each node that is broken or unreachable, and who marked
it and why, from broken_log (client, time, task, error); '' when the pair is healthy."""

from __future__ import annotations

from ansible_collections.pgforest.cluster.plugins.module_utils.wording import shown, validity


def _databases(status):
    """Each user database's status (a forest_status result with several, or one)."""
    return [found for found in (status.get('databases') or [status]) if isinstance(found, dict)]


def _newest_epoch(status):
    epochs = [row.get('epoch') or 0 for found in _databases(status or {}) for row in found.get('broken_log') or []]
    return max(epochs) if epochs else None


def _incident(row, since):
    """`by client X at T (task): error (SQLSTATE s)`, and whether it is older than the run."""
    parts = ['by client %s' % (row.get('client') or 'unknown')]
    if row.get('time'):
        parts.append('at %s' % row['time'])
    if row.get('api_task'):
        parts.append('(%s)' % row['api_task'])
    text = ' '.join(parts)
    if row.get('err_msg'):
        text += ': %s' % ' '.join(str(row['err_msg']).split())
    if row.get('err_state'):
        text += ' (SQLSTATE %s)' % row['err_state']
    if since is not None and (row.get('epoch') or 0) <= since:
        text += ' (logged before this run)'
    return text


def _node_line(node, rows, since):
    sid = node.get('serverid')
    if node.get('validity') == -1:
        line = 'serverid %s is marked %s' % (sid, validity(-1))
    elif not node.get('reachable'):
        line = 'serverid %s does not answer (%s)' % (sid, ((node.get('error') or {}).get('detail') or 'unreachable'))
    else:
        line = 'serverid %s is %s' % (sid, validity(node.get('validity')))
    about = [row for row in rows if row.get('serverid') == sid]
    if about:
        line += ', marked %s' % _incident(about[0], since)
        if len(about) > 1:
            line += ' (%d broken_log rows about it, newest first)' % len(about)
    elif node.get('validity') == -1:
        line += '; no broken_log row says who marked it (a DBA or a tool set udb_validity directly?)'
    return line


def unhealthy_after(status, what='the run', before=None):
    """'' when status (a forest_status result) is healthy; else one line naming the state, each bad node
    and the newest broken_log row about it (client, time, task, error). `before`, the status read when
    the run began, tells rows logged during the run from older ones."""
    if not isinstance(status, dict) or status.get('healthy'):
        return ''
    since = _newest_epoch(before) if isinstance(before, dict) else None
    lines = []
    for found in _databases(status):
        if found.get('healthy'):
            continue
        nodes = [node for node in found.get('nodes') or []
                 if node.get('validity') != 1 or not node.get('reachable')]
        detail = '; '.join(_node_line(node, found.get('broken_log') or [], since) for node in nodes)
        reason = (found.get('recommended_action') or {}).get('reason') or ''
        lines.append('%s%s%s%s' % (
            '%s is ' % found['userdb'] if found.get('userdb') and len(_databases(status)) > 1 else '',
            found.get('cluster_state', 'unknown'), ': ' + detail if detail else '',
            '. What to do: ' + reason if reason else ''))
    return 'After %s the pair is not healthy: %s' % (what, ' | '.join(lines) or status.get('cluster_state', 'unknown'))


class FilterModule(object):
    def filters(self):
        return {
            'shown': shown,
            'unhealthy_after': unhealthy_after,
        }
