# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pairs' status as Prometheus text-format metrics, for node_exporter's textfile collector
(playbooks/status.yml -e forest_metrics_file=PATH writes them; docs/monitoring.md).

`[{pair, status}, ...] | pgforest.cluster.prometheus_metrics` (status: a forest_status result; each of
its `databases` gives its own samples):
  pgforest_database_state{pair,userdb,state}     1 for the database's state, 0 for the others
  pgforest_database_healthy{pair,userdb}         1 or 0
  pgforest_node_validity{pair,userdb,serverid,view}  udb_validity of the node as node `view` says it
  pgforest_node_reachable{pair,userdb,serverid}  1 or 0
  pgforest_node_replaced{pair,userdb,serverid}   1 when the node is not the one the pair recorded (a new
                                                 server: rebuilt host, lost data directory, restored copy)
  pgforest_broken_log_age_seconds{pair,userdb,serverid}  since the node's newest broken_log entry
  pgforest_replication_slot_lag_bytes{pair,userdb,serverid,slot}  WAL an online recovery's target has
                                                 still to confirm (on its source, while it runs)
  pgforest_replication_slot_active{pair,userdb,serverid,slot}  1 while the copy or standby streams
  pgforest_read_duration_seconds{pair,userdb,serverid}  the node's mngdb_read_duration (drivers' poll interval)
  pgforest_read_duration_lowered_seconds{pair,userdb,serverid}  how long a run has had it lowered (a killed
                                                 run's lowering stays until the next run puts it back)
  pgforest_status_time_seconds                   when the status was read (Unix time)
"""

from __future__ import annotations

import time

from ansible.errors import AnsibleFilterError

# Every state forest_status names, each with its series, so that a state going away shows as 0
# instead of the series vanishing.
from ansible_collections.pgforest.cluster.plugins.module_utils.shapes import STATES
METRICS = (
    ('pgforest_database_state', 'The state forest_status gives the user database (1 for its state, 0 for the others).'),
    ('pgforest_database_healthy', 'Whether the user database is healthy on both nodes (1) or not (0).'),
    ('pgforest_node_validity', 'udb_validity of a node as the management database on node "view" says it '
                               '(1 valid, 0 write-suppressed, -1 broken).'),
    ('pgforest_node_reachable', 'Whether the node answered forest_status (1) or not (0).'),
    ('pgforest_node_replaced', 'Whether the node is not the one the pair recorded (1: a new server, it needs '
                               'recover.yml) or is (0).'),
    ('pgforest_broken_log_age_seconds', 'Seconds since the newest broken_log entry about the node.'),
    ('pgforest_replication_slot_lag_bytes', 'Bytes of WAL written on the node since an online recovery\'s '
                                            'target last confirmed them through its slot.'),
    ('pgforest_replication_slot_active', 'Whether the online recovery\'s copy or standby streams through the '
                                         'slot (1) or not (0).'),
    ('pgforest_read_duration_seconds', 'mngdb_read_duration of the node: how often the drivers read the '
                                       'management database (seconds).'),
    ('pgforest_read_duration_lowered_seconds', 'How long an online recovery or online compare has had '
                                               'mngdb_read_duration lowered on the node (a killed run\'s stays).'),
    ('pgforest_status_time_seconds', 'When the status was read (Unix time).'),
)


def label_value(value):
    return str(value).replace('\\', '\\\\').replace('\n', '\\n').replace('"', '\\"')


def sample(name, labels, value):
    text = ','.join('%s="%s"' % (key, label_value(labels[key])) for key in sorted(labels))
    return '%s{%s} %s' % (name, text, value)


def database_samples(pair, status, now):
    userdb = status.get('userdb')
    base = dict(pair=pair, userdb=userdb)
    out = dict((name, []) for name, _help in METRICS)
    for state in STATES:
        out['pgforest_database_state'].append(sample('pgforest_database_state', dict(base, state=state),
                                                     int(status.get('cluster_state') == state)))
    out['pgforest_database_healthy'].append(sample('pgforest_database_healthy', base, int(bool(status.get('healthy')))))
    newest = {}
    for row in status.get('broken_log') or []:
        if row.get('epoch') is not None:
            newest[row['serverid']] = max(newest.get(row['serverid'], 0.0), float(row['epoch']))
    for node in status.get('nodes') or []:
        labels = dict(base, serverid=node['serverid'])
        out['pgforest_node_reachable'].append(sample('pgforest_node_reachable', labels, int(bool(node.get('reachable')))))
        out['pgforest_node_replaced'].append(sample('pgforest_node_replaced', labels, int(bool(node.get('replaced')))))
        for view, validity in sorted((node.get('views') or {}).items()):
            if validity is not None:
                out['pgforest_node_validity'].append(sample('pgforest_node_validity', dict(labels, view=view),
                                                            int(validity)))
        for slot in node.get('replication_slots') or []:
            slot_labels = dict(labels, slot=slot['name'])
            out['pgforest_replication_slot_active'].append(sample('pgforest_replication_slot_active', slot_labels,
                                                                  int(bool(slot.get('active')))))
            if slot.get('lag_bytes') is not None:
                out['pgforest_replication_slot_lag_bytes'].append(sample(
                    'pgforest_replication_slot_lag_bytes', slot_labels, int(slot['lag_bytes'])))
        read_duration = node.get('read_duration') or {}
        if read_duration.get('seconds') is not None:
            out['pgforest_read_duration_seconds'].append(sample('pgforest_read_duration_seconds', labels,
                                                                read_duration['seconds']))
        if read_duration.get('lowered'):
            out['pgforest_read_duration_lowered_seconds'].append(sample(
                'pgforest_read_duration_lowered_seconds', labels, read_duration['lowered']['for_seconds']))
        if node['serverid'] in newest:
            out['pgforest_broken_log_age_seconds'].append(sample(
                'pgforest_broken_log_age_seconds', labels, round(max(0.0, now - newest[node['serverid']]), 3)))
    return out


def prometheus_metrics(items, now=None):
    """Text exposition format of [{pair, status}, ...]; a status with `databases` gives each database."""
    if not isinstance(items, list):
        raise AnsibleFilterError('prometheus_metrics takes a list of {pair, status} items, got %s'
                                 % type(items).__name__)
    now = time.time() if now is None else now
    merged = dict((name, []) for name, _help in METRICS)
    for item in items:
        if not isinstance(item, dict) or 'status' not in item or not isinstance(item['status'], dict):
            raise AnsibleFilterError('prometheus_metrics: each item needs a pair name and a forest_status result '
                                     '(status), got %r' % (item,))
        status = item['status']
        if status.get('failed'):
            raise AnsibleFilterError('prometheus_metrics: forest_status failed for pair %s: %s'
                                     % (item.get('pair'), status.get('msg')))
        for database in status.get('databases') or [status]:
            for name, lines in database_samples(item.get('pair', 'forest'), database, now).items():
                merged[name] += lines
    merged['pgforest_status_time_seconds'].append('pgforest_status_time_seconds %s' % round(now, 3))
    text = []
    for name, help_text in METRICS:
        if merged[name]:
            text += ['# HELP %s %s' % (name, help_text), '# TYPE %s gauge' % name] + merged[name]
    return '\n'.join(text) + '\n'


class FilterModule(object):
    def filters(self):
        return dict(prometheus_metrics=prometheus_metrics)
