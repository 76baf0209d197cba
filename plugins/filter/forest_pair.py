# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which user databases a pair serves and which hosts make a pair, for roles and playbooks
(docs/inventory.md).

User databases: `forest_userdbs` (a list), or `forest_userdb` (one name, the older form), or
`userdb`.  Pairs: every host of the inventory group (`forest`) belongs to the pair its
`forest_pair` variable names (set it on a child group per pair); without it, the whole group is
one pair, named after the group.  A pair-wide step runs on the pair's leader: the first of its
hosts, in serverid order, still in the play.
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

DEFAULT_USERDB = 'userdb'
# What the role's pg_hba.conf and the playbooks accept as a database name (docs/inventory.md).
USERDB_PATTERN = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')
# <userdb>_pghainfo must fit in PostgreSQL's 63-byte names.
USERDB_MAX_LENGTH = 63 - len('_pghainfo')


def userdbs(listed, single=None):
    """`forest_userdbs | pgforest.cluster.userdbs(forest_userdb)`: the pair's user databases, in order.
    Either argument may be undefined-as-None; both missing gives the default, `userdb`."""
    if listed in (None, ''):
        names = [single if single not in (None, '') else DEFAULT_USERDB]
    elif isinstance(listed, str):
        names = [listed]
    elif isinstance(listed, (list, tuple)):
        names = list(listed)
    else:
        raise AnsibleFilterError('forest_userdbs must be a list of database names, got %r' % (listed,))
    if not names:
        raise AnsibleFilterError('forest_userdbs is empty: list the pair\'s user databases, e.g. [userdb]')
    for name in names:
        if not isinstance(name, str) or not USERDB_PATTERN.match(name) or len(name) > USERDB_MAX_LENGTH:
            raise AnsibleFilterError('user database names must be plain identifiers (letters, digits and _, not '
                                     'starting with a digit, at most %d characters), got %r: fix forest_userdbs / '
                                     'forest_userdb' % (USERDB_MAX_LENGTH, name))
    repeated = sorted(set(name for name in names if names.count(name) > 1))
    if repeated:
        raise AnsibleFilterError('forest_userdbs lists %s more than once' % ', '.join(repeated))
    return names


def backup_dir(base, userdb, all_userdbs):
    """`forest_backup_dir | pgforest.cluster.backup_dir(userdb, forest_common_pair_userdbs)`: where the
    logical backups of one user database live.  A pair with one user database keeps them in the backup
    directory itself (as always); with several, each database has its own <backup_dir>/<userdb>, so that
    `latest` means that database's newest.  Physical backups, which hold every database, stay in <backup_dir>."""
    if userdb not in all_userdbs:
        raise AnsibleFilterError('%s is not one of the pair\'s user databases (%s)' % (userdb, ', '.join(all_userdbs)))
    base = str(base).rstrip('/') or '/'
    return base if len(all_userdbs) == 1 else '%s/%s' % (base, userdb)


def backup_source(userdb, base, all_userdbs):
    """{userdb, backup_dir} of one user database's logical backups (backup_dir above), for restore.yml."""
    return dict(userdb=userdb, backup_dir=backup_dir(base, userdb, all_userdbs))


def userdb_refusal(asked, all_userdbs, pair='forest'):
    """`asked | pgforest.cluster.userdb_refusal(forest_common_pair_userdbs, forest_common_pair_name)`: '' when
    every user database asked for (`-e userdb=NAME`, a list, or none) is one of the pair's; else one line that
    lists the pair's databases (any value: quotes, dots, non-ASCII, numbers, lists are refused cleanly)."""
    if asked is None or (isinstance(asked, (list, tuple)) and not asked):
        return ''
    names = list(asked) if isinstance(asked, (list, tuple)) else [asked]
    unknown = [name for name in names if not isinstance(name, str) or name not in all_userdbs]
    if not unknown:
        return ''
    return ('%s %s of pair %s; its user databases are %s (forest_userdbs in the inventory). Nothing was changed: '
            'give one of them, or leave userdb out for all of them' % (
                ', '.join('userdb "%s"' % _printable(name) for name in unknown),
                'is not a user database' if len(unknown) == 1 else 'are not user databases', pair,
                ', '.join(all_userdbs)))


def _printable(value):
    """A name as given, control characters escaped, bounded (a message is one line)."""
    text = str(value) if not isinstance(value, str) else value
    text = ''.join(char if char.isprintable() else '\\x%02x' % ord(char) if ord(char) < 256 else '\\u%04x' % ord(char)
                   for char in text)
    return text if len(text) <= 80 else text[:77] + '...'


def _pair_name(host_vars, group):
    value = host_vars.get('forest_pair')
    return group if value in (None, '') else str(value)


def pair_hosts(hostvars, host, group_hosts, group='forest', strict=True):
    """`hostvars | pgforest.cluster.pair_hosts(inventory_hostname, groups['forest'])`: the hosts of
    `host`'s pair in serverid order.  Refuses a pair that is not two hosts with serverids 0 and 1
    (strict=False: returns what there is, for a caller that checks and says it itself)."""
    mine = _pair_name(hostvars[host], group)
    members = [name for name in group_hosts if _pair_name(hostvars[name], group) == mine]
    if not strict:
        return sorted(members, key=lambda name: str(hostvars[name].get('forest_serverid')))
    try:
        ordered = sorted(members, key=lambda name: int(hostvars[name]['forest_serverid']))
        serverids = [int(hostvars[name]['forest_serverid']) for name in ordered]
    except (KeyError, TypeError, ValueError):
        raise AnsibleFilterError('pair %s (%s): every host needs forest_serverid 0 or 1'
                                 % (mine, ', '.join(members)))
    if serverids != [0, 1]:
        raise AnsibleFilterError('pair %s must be two hosts with forest_serverid 0 and 1, found %s: give each '
                                 'pair its own forest_pair (a child group per pair, docs/inventory.md)'
                                 % (mine, ', '.join('%s=%s' % (name, hostvars[name].get('forest_serverid'))
                                                    for name in ordered)))
    return ordered


def pair_servers(hosts, hostvars):
    """`forest_common_pair_hosts | pgforest.cluster.pair_servers(hostvars)`: host:port of serverid 0 then 1,
    the server_info both management databases register."""
    return ['%s:%s' % (hostvars[name].get('forest_pg_host'), hostvars[name].get('forest_pg_port', 5432))
            for name in hosts]


def pair_name(hostvars, host, group='forest'):
    return _pair_name(hostvars[host], group)


def pair_leader(hosts, play_hosts):
    """The first of the pair's hosts still in the play (a host that failed or was unreachable is
    passed over, as run_once would); '' when none is."""
    active = [name for name in hosts if name in play_hosts]
    return active[0] if active else ''


def pair_statuses(hosts_vars):
    """[{pair, status}] of the pair leaders' forest_status results, by pair name
    (`ansible_play_hosts | map('extract', hostvars) | pgforest.cluster.pair_statuses`)."""
    found = []
    for host_vars in hosts_vars:
        status = host_vars.get('forest_status') or {}
        if host_vars.get('inventory_hostname') == host_vars.get('forest_common_pair_leader') and 'databases' in status:
            found.append(dict(pair=host_vars.get('forest_common_pair_name'), status=status))
    return sorted(found, key=lambda item: str(item['pair']))


def node_note(node):
    """What a status line adds after a node's validity: why it is not usable."""
    notes = [note for note, present in (('unreachable', not node['reachable']), ('replaced', node.get('replaced')))
             if present]
    return '(%s)' % ','.join(notes) if notes else ''


# The heading of status_table's lines.
STATUS_HEADER = 'pair             userdb           state         nodes                                    action'


def status_lines(hosts_vars):
    """One line per pair and user database from the pair leaders' forest_status results
    (`ansible_play_hosts | map('extract', hostvars) | pgforest.cluster.status_lines`)."""
    return status_table(pair_statuses(hosts_vars))


def status_table(items, header=False):
    """One line per pair and user database of [{pair, status}] (forest_estate_status's `pairs`, the
    exporter's read), sorted; with header, STATUS_HEADER first."""
    lines = []
    for item in items:
        for found in item['status']['databases']:
            nodes = ' '.join('%s=%s%s' % (node['serverid'], node['validity_name'], node_note(node))
                             for node in found['nodes'])
            lines.append('%-16s %-16s %-13s %-40s %s' % (
                item['pair'], found['userdb'], found['cluster_state'], nodes, found['recommended_action']['action']))
    return ([STATUS_HEADER] if header else []) + sorted(lines)


def status_summaries(items):
    """`forest_estate_status`'s pairs as the lines status.yml prints for each pair: its name, forest_status's
    summary and the recommended action (one list, one task: a loop costs Ansible a result per pair)."""
    lines = []
    for item in items:
        lines += (['pair %s:' % item['pair']] + list(item['status']['summary'])
                  + ['recommended action: ' + item['status']['recommended_action']['action']])
    return lines


def status_failures(items):
    """One line per pair that is not healthy, what `fail_unless_healthy` fails with: the pair, its state, the
    databases that are not healthy and the recommended action's reason."""
    return ['pair %s is %s (not healthy: %s): %s' % (
        item['pair'], item['status']['cluster_state'], ', '.join(item['status']['unhealthy_userdbs']),
        item['status']['recommended_action']['reason']) for item in items if not item['status']['healthy']]


class FilterModule(object):
    def filters(self):
        return {
            'userdbs': userdbs,
            'pair_statuses': pair_statuses,
            'pair_hosts': pair_hosts,
            'pair_name': pair_name,
            'pair_servers': pair_servers,
            'backup_dir': backup_dir,
            'backup_source': backup_source,
            'pair_leader': pair_leader,
            'status_lines': status_lines,
            'status_table': status_table,
            'status_summaries': status_summaries,
            'status_failures': status_failures,
            'userdb_refusal': userdb_refusal,
        }
