# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The PostgreSQL of a node's host: which major version the node runs, what depends on it, and the
servers beside the node that the OS packages made.

Everything that depends on the major version is here (`MIN_MAJOR`, `bindir`, `packages`):
the role (module forest_node_pg), the online recovery (a physical copy needs the same major) and
the tests read it from here.  The decisions are pure functions (`choose_major`, `os_default_major`,
`stray_verdict`, the refusals); `data_dir_major`, `installed_majors`, `probe_os_default`, `list_clusters` and
`inspect_cluster` only gather what they decide on."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

from . import children
from .errors import ForestError


class PlatformError(ForestError):
    pass


# --- what depends on the major version: the one table ---------------------------------------------
# The oldest major the collection runs on: online recovery reads the WAL of the freeze with pg_walinspect
# (pg_get_wal_records_info(start, end): the same columns and record names it relies on in 15, 16 and 17),
# which PostgreSQL 15 brought. Audited for 15..17: the settings the role writes (forest.conf), the
# standby's (primary_conninfo, primary_slot_name, standby.signal) and the catalog views the modules read
# kept their names; a rename in a later major would be handled here.
MIN_MAJOR = 15
# Where each major's programs live on Debian.
DEBIAN_LIB = '/usr/lib/postgresql'
APT_LISTS = '/var/lib/apt/lists'


def bindir(major):
    return '%s/%d/bin' % (DEBIAN_LIB, int(major))


def packages(major):
    """The OS packages of a node's server and client programs (Debian's names)."""
    return ['postgresql-%d' % int(major), 'postgresql-client-%d' % int(major)]


def check_supported(major, where):
    if int(major) < MIN_MAJOR:
        raise PlatformError('%s is PostgreSQL %d, but pgforest.cluster needs %d or newer (online recovery reads '
                            'the WAL with pg_walinspect): install PostgreSQL %d or newer and set '
                            'forest_node_pg_version to it. Nothing was changed'
                            % (where, int(major), MIN_MAJOR, MIN_MAJOR))


# --- which major the node runs ------------------------------------------------------------------------
def os_default_major(apt_depends):
    """The major of the OS's `postgresql` metapackage, from `apt-cache depends postgresql` (or the
    Depends: lines of `apt-cache show postgresql`): postgresql-17 on Debian 13, 15 on Debian 12.
    None when it names none (no such package here)."""
    found = re.findall(r'^\s*(?:\|)?Depends:\s*(.*)$', apt_depends or '', re.MULTILINE)
    majors = [int(major) for line in found for major in re.findall(r'(?:^|[\s,|])postgresql-(\d+)\b', line)]
    return max(majors) if majors else None


def choose_major(asked=None, running=None, installed=(), os_default=None):
    """(major, reason): the version asked for ('set'), else the one of the node's data directory
    ('running'), else the newest installed ('installed'), else the OS's default ('os default').

    running: PG_VERSION of the node's data directory (None without one); installed: the majors whose
    pg_ctl is on the host.  A major asked for that differs from the data directory's is refused: the
    data directory cannot run on other binaries, and moving it to a new major is the documented
    upgrade (mark the node -1, new major, repair by content), not a variable change."""
    if asked not in (None, ''):
        major, reason = int(asked), 'set'
        if running is not None and int(running) != major:
            raise PlatformError(
                'forest_node_pg_version is %d, but the node\'s data directory is PostgreSQL %d: a data directory '
                'runs only on its own major version. Leave forest_node_pg_version out (or set it to %d) to keep '
                'the node as it is; moving a node to another major is an upgrade, done one node at a time as '
                'docs/forest_node.md says (mark it -1, install the new major, repair it by content). Nothing '
                'was changed' % (major, int(running), int(running)))
    elif running is not None:
        major, reason = int(running), 'running'
    elif installed:
        major, reason = max(int(version) for version in installed), 'installed'
    elif os_default is not None:
        major, reason = int(os_default), 'os default'
    else:
        raise PlatformError('no PostgreSQL major version to choose: the node has no data directory, no '
                            'PostgreSQL server is installed (no %s/N/bin/pg_ctl) and the OS packages name '
                            'none (apt-cache depends postgresql; a host without apt package lists needs apt-get '
                            'update first). Set forest_node_pg_version, or install the PostgreSQL server '
                            'packages' % DEBIAN_LIB)
    check_supported(major, {'set': 'forest_node_pg_version', 'running': 'the node\'s data directory',
                            'installed': 'the newest installed server', 'os default': 'the OS\'s default'}[reason])
    return major, reason


def pair_mismatch(mine, peers):
    """The refusal when the nodes of a pair would run different majors, or None.
    mine: (host, major, reason); peers: [(host, major, reason)] of the pair's other hosts in the play."""
    others = [peer for peer in peers if int(peer[1]) != int(mine[1])]
    if not others:
        return None
    peer = others[0]
    return ('the nodes of a pair must run the same PostgreSQL major version, but %s would run %d (%s) and %s %d '
            '(%s): online recovery copies one node onto the other physically, which works only within one major. '
            'Set forest_node_pg_version to the same major for both (the running one: a data directory cannot '
            'change major), or move the other node to the new major first as docs/forest_node.md says (mark it '
            '-1, install the new major, repair it by content). Nothing was changed'
            % (mine[0], int(mine[1]), mine[2], peer[0], int(peer[1]), peer[2]))


def uncompared_warning(major, absent):
    """The warning when the pair check could not compare this node's major with its peer's, or None.
    absent: the pair's other hosts that are not in the play (--limit, or failed before the check)."""
    if not absent:
        return None
    return ('the pair check could not compare this node\'s PostgreSQL %d with %s, which is not in this play '
            '(--limit, or it failed earlier): both nodes of a pair must run the same major, except while the pair '
            'moves to a new major one node at a time (docs/forest_node.md, "Moving the pair to a new major"). '
            'Until both run the same major, only an offline recovery by content (recover.yml -e mode=offline) '
            'repairs a node; online recovery and a physical restore refuse to copy across majors'
            % (int(major), ' and '.join(absent)))


def availability_refusal(major, installed, candidate):
    """Why `major` cannot be installed here, or None: it is neither installed nor offered by the OS packages.
    candidate: the version apt would install of postgresql-N (None: none; '' : apt-cache not there, so not
    known, and the install says what is missing)."""
    if int(major) in [int(version) for version in installed] or candidate is not None:
        return None
    return ('forest_node_pg_version is %d, but PostgreSQL %d is not installed here and the OS packages do not '
            'offer it (apt-cache policy postgresql-%d: no candidate): set forest_node_pg_version to a major this '
            'host\'s apt offers (apt-cache search --names-only \'^postgresql-[0-9]+$\'), leave it out to take the '
            'OS\'s default, or add the repository that has it (apt.postgresql.org). Nothing was changed'
            % (int(major), int(major), int(major)))


def online_copy_refusal(source, source_major, target, target_data_major, programs=None, binaries_major=None):
    """Why an online recovery (a physical copy of serverid `source` onto `target`) cannot run, or None.
    target_data_major: the major of the target's data directory (None without one); binaries_major: the
    major of the programs found here for the copy (None: not found)."""
    how = ('a physical copy runs only on the major version it was taken from. While the pair moves to a new '
           'major (docs/forest_node.md), repair the node by content instead: playbooks/recover.yml -e mode=offline '
           'with the applications stopped. Nothing was changed')
    if target_data_major is not None and int(target_data_major) != int(source_major):
        return ('serverid %d runs PostgreSQL %d but serverid %d\'s data directory here is PostgreSQL %d: %s'
                % (source, int(source_major), target, int(target_data_major), how))
    if binaries_major is None:
        return ('serverid %d runs PostgreSQL %d, which is not installed here (no %s/pg_ctl): install it, or '
                'set pg_bindir; %s' % (source, int(source_major), programs or bindir(source_major), how))
    if int(binaries_major) != int(source_major):
        return ('serverid %d runs PostgreSQL %d but %s here is %d: %s'
                % (source, int(source_major), programs, int(binaries_major), how))
    return None


def physical_restore_refusal(serverid, backup_major, data_dir_major, programs=None, binaries_major=None):
    """Why a physical backup of `backup_major` cannot be restored onto this host's node, or None: a
    physical copy runs only on the major it was taken from (a logical backup loads into a newer one)."""
    if data_dir_major is not None and int(data_dir_major) != int(backup_major):
        return ('the physical backup of serverid %d is PostgreSQL %d, but the node\'s data directory here is '
                'PostgreSQL %d: a physical copy runs only on the major version it was taken from. Restore a '
                'logical backup instead (kind=logical: it loads into a newer major), or take a new backup. '
                'Nothing was changed' % (serverid, int(backup_major), int(data_dir_major)))
    if binaries_major is None:
        return ('the physical backup of serverid %d is PostgreSQL %d, which is not installed here (no %s/pg_ctl): '
                'a physical copy runs only on the major version it was taken from. Install PostgreSQL %d (or set '
                'pg_bindir to its programs), or restore a logical backup. Nothing was changed'
                % (serverid, int(backup_major), programs or bindir(backup_major), int(backup_major)))
    if int(binaries_major) != int(backup_major):
        return ('the physical backup of serverid %d is PostgreSQL %d, but the server programs here (%s) are '
                'PostgreSQL %d: a physical copy runs only on the major version it was taken from. Install '
                'PostgreSQL %d (or set pg_bindir to its programs), or restore a logical backup. Nothing was '
                'changed' % (serverid, int(backup_major), programs, int(binaries_major), int(backup_major)))
    return None


# --- servers beside the node (Debian's clusters) --------------------------------------------------------
# Databases and roles that initdb makes; everything created afterwards gets an object id from
# FirstNormalObjectId (16384) up, so a catalog row with such an id is something a user made.
INITDB_DATABASES = ('postgres', 'template0', 'template1')
FIRST_NORMAL_OID = 16384
# What a user may have made in a database: relations (tables, views, sequences, indexes), schemas,
# functions, types, extensions, large objects.  One row: the count of each.
USER_OBJECTS_SQL = (
    "SELECT (SELECT count(*) FROM pg_class WHERE oid >= %(oid)d) AS relations, "
    "(SELECT count(*) FROM pg_namespace WHERE oid >= %(oid)d) AS schemas, "
    "(SELECT count(*) FROM pg_proc WHERE oid >= %(oid)d) AS functions, "
    "(SELECT count(*) FROM pg_type WHERE oid >= %(oid)d) AS types, "
    "(SELECT count(*) FROM pg_extension WHERE oid >= %(oid)d) AS extensions, "
    "(SELECT count(*) FROM pg_largeobject_metadata) AS large_objects" % dict(oid=FIRST_NORMAL_OID))
# The name the OS packages give the cluster they make (postgresql-common's create_main_cluster).
PACKAGES_CLUSTER = 'main'
CLUSTER_SQL = (
    "SELECT current_setting('data_directory') AS data_directory, "
    "(SELECT coalesce(json_agg(datname ORDER BY datname), '[]') FROM pg_database WHERE datname NOT IN "
    "('postgres', 'template0', 'template1')) AS databases, "
    "(SELECT coalesce(json_agg(rolname ORDER BY rolname), '[]') FROM pg_roles WHERE oid >= %d) AS roles"
    % FIRST_NORMAL_OID)


def cluster_name(cluster):
    return '%s/%s' % (cluster['version'], cluster['cluster'])


def cluster_shown(cluster):
    return ('%s (PostgreSQL %s, cluster %s, port %s, data directory %s)'
            % (cluster_name(cluster), cluster['version'], cluster['cluster'], cluster['port'], cluster['pgdata']))


def stray_verdict(cluster, contents):
    """('remove', why) for a server beside the node that was never used, else ('keep', why).

    Never used means, conservatively: it runs (a stopped one cannot be read without starting it),
    and it holds nothing initdb did not make: no database besides postgres, template0 and
    template1, no role, and no relation, schema, function, type, extension or large object created
    in postgres or template1.  contents: what inspect_cluster read (None when it could not)."""
    if cluster.get('unreadable'):
        return 'keep', 'pg_lsclusters describes it only partly (%s)' % cluster['unreadable']
    if cluster['cluster'] != PACKAGES_CLUSTER:
        return 'keep', ('the OS packages did not make it (they make only %s/%s), so somebody did'
                        % (cluster['version'], PACKAGES_CLUSTER))
    if not cluster.get('running'):
        return 'keep', 'it is stopped, so what it holds cannot be read without starting it'
    if contents is None:
        return 'keep', 'its catalogs could not be read'
    if contents.get('error'):
        return 'keep', 'its catalogs could not be read (%s)' % contents['error']
    # The server that answered on the cluster's socket must be that cluster: pg_dropcluster stops and
    # deletes the cluster by its own pid file and data directory, whoever answered (a port changed in
    # postgresql.conf but not yet restarted, another server on that port).
    answered = contents.get('data_directory')
    if not answered or not cluster.get('pgdata') or os.path.realpath(answered) != os.path.realpath(cluster['pgdata']):
        return 'keep', ('the server answering on its port %s is not it (data directory %s)'
                        % (cluster.get('port'), answered or 'unknown'))
    if contents['databases']:
        return 'keep', 'it holds user databases (%s)' % ', '.join(contents['databases'])
    if contents['roles']:
        return 'keep', 'it has roles of its own (%s)' % ', '.join(contents['roles'])
    used = ['%s %s in %s' % (count, kind.replace('_', ' '), dbname)
            for dbname, counts in sorted(contents['objects'].items())
            for kind, count in sorted(counts.items()) if count]
    if used:
        return 'keep', 'it holds objects a user created (%s)' % ', '.join(used)
    return 'remove', 'it holds only what initdb made (no user database, role or object)'


def worth_reading(cluster):
    """Whether stray_verdict could say remove, so its catalogs are worth reading: a cluster the packages made,
    described whole and running (nothing else is ever connected to)."""
    return cluster['cluster'] == PACKAGES_CLUSTER and not cluster.get('unreadable') and bool(cluster.get('running'))


def stray_warning(cluster, why):
    return ('%s is a PostgreSQL server beside the forest node, left as it is: %s. It is not part of the pair. '
            'If you need it, keep it (forest_node_stray_clusters=keep silences this); if not, move its data '
            'away and remove it: pg_dropcluster --stop %s %s'
            % (cluster_shown(cluster), why, cluster['version'], cluster['cluster']))


def parse_clusters(text):
    """pg_lsclusters --json as [{version, cluster, port, running, pgdata, socketdir, owneruid, unreadable}].

    version stays a string ("9.6", "17"): it names the cluster and its pg_dropcluster command. An entry
    postgresql-common could describe only partly (no port, an odd value: a dead postgresql.conf, say) keeps
    what it has and says what is missing in `unreadable`, so it is kept and named, never judged."""
    try:
        items = json.loads(text or '[]')
    except ValueError as exc:
        raise PlatformError('pg_lsclusters --json printed what is not JSON (%s)' % exc)
    if not isinstance(items, list):
        raise PlatformError('pg_lsclusters --json printed %s, not a list of clusters' % type(items).__name__)
    found = []
    for item in items:
        if not isinstance(item, dict):
            continue
        cluster = dict(version=str(item.get('version', '?')), cluster=str(item.get('cluster', '?')), port=None,
                       running=False, pgdata=item.get('pgdata'), socketdir=item.get('socketdir'),
                       owneruid=item.get('owneruid'), unreadable=None)
        missing = []
        try:
            cluster['port'] = int(item['port'])
        except (KeyError, TypeError, ValueError):
            missing.append('port %r' % (item.get('port'),))
        try:
            cluster['running'] = bool(int(item.get('running') or 0))
        except (TypeError, ValueError):
            missing.append('running %r' % (item.get('running'),))
        if not cluster['version'].replace('.', '').isdigit():
            missing.append('version %r' % (item.get('version'),))
        if not cluster['pgdata']:
            missing.append('no data directory')
        cluster['unreadable'] = ', '.join(missing) or None
        found.append(cluster)
    return found


def strays(clusters, data_dir):
    """The clusters that are not the forest node (whose data directory is data_dir)."""
    mine = os.path.realpath(data_dir)
    return [cluster for cluster in clusters if not cluster['pgdata'] or os.path.realpath(cluster['pgdata']) != mine]


# --- gathering, on the host ----------------------------------------------------------------------------
def _run(argv, env=None, timeout=60):
    try:
        done = children.run(argv, env=env, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, '', str(exc)
    return done.returncode, done.stdout, done.stderr


def data_dir_major(data_dir):
    try:
        with open(os.path.join(data_dir, 'PG_VERSION')) as handle:
            return int(handle.read().strip().split('.')[0])
    except (OSError, ValueError):
        return None


def installed_majors():
    if not os.path.isdir(DEBIAN_LIB):
        return []
    return sorted(int(name) for name in os.listdir(DEBIAN_LIB)
                  if name.isdigit() and os.access(os.path.join(bindir(name), 'pg_ctl'), os.X_OK))


def apt_list_count():
    """How many of apt's package lists the host has (None without apt's lists directory)."""
    if not os.path.isdir(APT_LISTS):
        return None
    return sum(1 for name in os.listdir(APT_LISTS)
               if '_Packages' in name and os.path.isfile(os.path.join(APT_LISTS, name)))


# A freshly booted host often refreshes its lists itself (apt-daily, unattended-upgrades, cloud-init): wait for it.
APT_LOCK_WAIT = 60


def apt_lock_busy(output):
    """Whether apt-get failed only because another apt holds its lock."""
    return 'Could not get lock' in output or 'Unable to lock directory' in output


def read_apt_lists(lock_wait=APT_LOCK_WAIT, pause=2.0):
    """apt-get update, for a host whose image came without its package lists."""
    deadline = time.monotonic() + lock_wait
    while True:
        code, out, err = _run(['apt-get', 'update', '-qq'], dict(os.environ, DEBIAN_FRONTEND='noninteractive'),
                              timeout=600)
        if code == 0:
            return
        if not apt_lock_busy(out + err) or time.monotonic() >= deadline:
            break
        time.sleep(pause)
    raise PlatformError('apt-get update failed (the PostgreSQL versions apt offers, and the packages the role '
                        'installs, come from its lists): %s' % (err.strip() or out.strip() or 'exit status %d' % code))


def imports_psycopg():
    """Whether this Python imports psycopg 3: the collection's other modules run with it."""
    try:
        import psycopg  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
    except Exception:  # pylint: disable=broad-except  # a broken install as well as a missing one
        return False
    return True


def probe_os_default():
    """The OS default's major (None where apt-cache is missing or names none)."""
    code, out, _err = _run(['apt-cache', 'depends', 'postgresql'])
    return os_default_major(out) if code == 0 else None


def apt_candidate(major):
    """The version apt would install of postgresql-N: None when it offers none, '' where apt-cache is missing
    (not a Debian-family host: nothing known)."""
    code, out, _err = _run(['apt-cache', 'policy', 'postgresql-%d' % int(major)])
    if code == 127:
        return ''
    found = re.search(r'^\s*Candidate:\s*(\S+)', out, re.MULTILINE)
    return found.group(1) if found and found.group(1) != '(none)' else None


def list_clusters():
    """Debian's clusters (pg_lsclusters); [] where postgresql-common is not installed."""
    code, out, err = _run(['pg_lsclusters', '--json'])
    if code == 127:
        return []
    if code != 0:
        raise PlatformError('pg_lsclusters --json failed: %s' % (err.strip() or out.strip()))
    return parse_clusters(out)


def _psql_json(cluster, os_user, dbname, sql):
    env = dict(os.environ, PGCONNECT_TIMEOUT='5')
    argv = ['runuser', '-u', os_user, '--', os.path.join(bindir(cluster['version']), 'psql'), '-XAtq',
            '-v', 'ON_ERROR_STOP=1', '-h', cluster['socketdir'] or '/var/run/postgresql', '-p', str(cluster['port']),
            '-d', dbname, '-c', 'SELECT row_to_json(q) FROM (%s) q' % sql]
    if os.geteuid() != 0:
        argv = argv[4:]
    code, out, err = _run(argv, env)
    if code != 0:
        raise PlatformError(err.strip() or 'psql exited with %d' % code)
    return json.loads(out.strip())


def inspect_cluster(cluster, os_user='postgres'):
    """What a running cluster holds, read with its own psql over its socket as its OS user:
    {databases, roles, objects: {postgres: counts, template1: counts}}, or {error} if it cannot be read."""
    try:
        found = _psql_json(cluster, os_user, 'postgres', CLUSTER_SQL)
        found['objects'] = dict((dbname, _psql_json(cluster, os_user, dbname, USER_OBJECTS_SQL))
                                for dbname in ('postgres', 'template1'))
    except (PlatformError, ValueError) as exc:
        return dict(error=str(exc))
    return found


def drop_cluster(cluster):
    code, out, err = _run(['pg_dropcluster', '--stop', str(cluster['version']), cluster['cluster']])
    if code != 0:
        raise PlatformError('pg_dropcluster --stop %s %s failed: %s'
                            % (cluster['version'], cluster['cluster'], (err or out).strip()))
