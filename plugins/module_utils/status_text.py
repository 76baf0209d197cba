# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pair's status as lines for people: forest_status's `summary`, playbooks and -v output."""

from __future__ import annotations

from .wording import views as views_text


def summary_lines(status):
    """One line per node, for playbooks and -v output."""
    lines = ['cluster %s: %s' % (status['cluster_state'], status['recommended_action']['reason'])]
    for node in status['nodes']:
        lines.append('serverid %d %-24s %-16s %-9s %s%s' % (
            node['serverid'], node['url'], node['validity_name'] + (' REPLACED' if node.get('replaced') else ''),
            'reachable' if node['reachable'] else 'UNREACHABLE',
            'standby ' if node['in_recovery'] else '',
            'views %s' % views_text(node['views']) if len(set(node['views'].values())) > 1 else ''))
    for node in status['nodes']:
        lowered = (node.get('read_duration') or {}).get('lowered')
        if lowered:
            lines.append('serverid %d: mngdb_read_duration lowered to %s s by %s %.0f s ago (the DBA\'s value: %s); '
                         'if that run is over (killed), the next online recovery or online compare puts it back, or '
                         'set it with playbooks/config.yml' % (node['serverid'], lowered['short'], lowered.get('by'),
                                                               lowered['for_seconds'], lowered['dba']))
    return lines


def pair_summary_lines(status):
    """summary_lines() of one database; with several, a line for the pair, then each database's."""
    databases = status.get('databases') or []
    if len(databases) <= 1:
        return summary_lines(status)
    lines = ['pair %s: %s' % (status['cluster_state'], ', '.join(
        '%s %s' % (found['userdb'], found['cluster_state']) for found in databases))]
    for found in databases:
        lines += ['%s: %s' % (found['userdb'], line) for line in summary_lines(found)]
    return lines
