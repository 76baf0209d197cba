#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: forest_node_pg
short_description: The PostgreSQL major version of a node's host, and the servers beside the node
description:
  - Chooses the PostgreSQL major version of the node whose data directory is O(data_dir) and says why
    (RV(reason)) - the version asked for (O(pg_version), C(set)); else the one of the node's data
    directory (C(running)); else the newest installed server (C(installed), the newest
    C(/usr/lib/postgresql/N/bin/pg_ctl)); else the OS's default (C(os default), the major that Debian's
    C(postgresql) package depends on - 17 on Debian 13, 15 on Debian 12).
  - Refuses a O(pg_version) that is neither installed nor offered by apt (C(apt-cache policy postgresql-N)),
    before anything changes.
  - Refuses a O(pg_version) that differs from the major of an existing data directory, and a major older
    than 15 (online recovery reads the WAL with C(pg_walinspect)).
  - With O(strays=remove), looks at the clusters C(pg_lsclusters) lists that are not the node (servers the
    OS packages made, such as C(17/main)) and removes with C(pg_dropcluster --stop) the packages' own
    C(N/main) when it was never used - it runs, the server answering on its socket is that cluster (its
    C(data_directory)), and it holds nothing initdb did not make (no database besides C(postgres),
    C(template0) and C(template1), no role, no relation, schema, function, type, extension or large object
    in C(postgres) or C(template1)). Any other one (another name, stopped, unreadable, with data) is left
    as it is and named in a warning.
  - Says what the role needs to know before it installs anything (RV(pg_ctl), RV(psycopg), RV(apt_lists),
    RV(data_dir_initialized)), so that one call answers what would otherwise be a task each.
  - With O(read_apt_lists) on a host that has apt but none of its package lists (a fresh image), reads them
    (C(apt-get update), waiting up to a minute for another apt holding their lock) where they are needed - to
    ask apt for the OS's default or for a major asked for, or because the server or psycopg is to be
    installed; in check mode too, as choosing the version needs them, the role's check run can then say what
    it would install, and reading them changes nothing the node runs.
  - The role M(pgforest.cluster.forest_node) runs it; it needs no psycopg (it runs before the packages are
    installed).
version_added: 0.1.0
author: pgforest.cluster developers (@pgforest)
options:
  data_dir:
    description: The node's data directory.
    type: path
    required: true
  pg_version:
    description: The major version asked for (the role's C(forest_node_pg_version)); left out, it is chosen as above.
    type: int
  strays:
    description:
      - C(ignore) lists no cluster (the version only); C(keep) lists the other clusters and leaves them
        alone; C(remove) removes a never used C(N/main) and warns about the others.
    type: str
    choices: [ignore, keep, remove]
    default: ignore
  os_user:
    description: OS user that reads the other clusters' catalogs (through their sockets, peer authentication).
    type: str
    default: postgres
  bindir:
    description:
      - Directory of the server's programs, where RV(pg_ctl) is looked for (the role's C(forest_node_pg_bindir)
        when set); left out, the chosen major's C(/usr/lib/postgresql/N/bin).
    type: path
  read_apt_lists:
    description: Read apt's package lists (C(apt-get update)) on a host that has none, where they are needed (above).
    type: bool
    default: false
  absent_peers:
    description:
      - The pair's other hosts that are not in the play (C(--limit)), whose major the role's pair check cannot
        compare with this node's. Named in a warning; moving the pair to a new major one node at a time is
        done so (docs/forest_node.md).
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: partial
    description: Chooses the version and classifies the clusters; removes none.
    details: With O(read_apt_lists), apt's package lists are read in check mode too (the one change it makes there).
notes:
  - Debian family (C(/usr/lib/postgresql/N), C(apt-cache), C(pg_lsclusters)); elsewhere only O(pg_version)
    or the data directory can tell the version.
'''

EXAMPLES = r'''
- name: Which PostgreSQL major the node runs
  pgforest.cluster.forest_node_pg:
    data_dir: /var/lib/pgforest/node0/data
    read_apt_lists: true
  register: node_pg

- name: Install PostgreSQL where its pg_ctl is missing
  ansible.builtin.apt:
    name: "{{ node_pg.packages }}"
  when: not node_pg.pg_ctl

- name: Remove the empty default cluster the packages made
  pgforest.cluster.forest_node_pg:
    data_dir: /var/lib/pgforest/node0/data
    pg_version: "{{ node_pg.pg_version }}"
    strays: remove
'''

RETURN = r'''
pg_version:
  description: The chosen major version.
  returned: success
  type: int
  sample: 17
reason:
  description: Why it was chosen - C(set), C(running), C(installed) or C(os default).
  returned: success
  type: str
  sample: os default
data_dir_version:
  description: The major of the node's data directory (C(PG_VERSION)), null without one.
  returned: success
  type: int
  sample: 17
installed:
  description: The majors whose C(pg_ctl) is installed.
  returned: success
  type: list
  elements: int
  sample: [17]
os_default:
  description: The OS's default major, when it was needed (null otherwise, or where apt names none).
  returned: success
  type: int
  sample: 17
bindir:
  description: Directory of the chosen major's programs.
  returned: success
  type: str
  sample: /usr/lib/postgresql/17/bin
packages:
  description: The OS packages of the chosen major's server and client.
  returned: success
  type: list
  elements: str
  sample: [postgresql-17, postgresql-client-17]
pg_ctl:
  description: Whether C(pg_ctl) is in O(bindir) (default the chosen major's directory).
  returned: success
  type: bool
  sample: true
psycopg:
  description: Whether the Python running the module (the one the collection's other modules run with) imports psycopg 3.
  returned: success
  type: bool
  sample: true
apt_lists:
  description: How many of apt's package lists (C(/var/lib/apt/lists/*_Packages*)) the host has; null without apt.
  returned: success
  type: int
  sample: 4
data_dir_initialized:
  description: Whether O(data_dir) holds C(PG_VERSION) (initdb ran there), whatever it says.
  returned: success
  type: bool
  sample: true
apt_lists_read:
  description: Whether the module read apt's package lists (O(read_apt_lists) on a host that had none).
  returned: success
  type: bool
  sample: false
clusters:
  description: The clusters beside the node (not with O(strays=ignore)), each with what was decided.
  returned: success
  type: list
  elements: dict
  sample: [{name: 17/main, port: 5432, pgdata: /var/lib/postgresql/17/main, running: true, action: removed,
            why: "it holds only what initdb made (no user database, role or object)"}]
removed:
  description: The clusters removed (C(version/name)); in check mode, those that would be.
  returned: success
  type: list
  elements: str
  sample: [17/main]
kept:
  description: The clusters left as they are because they may hold data (named in a warning).
  returned: success
  type: list
  elements: str
  sample: [15/main]
'''

import os

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.pgforest.cluster.plugins.module_utils.errors import ForestError
from ansible_collections.pgforest.cluster.plugins.module_utils import pg_platform


def version_facts(params):
    running = pg_platform.data_dir_major(params['data_dir'])
    installed = pg_platform.installed_majors()
    os_default = None
    found = dict(apt_lists=pg_platform.apt_list_count(), apt_lists_read=False)

    def read_lists_if(needed):
        if params['read_apt_lists'] and not found['apt_lists'] and needed:
            pg_platform.read_apt_lists()
            found.update(apt_lists=pg_platform.apt_list_count(), apt_lists_read=True)

    asked = params['pg_version']
    needs_os_default = asked is None and running is None and not installed
    psycopg = pg_platform.imports_psycopg()
    # A fresh image (or one built with its lists removed) has apt but not its lists, and only they name the OS
    # default, tell whether apt offers a major asked for, or let the role's apt task say in check mode what it
    # would install (it refreshes them only in a real run).
    read_lists_if(needs_os_default or not psycopg or (asked is not None and asked not in installed))
    if needs_os_default:
        os_default = pg_platform.probe_os_default()
    major, reason = pg_platform.choose_major(params['pg_version'], running, installed, os_default)
    if reason == 'set' and major not in installed:
        # Before the role writes anything (createcluster.d, packages): a major apt cannot install is refused here.
        refusal = pg_platform.availability_refusal(major, installed, pg_platform.apt_candidate(major))
        if refusal:
            raise pg_platform.PlatformError(refusal)
    programs = params['bindir'] or pg_platform.bindir(major)
    pg_ctl = os.path.exists(os.path.join(programs, 'pg_ctl'))
    read_lists_if(not pg_ctl)  # the chosen major's server is to be installed
    return dict(pg_version=major, reason=reason, data_dir_version=running, installed=installed,
                os_default=os_default, bindir=pg_platform.bindir(major), packages=pg_platform.packages(major),
                pg_ctl=pg_ctl, psycopg=psycopg,
                data_dir_initialized=os.path.exists(os.path.join(params['data_dir'], 'PG_VERSION')), **found)


def handle_strays(module, mode):
    """The clusters beside the node: listed (keep), or the never used ones removed (remove)."""
    clusters, removed, kept = [], [], []
    for cluster in pg_platform.strays(pg_platform.list_clusters(), module.params['data_dir']):
        entry = dict(name=pg_platform.cluster_name(cluster), port=cluster['port'], pgdata=cluster['pgdata'],
                     running=cluster['running'])
        if mode == 'keep':
            entry.update(action='untouched', why='forest_node_stray_clusters=keep')
        else:
            contents = (pg_platform.inspect_cluster(cluster, module.params['os_user'])
                        if pg_platform.worth_reading(cluster) else None)
            verdict, why = pg_platform.stray_verdict(cluster, contents)
            entry['why'] = why
            if verdict == 'remove':
                if not module.check_mode:
                    pg_platform.drop_cluster(cluster)
                removed.append(entry['name'])
                entry['action'] = 'removed'
            else:
                kept.append(entry['name'])
                entry['action'] = 'kept'
                module.warn(pg_platform.stray_warning(cluster, why))
        clusters.append(entry)
    return dict(clusters=clusters, removed=removed, kept=kept)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            data_dir=dict(type='path', required=True),
            pg_version=dict(type='int'),
            strays=dict(type='str', choices=['ignore', 'keep', 'remove'], default='ignore'),
            os_user=dict(type='str', default='postgres'),
            bindir=dict(type='path'),
            read_apt_lists=dict(type='bool', default=False),
            absent_peers=dict(type='list', elements='str', default=[]),
        ),
        supports_check_mode=True,
    )
    try:
        result = version_facts(module.params)
        result.update(clusters=[], removed=[], kept=[])
        uncompared = pg_platform.uncompared_warning(result['pg_version'], module.params['absent_peers'])
        if uncompared:
            module.warn(uncompared)
        if module.params['strays'] != 'ignore':
            result.update(handle_strays(module, module.params['strays']))
    except ForestError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=bool(result['removed']) or result['apt_lists_read'], **result)


if __name__ == '__main__':
    main()
