# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What depends on a node's PostgreSQL major version, for the forest_node role: its programs
(pg_bindir), its packages (pg_packages), and the refusal when the nodes of a pair would run
different majors (pg_pair_mismatch).  The rules are in module_utils/pg_platform.py."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.pgforest.cluster.plugins.module_utils import pg_platform


def _major(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        raise AnsibleFilterError('a PostgreSQL major version is a number such as 17, got %r' % (value,))


def pg_bindir(major):
    """The major's programs; None before the role chose the major (the role's variables are checked then)."""
    return None if major in (None, '') else pg_platform.bindir(_major(major))


def pg_packages(major):
    return [] if major in (None, '') else pg_platform.packages(_major(major))


def pg_pair_mismatch(hostvars, host, pair_hosts):
    """`hostvars | pgforest.cluster.pg_pair_mismatch(inventory_hostname, hosts)`: the refusal naming both
    hosts and versions when a host of `pair_hosts` chose another major than `host` (its facts
    forest_node_pg_major and forest_node_pg_major_reason), else ''.  Hosts without the facts (not in
    this play) are left out."""
    def chosen(name):
        facts = hostvars[name]
        return name, _major(facts['forest_node_pg_major']), facts.get('forest_node_pg_major_reason', '')

    peers = [chosen(name) for name in pair_hosts
             if name != host and hostvars[name].get('forest_node_pg_major') not in (None, '')]
    return pg_platform.pair_mismatch(chosen(host), peers) or ''


class FilterModule(object):
    def filters(self):
        return dict(pg_bindir=pg_bindir, pg_packages=pg_packages, pg_pair_mismatch=pg_pair_mismatch)
