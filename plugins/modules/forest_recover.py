#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: forest_recover
short_description: Bring the broken node of a PostgresForest pair back, offline or online
description:
  - Recovers the node marked broken (C(-1)) from the valid one and marks it valid (C(1)) in both
    management databases. Preconditions come from the merged status, exactly one node effectively
    C(-1), the other C(1), identical C(server_info). Anything else is refused with the state and the
    right tool, and changes nothing. Two recoveries of the same pair cannot run at once (advisory lock).
  - O(mode=offline) (PostgresForest guide §8.1) needs the applications stopped (checked on both nodes, no other session
    on the user or management database). O(method=diff) repairs only what differs with the
    forest_dbsync engine and refuses to mark the node valid unless the pair then compares equal;
    O(method=dump) is the guide's way, drop and C(pg_dump | psql) of both databases.
  - O(mode=online) (PostgresForest guide §8.2, docs/recovery.md) lets the applications keep writing. It runs on the
    broken node's host (delegate the task there) and replaces that node's data directory, keeping
    its own C(postgresql.conf), C(postgresql.auto.conf), C(pg_hba.conf), C(pg_ident.conf) and
    C(forest.conf). Phase C(base) copies the source with C(pg_basebackup -X stream) through a
    replication slot and starts the node as a streaming standby; C(cut) freezes the writes (the
    node to C(0), NOTIFY, wait until no transaction is open on the source), waits until the standby
    has replayed everything, promotes it, checks that no transaction wrote to the source
    meanwhile, copies every sequence and sets the node C(1) on both; C(cleanup) drops the slot,
    takes the standby settings out and removes the old data directory. O(phase=all) runs the three.
    O(data_dir) is required with O(mode=online).
  - O(method=resync) (online) keeps the broken node's own data directory and moves only what changed while it was
    out, by logical replication. C(base) publishes each forest user database's tables on the source, creates a
    logical slot, compares and repairs the target against the slot's exported snapshot and subscribes the target
    to the slot; C(cut) waits, inside the same write freeze, until every subscription has applied the source's
    position, drops the subscriptions, checks the schemas, copies sequences, large objects, unlogged tables and the
    management databases and sets the node C(1); C(cleanup) drops the slots and publications. A rollback leaves
    no slot, publication, subscription or replication origin on either node.
  - Any failure in C(base) or C(cut) rolls back to the state before (the old data directory back,
    the node C(-1), no slot, no standby settings) and says what happened; O(phase=cancel) does the
    same by hand. Passwords go to a 0600 passfile in the recovery's workspace, removed at the end.
version_added: 0.1.0
author: pgforest.cluster developers (@pgforest)
extends_documentation_fragment:
  - pgforest.cluster.connection
  - pgforest.cluster.pair
  - pgforest.cluster.local_server
  - pgforest.cluster.freeze
options:
  mode:
    description:
      - C(offline) with the applications stopped, C(online) while they keep writing.
      - The default is C(online), as in the forest_recovery role and C(recover.yml), because it is the safe one
        when the applications are still up; C(offline) must be asked for by name, by someone who stopped them
        (docs/recovery.md, "One default").
    type: str
    choices: [offline, online]
    default: online
  phase:
    description:
      - With O(mode=online), which step to run. C(all) runs C(base), C(cut) and C(cleanup).
      - C(cancel) undoes a recovery that has not reached its cut.
      - O(mode=offline) has only C(all).
    type: str
    choices: [all, base, cut, cleanup, cancel]
    default: all
  method:
    description:
      - With O(mode=offline), C(diff) (the default) copies only what differs; C(dump) re-copies both databases whole.
      - With O(mode=online), C(basebackup) (the default) replaces the target's data directory with a physical copy
        of the source; C(resync) keeps the target's own data directory and moves only what changed while it was
        out, by logical replication (docs/recovery.md, "Resync"). C(resync) needs C(wal_level=logical) on both
        nodes (the forest_node role sets it) and a primary key or replica identity index on every table of the
        forest user databases; otherwise it is refused, naming the setting or the tables, and nothing changes.
      - With O(mode=online), C(auto) chooses C(resync) when it can work (the data directory is initialized and
        of the source's major, its server starts, its forest databases exist, C(wal_level=logical) on both nodes,
        a replica identity on every table) and C(basebackup) otherwise; RV(method_choice) says which and why.
        A stopped target is started to be looked at, and stopped again when the choice is C(basebackup).
        Two majors are refused, since no physical copy crosses them and a resync across majors is asked for by name.
      - A phase after the first, or C(cancel), needs the O(method) the recovery in progress started with
        (C(auto) finds it in the recovery's state file).
    type: str
    choices: [diff, dump, basebackup, resync, auto]
  target:
    description: Serverid you expect to recover; refused when it is not the broken node.
    type: int
    choices: [0, 1]
  include_valid:
    description:
      - With O(mode=online), forest user databases whose copy on the target is still valid (C(1)) but may be
        replaced with the source's anyway. An online recovery copies the whole server, so it covers every forest
        database on it (all frozen in one write freeze, all marked valid at the cut); one whose target copy is
        still valid is refused unless named here.
    type: list
    elements: str
    default: []
  replace_databases:
    description:
      - With O(mode=online), databases on either server that are not forest databases (no C(<name>_pghainfo)
        beside them; C(postgres) and the templates excepted) which the copy may replace with the source's.
        Any other such database makes the recovery refuse, naming it.
      - O(method=resync) leaves such databases as they are and ignores this option.
    type: list
    elements: str
    default: []
  max_rate:
    description: Limit for the base copy's read rate on the source (C(pg_basebackup --max-rate), e.g. C(50M)).
    type: str
  notice_wait:
    description:
      - Seconds the drivers need to notice C(udb_validity=0) (given, C(mngdb_read_duration) is not lowered).
      - Default C(mngdb_read_duration) at the freeze, which O(freeze_read_duration) has made short.
    type: float
  catch_up_timeout:
    description: Seconds the standby may take to come within 1 MB of the source before the freeze.
    type: float
    default: 3600
  replay_wait_timeout:
    description: Seconds the standby may take, inside the freeze, to replay the source's last position.
    type: float
    default: 30
  copy_with:
    description: How forest_dbsync copies whole tables with O(method=diff) (see M(pgforest.cluster.forest_dbsync)).
    type: str
    choices: [auto, psql, python]
    default: auto
  sample_size:
    description: How many differing keys the diff report lists per table and kind.
    type: int
    default: 20
  reload_fraction:
    description: Reload a table whole when more than this fraction of its rows differ (O(method=diff)).
    type: float
    default: 0.5
attributes:
  check_mode:
    support: full
    description: Checks the preconditions (and disk space, versions, directories online) and reports what would be done.
  diff_mode:
    support: none
    description: The repair report is in RV(dbsync); the online phases in RV(progress).
requirements:
  - psycopg >= 3.1
  - pg_dump and psql on PATH for O(method=dump)
  - pg_basebackup and pg_ctl of the source's major version for O(mode=online), run as root or O(os_user)
'''

EXAMPLES = r'''
- name: Recover the broken node, applications stopped
  pgforest.cluster.forest_recover:
    userdb: userdb
    mode: offline
  run_once: true

- name: The guide's way
  pgforest.cluster.forest_recover:
    userdb: userdb
    mode: offline
    method: dump
    target: 1

- name: Recover serverid 1 online, on its own host
  pgforest.cluster.forest_recover:
    userdb: userdb
    mode: online
    target: 1
    data_dir: /var/lib/pgforest/node1/data
  delegate_to: forest1
  become: true
  register: recovery

- name: Step by step, like PGHARecovery.sh -base, then -cut and -cleanup later
  pgforest.cluster.forest_recover:
    mode: online
    phase: base
    data_dir: /var/lib/pgforest/node1/data
  delegate_to: forest1

- name: Online, on a pair with two forest databases of which only one is broken on serverid 1
  pgforest.cluster.forest_recover:
    userdb: orders
    mode: online
    target: 1
    include_valid: [billing]
    replace_databases: [monitoring]
    data_dir: /var/lib/pgforest/node1/data
  delegate_to: forest1

- name: Online, moving only what changed while the node was out when it can, a full copy otherwise
  pgforest.cluster.forest_recover:
    userdb: userdb
    mode: online
    method: auto
    data_dir: /var/lib/pgforest/node1/data
  delegate_to: forest1
  register: recovery

- name: Say which method it took and why
  ansible.builtin.debug:
    msg: "{{ recovery.method_choice.method }}: {{ recovery.method_choice.reason }}"

- name: Undo a recovery that failed or was stopped before its cut
  pgforest.cluster.forest_recover:
    mode: online
    phase: cancel
    data_dir: /var/lib/pgforest/node1/data
  delegate_to: forest1
'''

RETURN = r'''
source:
  description: Serverid copied from.
  returned: success
  type: int
target:
  description: Serverid recovered.
  returned: success
  type: int
userdbs:
  description: With O(mode=online), the forest user databases the recovery covers (every one on the server;
    the module's O(userdb) first).
  returned: success
  type: list
  elements: str
  sample: [orders, billing]
stage:
  description: With O(mode=online), where the recovery stands now (C(standby) after base, C(promoted) after cut,
    C(done) after cleanup, C(cancelled), C(none)).
  returned: success
  type: str
phases:
  description: Seconds per phase (copy and validity offline; base, cut, cleanup or cancel online).
  returned: success
  type: dict
bytes_copied:
  description: Bytes moved from the source to the target.
  returned: success
  type: int
freeze_window:
  description: With O(mode=online), seconds from udb_validity 0 to 1 (the writes' pause).
  returned: success
  type: float
read_duration:
  description:
    - With O(mode=online) and no O(notice_wait), what happened to C(mngdb_read_duration) (O(freeze_read_duration)),
      else null. C(short) the value used; C(lowered), C(adopted) (left short by a run that was killed),
      C(put_back) and C(kept) (changed by someone during the run) list management databases as
      C(serverid N name); C(waited) the seconds waited before the freeze for the drivers to take it.
  returned: success
  type: dict
  sample: {"short": 1, "lowered": ["serverid 0 userdb_pghainfo", "serverid 1 userdb_pghainfo"], "adopted": [],
           "put_back": ["serverid 0 userdb_pghainfo", "serverid 1 userdb_pghainfo"], "kept": [], "waited": 27.3}
cut:
  description:
    - With O(mode=online), lag_before_freeze and lag_at_cut (bytes), notice_seconds (the freeze's wait for the
      drivers), waited_before_freeze (seconds waited, writes flowing, for long transactions on the source to end),
      freezes_undone (the seconds of each freeze begun and undone because a transaction was still open; empty
      when the first one held), replay_wait_seconds, promote_seconds, sequences_copied, freeze_window; with
      unlogged tables, unlogged_tables, unlogged_rows and unlogged_seconds (their contents are copied inside the
      freeze and add that long to it).
    - When other transactions took ids on the source during the freeze without changing user data of a forest
      database (ANALYZE, vacuum, other databases), other_writes_in_freeze is true and writes_not_lost counts
      their WAL records. Also returned, as far as it got, when the recovery failed.
  returned: success
  type: dict
  sample: {"notice_seconds": 1.25, "waited_before_freeze": 38.2, "freezes_undone": [], "freeze_window": 1.41}
cleanup:
  description: With O(mode=online), target_settings (the node's own lock_timeout and listen_addresses after cleanup).
  returned: success
  type: dict
dbsync:
  description: With O(method=diff), the forest_dbsync result of the repair (tables, sequences, report).
  returned: success
  type: dict
mode:
  description: The O(mode) that ran, C(offline) or C(online).
  returned: success
  type: str
method:
  description: The O(method) that ran (with O(method=auto), the one it chose).
  returned: success
  type: str
method_choice:
  description: With O(method=auto), the method chosen and why; null otherwise.
  returned: with mode=online
  type: dict
  contains:
    method:
      description: C(resync) or C(basebackup).
      type: str
    reason:
      description: Why, in words (the first condition of a resync that was not met, or all of them met).
      type: str
  sample: {"method": "basebackup", "reason": "the node lacks the forest database userdb: a physical copy brings it"}
resync:
  description: With O(method=resync), per user database what the compare against the slot's snapshot repaired
    (the forest_dbsync summary and report).
  returned: with method=resync
  type: dict
phase:
  description: With O(mode=online), the O(phase) that ran.
  returned: success
  type: str
seconds:
  description: Seconds the module ran.
  returned: success
  type: float
msg:
  description: On a healthy pair, why there was nothing to do (the task is ok and not changed).
  returned: when the pair is healthy
  type: str
progress:
  description: What was done, with seconds since the start.
  returned: always
  type: list
  elements: str
'''

import re

from ..module_utils.argument_specs import node_host_argument_spec
from ..module_utils.forest_pg import out_of_range
from ..module_utils.module_runner import forest_module, run_job
from ..module_utils.online_phases import PHASE_CHOICES
from ..module_utils.online_recovery import OnlineRecovery
from ..module_utils.online_method import AUTO, choose_online_method
from ..module_utils.online_resync import ResyncRecovery
from ..module_utils.pair_choice import NothingToRecover
from ..module_utils.recovery import OfflineRecovery, RecoveryOptions


# Each mode's methods, its default first.
METHODS = dict(offline=('diff', 'dump'), online=('basebackup', 'resync', AUTO))


def main():
    argument_spec = node_host_argument_spec()
    argument_spec.update(
        mode=dict(type='str', choices=['offline', 'online'], default='online'),
        phase=dict(type='str', choices=list(PHASE_CHOICES), default='all'),
        method=dict(type='str', choices=['diff', 'dump', 'basebackup', 'resync', AUTO]),
        target=dict(type='int', choices=[0, 1]),
        max_rate=dict(type='str'),
        include_valid=dict(type='list', elements='str', default=[]),
        replace_databases=dict(type='list', elements='str', default=[]),
        notice_wait=dict(type='float'),
        freeze_read_duration=dict(type='int', default=1),
        idle_wait_timeout=dict(type='float', default=60),
        catch_up_timeout=dict(type='float', default=3600),
        replay_wait_timeout=dict(type='float', default=30),
        copy_with=dict(type='str', choices=['auto', 'psql', 'python'], default='auto'),
        sample_size=dict(type='int', default=20),
        reload_fraction=dict(type='float', default=0.5),
    )
    module = forest_module(argument_spec, required_if=[('mode', 'online', ['data_dir'])])
    methods = METHODS[module.params['mode']]
    if module.params['method'] is None:
        module.params['method'] = methods[0]
    if module.params['method'] not in methods:
        module.fail_json(msg='method=%s is not a method of mode=%s: use %s. Nothing was changed'
                         % (module.params['method'], module.params['mode'], ' or '.join(methods)))
    if module.params['mode'] == 'offline' and module.params['phase'] != 'all':
        module.fail_json(msg='phase=%s is a step of mode=online; offline recovery has one step (phase=all)'
                         % module.params['phase'])
    bad = out_of_range(module.params, positive=('notice_wait', 'freeze_read_duration', 'idle_wait_timeout',
                                                'catch_up_timeout', 'replay_wait_timeout', 'sample_size',
                                                'start_timeout'),
                       fractions=('reload_fraction',))
    if module.params['max_rate'] and not re.match(r'^[0-9]+[kM]?$', module.params['max_rate']):
        bad = 'max_rate must be a number of kB/s, or end in k or M like 50M (got %r). Nothing was changed' \
            % module.params['max_rate']
    if bad:
        module.fail_json(msg=bad)
    run_job(module, lambda slot: recover(module, slot))


def recover(module, slot):
    options = RecoveryOptions.from_params(module.params)
    choice = None
    recovery = None
    try:
        if options.method == AUTO:
            choice, choosing = choose_online_method(module.params, options, module.check_mode, module.log)
            options = options._replace(method=choice.method)
        job_class = OfflineRecovery if options.mode == 'offline' else \
            ResyncRecovery if options.method == 'resync' else OnlineRecovery
        recovery = slot.job = job_class(module.params, options, module.check_mode, module.log)
        if choice is not None:
            recovery.method_choice = choice._asdict()
            recovery.progress.extend(choosing)
            recovery.say('method=auto chose %s: %s' % choice)
        result = recovery.run()
    except NothingToRecover as exc:
        if recovery is None:  # found while choosing the method
            recovery = slot.job = OnlineRecovery(module.params, options._replace(method='basebackup'),
                                                 module.check_mode, module.log)
        recovery.say(str(exc))
        return dict(recovery.result(), changed=False, msg=str(exc))
    result.setdefault('changed', True)
    return result


if __name__ == '__main__':
    main()
