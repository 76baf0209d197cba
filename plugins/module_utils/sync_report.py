# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a compare or sync returns: the result of forest_dbsync (and of a recovery by diff),
with one readable line per table and differing sequence."""

from __future__ import annotations

import time


def report(sync, failed=False):
    tables = [dict((k, v) for k, v in result.items() if not k.startswith('_')) for result in sync.results]
    counts = {}
    for table in tables:
        counts[table['status']] = counts.get(table['status'], 0) + 1
    sequences = [dict((k, v) for k, v in seq.items() if k != 'seq') for seq in sync.sequences]
    settled = ('equal', 'repaired')
    equal = not failed and all(t['status'] in settled for t in tables) and all(s['status'] == 'set' for s in sequences)
    return dict(equal=equal, report=report_lines(tables, sequences), source=sync.source and sync.source['serverid'],
                target=sync.target and sync.target['serverid'], tables=tables,
                sequences=sequences, freeze_window=sync.freeze_window, freeze=sync.freeze_report,
                phases=sync.timer.phases,
                read_duration=sync.poll.report if sync.poll is not None else None,
                unlogged_tables=sync.unlogged,
                progress=sync.progress,
                summary=dict(tables=counts, rows_copied=sum(t['rows_copied'] for t in tables),
                             bytes_copied=sum(t['bytes_copied'] for t in tables),
                             seconds=round(time.monotonic() - sync.started, 3)))


def report_lines(tables, sequences):
    """One readable line per table (and differing sequence)."""
    lines = []
    for t in tables:
        line = '%-40s %-15s' % (t['table'], t['status'])
        if 'rows_source' in t:
            line += ' rows %s/%s' % (t['rows_source'], t['rows_target'])
        if t['missing'] or t['extra'] or t['changed']:
            line += ' missing %d extra %d changed %d' % (t['missing'], t['extra'], t['changed'])
        if t['rows_copied']:
            line += ' copied %d rows %d bytes (%s)' % (t['rows_copied'], t['bytes_copied'], t.get('method'))
        for kind, keys in sorted(t['keys'].items()):
            line += ' %s: %s' % (kind, ', '.join(','.join('%s=%s' % kv for kv in sorted(k.items())) for k in keys[:5]))
            more = t[kind] - min(len(keys), 5)
            if more > 0:
                line += ' (and %d more)' % more
        if t.get('detail') and t['status'] != 'repaired':
            line += ' -- %s' % t['detail']
        lines.append(line)
    for seq in sequences:
        lines.append('%-40s %-15s source %s target %s' % (seq['sequence'], 'sequence ' + seq['status'],
                                                          seq['source'], seq['target']))
    return lines
