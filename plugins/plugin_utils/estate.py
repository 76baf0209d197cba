# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pairs of an inventory as one controller-side reader sees them (module_utils/estate_read.py):
status.yml's forest_estate_status and the exporter (module_utils/exporter.py) both take them from here.

Each pair is made with the playbooks' own rules: its hosts and name by the pair rule
(filter forest_pair: `forest_pair`, two hosts with serverid 0 and 1), its user databases by
`userdbs`, each connection option from the variable INVENTORY_DEFAULTS names for it.  The reader
runs where this code runs (the controller, or the monitoring host), so TLS files are read here:
`forest_pg_ssl_*` as given, else with `forest_tls` verify-full against the pair's CA on the
controller (filter node_layout.tls_ca_file: `forest_tls_ca_file`, else the private CA's).
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.pgforest.cluster.plugins.filter.forest_pair import pair_hosts, pair_name, userdbs
from ansible_collections.pgforest.cluster.plugins.filter.node_layout import tls_ca_file
from ansible_collections.pgforest.cluster.plugins.plugin_utils.inventory_defaults import INVENTORY_DEFAULTS, TLS_OPTIONS

# What a pair's host may say to the reader (the forest_metrics role's inventory for the exporter has
# exactly these); the exporter refuses any other forest_* variable, a misspelt one most likely.
PAIR_VARIABLES = frozenset(list(INVENTORY_DEFAULTS.values()) + [
    'forest_serverid', 'forest_pair', 'forest_userdbs', 'forest_tls', 'forest_tls_ca_file', 'forest_tls_ca_dir'])
# What the hosts' variables give when they do not say (the modules' own defaults, doc fragment connection).
DEFAULTS = dict(login_port=5432, login_user='postgres', statement_timeout=30000)


class EstateError(ValueError):
    """An inventory the reader cannot use: one line that says what to fix."""


# The TLS files a reader opens itself: (option, what it is, the variable that names it).
TLS_FILES = (('ssl_rootcert', 'CA certificate', 'forest_pg_ssl_rootcert (or forest_tls_ca_file)'),
             ('ssl_cert', 'client certificate', 'forest_pg_ssl_cert'),
             ('ssl_key', 'client key', 'forest_pg_ssl_key'))


def check_tls_files(pairs):
    """Every TLS file the pairs' reads open must be readable here, where the reader runs: a missing CA would
    otherwise fail every node's connection and show each TLS pair as down, for a mistake of the reader's host.
    EstateError, one line, naming the pair, the file and the variable."""
    for pair in pairs:
        for option, what, variable in TLS_FILES:
            name = pair['params'].get(option)
            if name and not os.access(name, os.R_OK):
                raise EstateError('pair %s: the %s %s (%s of %s) %s here, where the pairs are read from' % (
                    pair['pair'], what, name, variable, pair['hosts'][0],
                    'cannot be read' if os.path.exists(name) else 'does not exist'))
    return pairs


def reader_tls(host_vars):
    """The TLS options of a controller-side read of this host's node: forest_pg_ssl_* as given,
    else with forest_tls verify-full against the pair's CA here."""
    found = dict((option, host_vars[INVENTORY_DEFAULTS[option]]) for option in TLS_OPTIONS
                 if host_vars.get(INVENTORY_DEFAULTS[option]) not in (None, ''))
    if boolean(host_vars.get('forest_tls', False), strict=False):
        found.setdefault('ssl_mode', 'verify-full')
        found.setdefault('ssl_rootcert', tls_ca_file(host_vars))
    return found


def pair_params(first, second, connect_timeout, statement_timeout=None):
    """The connection options of the pair: serverid 0's node (its variables `first`), serverid 1's
    as the peer (the same user, password and TLS settings: forest_pg.Node.sibling)."""
    params = dict(DEFAULTS, connect_timeout=int(connect_timeout), userdb=None,
                  ssl_mode=None, ssl_rootcert=None, ssl_cert=None, ssl_key=None, login_password=None)
    for option in ('login_host', 'login_port', 'login_user', 'login_password'):
        if first.get(INVENTORY_DEFAULTS[option]) not in (None, ''):
            params[option] = first[INVENTORY_DEFAULTS[option]]
    if statement_timeout is not None:
        params['statement_timeout'] = int(statement_timeout)
    params.update(reader_tls(first))
    if params.get('login_host') in (None, '') or second.get('forest_pg_host') in (None, ''):
        raise EstateError('every host of a pair needs forest_pg_host (the address its server answers on)')
    params['login_port'] = int(params['login_port'])
    params.update(peer_host=second['forest_pg_host'], peer_port=int(second.get('forest_pg_port') or 5432))
    return params


def estate_pairs(hostvars, group_hosts, group='forest', play_hosts=None, connect_timeout=3, statement_timeout=None):
    """[{pair, userdbs, params, hosts}] of every pair with a host in play_hosts (all, when None), by
    pair name.  hostvars: {host: its variables, templated}; group_hosts: the hosts of `group`.
    A pair the pair rule refuses raises the filter's own error (AnsibleFilterError), one line."""
    # Each host's variables the rules read, once: Ansible's hostvars work out all of a host's variables at
    # every hostvars[host], and the pair rule looks at every host for each pair (200 hosts: 13 s instead of 0.3).
    hostvars = dict((host, pair_variables(hostvars[host])) for host in group_hosts)
    found = {}
    for host in group_hosts:
        if play_hosts is not None and host not in play_hosts:
            continue
        name = pair_name(hostvars, host, group)
        if name in found:
            continue
        hosts = pair_hosts(hostvars, host, group_hosts, group)
        first, second = hostvars[hosts[0]], hostvars[hosts[1]]
        found[name] = dict(pair=name, hosts=hosts,
                           userdbs=userdbs(first.get('forest_userdbs'), first.get('forest_userdb')),
                           params=pair_params(first, second, connect_timeout, statement_timeout))
    return [found[name] for name in sorted(found)]


def pair_variables(host_vars):
    """{name: value} of the PAIR_VARIABLES a host has, each templated once (host_vars: a mapping, such as
    Ansible's hostvars[host], that templates a value when it is read)."""
    return dict((name, host_vars[name]) for name in PAIR_VARIABLES if name in host_vars)


def unknown_variables(hostvars, hosts):
    """'host: forest_x, forest_y; ...' of the forest_* variables a pair reader does not know, or ''."""
    unknown = []
    for host in hosts:
        names = sorted(name for name in hostvars[host] if name.startswith('forest_') and name not in PAIR_VARIABLES)
        if names:
            unknown.append('%s: %s' % (host, ', '.join(names)))
    return '; '.join(unknown)


def plain(value):
    """An inventory value as a plain Python value (Ansible's tagged strings, numbers, lists)."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return dict((str(key), plain(item)) for key, item in value.items())
    return value


def inventory_hostvars(path, group):
    """({host: its forest_* variables, templated}, hosts of group) of a YAML inventory file, read by Ansible."""
    try:
        with open(path, 'rb'):
            pass
    except OSError as exc:
        raise EstateError('cannot read the inventory %s: %s' % (path, exc.strerror or exc))
    from ansible import constants
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar
    from ansible.utils.display import Display
    from ansible.vars.manager import VariableManager
    # The file is YAML (the forest_metrics role writes it so): parsed by Ansible's yaml plugin alone, whose
    # failure is an error here, not a warning and an empty estate; Ansible's warnings are kept for that one line.
    constants.INVENTORY_ENABLED = ['yaml']
    constants.INVENTORY_ANY_UNPARSED_IS_FAILED = True
    said = []
    display = Display()
    display.warning = lambda msg, *_args, **_kwargs: said.append(str(msg))
    display.error_as_warning = lambda msg, exception=None, *_args, **_kwargs: said.append(
        '%s %s' % (msg, getattr(exception, 'message', exception) or ''))
    loader = DataLoader()
    try:
        inventory = InventoryManager(loader=loader, sources=[path])
        variables = VariableManager(loader=loader, inventory=inventory)
        if group not in inventory.groups:
            raise EstateError('the inventory %s has no group %s (the pairs\' hosts): give --group' % (path, group))
        hosts = [host.name for host in inventory.groups[group].get_hosts()]
        found = {}
        for name in hosts:
            raw = variables.get_vars(host=inventory.get_host(name), include_hostvars=False)
            templar = Templar(loader=loader, variables=raw)
            found[name] = dict((key, plain(templar.template(value))) for key, value in raw.items()
                               if key.startswith('forest_'))
    except AnsibleError as exc:
        why = ([line for line in said if 'Failed to parse' in line] or [str(exc.message)])[0]
        raise EstateError('cannot use the inventory %s (YAML, as the forest_metrics role writes it): %s'
                          % (path, ' '.join(why.split())))
    if not hosts:
        raise EstateError('the group %s of the inventory %s has no host' % (group, path))
    return found, hosts


def inventory_pairs(path, group='forest', connect_timeout=3, statement_timeout=None):
    """The pairs of a YAML inventory file (the one the forest_metrics role writes), for a reader outside a
    play (the exporter); every forest_* variable must be one of PAIR_VARIABLES.  EstateError, one line."""
    hostvars, hosts = inventory_hostvars(path, group)
    unknown = unknown_variables(hostvars, hosts)
    if unknown:
        raise EstateError('the inventory %s has variables the exporter does not know (%s): remove or correct them'
                          % (path, unknown))
    try:
        return check_tls_files(estate_pairs(hostvars, hosts, group, None, connect_timeout, statement_timeout))
    except AnsibleFilterError as exc:
        raise EstateError('the inventory %s: %s' % (path, str(exc).splitlines()[0]))
