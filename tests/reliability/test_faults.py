"""Faults injected while a step runs: the target's postmaster killed, the source hung
(SIGSTOP) and resumed, the tool's sessions terminated, the target's disk full, the
Ansible run interrupted (SIGINT).  Afterwards forest_status must name the state, the
valid node keeps every row, and a re-run (after phase=cancel where needed) completes."""
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

from pgforest_dev import sandbox
from breakage import kill_server, pair_checks, signal_server
from pgforest_dev.wait import wait_for

SOURCE, TARGET = 0, 1
NODE_DIR = os.path.join(sandbox.SANDBOX, sandbox.NODES[TARGET]['name'])
WORKSPACE = sandbox.data_dir(TARGET) + '.pgforest-recovery'
MARKERS = 3000
FILLER = os.path.join(NODE_DIR, 'filler')


# --- the target's node directory on a small tmpfs (disk full) -------------------------------------
def mount_target_on_tmpfs(size_mb):
    """Move serverid 1's directory onto a tmpfs of size_mb; return the saved copy's path."""
    saved = NODE_DIR + '.saved'
    sandbox.pg_ctl(TARGET, 'stop', '-m', 'fast', check=False)
    shutil.rmtree(saved, ignore_errors=True)
    os.rename(NODE_DIR, saved)
    os.mkdir(NODE_DIR)
    subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%dm,mode=0755' % size_mb, 'tmpfs', NODE_DIR], check=True)
    subprocess.run(['cp', '-a', saved + '/.', NODE_DIR], check=True)
    sandbox.ensure_running(TARGET)
    return saved


def unmount_target(saved):
    """Back onto the real disk, keeping whatever the node holds now."""
    remove_filler()
    sandbox.pg_ctl(TARGET, 'stop', '-m', 'fast', check=False)
    shutil.rmtree(saved)
    os.mkdir(saved)
    subprocess.run(['cp', '-a', NODE_DIR + '/.', saved], check=True)
    subprocess.run(['umount', NODE_DIR], check=True)
    os.rmdir(NODE_DIR)
    os.rename(saved, NODE_DIR)
    sandbox.ensure_running(TARGET)


def fill_disk(leave_kb=0):
    free = shutil.disk_usage(NODE_DIR).free - leave_kb * 1024
    if free > 0:
        subprocess.run(['fallocate', '-l', str(free), FILLER], check=False)


def remove_filler():
    if os.path.exists(FILLER):
        os.remove(FILLER)


# --- faults ----------------------------------------------------------------------------------------
def terminate_tool_sessions():
    for sid in sandbox.NODES:
        try:
            sandbox.query(sid, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE "
                               "'pgforest%%' AND pid <> pg_backend_pid()")
        except Exception:  # a node that is down has no session to drop
            pass


def hang_source(seconds=4):
    signal_server(SOURCE, signal.SIGSTOP)
    time.sleep(seconds)  # how long the hang lasts (the fault itself), not a wait for something to happen
    signal_server(SOURCE, signal.SIGCONT)


FAULTS = {
    'target postmaster killed': lambda run: kill_server(TARGET),
    'source hung then resumed': lambda run: hang_source(),
    "tool's sessions terminated": lambda run: terminate_tool_sessions(),
    'target disk full': lambda run: fill_disk(),
    'ansible run interrupted (SIGINT)': lambda run: os.killpg(run.process.pid, signal.SIGINT),
}


class Run(object):
    """A module running ad hoc in its own process group, so that SIGINT reaches all of it as Ctrl-C would."""

    def __init__(self, module_name, host='forest0', **args):
        self.host = host
        cmd, env = sandbox.module_command(module_name, host, **args)
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                        cwd=sandbox.REPO, start_new_session=True)
        self.output = None

    def wait(self, timeout=300):
        stdout, stderr = self.process.communicate(timeout=timeout)
        self.output = subprocess.CompletedProcess(self.process.args, self.process.returncode, stdout, stderr)
        try:
            return sandbox.module_result(self.host, self.output)
        except AssertionError:
            return dict(failed=True, msg='interrupted, no result (rc=%s): %s' % (
                self.process.returncode, (stdout + stderr)[-300:]))


def tool_query_running(sid, pattern):
    try:
        return bool(sandbox.query(sid, "SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'pgforest%%' "
                                       'AND query ILIKE %s', [pattern]))
    except Exception:
        return False


def validity_on_source():
    return sandbox.query(SOURCE, 'SELECT udb_validity FROM server_info WHERE serverid = %s', [TARGET],
                         dbname=sandbox.MNGDB)[0][0]


def basebackup_running():
    return bool(sandbox.own_processes('pg_basebackup.*pgforest_recovery'))


# --- steps: how each starts, when it is "running", how to finish the job afterwards -------------
def recover_args(**args):
    args.update(mode='online', data_dir=sandbox.data_dir(TARGET))
    return args


def finish_recovery():
    """What a DBA does after a failed or interrupted recovery: cancel or finish, then recover."""
    for phase in ('cancel', 'cleanup'):
        if os.path.exists(WORKSPACE):
            sandbox.module('forest_recover', host='forest1', timeout=300, **recover_args(phase=phase))
    status = sandbox.module('forest_status')
    if status['cluster_state'] == 'healthy':
        return status
    if status['cluster_state'] == 'recovering':  # interrupted inside the freeze before any state was saved
        sandbox.module('forest_mngdb', serverid=TARGET, validity=-1)
    return sandbox.module('forest_recover', host='forest1', timeout=300, **recover_args())


STEPS = {
    'recover base': dict(
        prepare=lambda: sandbox.set_views({TARGET: -1}, {TARGET: -1}),
        start=lambda: Run('forest_recover', host='forest1', **recover_args(phase='base', max_rate='4M')),
        running=basebackup_running, finish=finish_recovery),
    'recover cut': dict(
        prepare=lambda: (sandbox.set_views({TARGET: -1}, {TARGET: -1}),
                         sandbox.module('forest_recover', host='forest1', **recover_args(phase='base'))),
        start=lambda: Run('forest_recover', host='forest1', **recover_args(phase='cut', notice_wait=3)),
        running=lambda: validity_on_source() == 0, finish=finish_recovery),
    'recover cleanup': dict(
        prepare=lambda: (sandbox.set_views({TARGET: -1}, {TARGET: -1}),
                         sandbox.module('forest_recover', host='forest1', **recover_args(phase='base')),
                         sandbox.module('forest_recover', host='forest1', **recover_args(phase='cut'))),
        start=lambda: Run('forest_recover', host='forest1', **recover_args(phase='cleanup')),
        running=lambda: True, finish=finish_recovery),
    'dbsync sync': dict(
        prepare=lambda: sandbox.on(TARGET, 'DELETE FROM fault_bulk WHERE g % 2 = 0'),
        start=lambda: Run('forest_dbsync', mode='sync', source=SOURCE, copy_with='python'),
        running=lambda: tool_query_running(TARGET, 'COPY%'),
        finish=lambda: sandbox.module('forest_dbsync', mode='sync', source=SOURCE, timeout=300)),
    'mngdb config': dict(
        prepare=lambda: None,
        start=lambda: Run('forest_mngdb', global_config={'mngdb_read_duration': '7'}),
        running=lambda: tool_query_running(TARGET, '%global_config%'),
        finish=lambda: sandbox.module('forest_mngdb', global_config={'mngdb_read_duration': '7'})),
}


@pytest.fixture
def fault_pair():
    sandbox.reset_pair()
    sandbox.both('DROP TABLE IF EXISTS fault_markers; DROP TABLE IF EXISTS fault_bulk; '
                 'CREATE TABLE fault_markers (id int PRIMARY KEY, note text); '
                 "INSERT INTO fault_markers SELECT g, 'before the fault' FROM generate_series(1, %d) g; "
                 'CREATE TABLE fault_bulk AS SELECT g, repeat($$x$$, 300) AS pad FROM generate_series(1, 60000) g; '
                 'ALTER TABLE fault_bulk ADD PRIMARY KEY (g)' % MARKERS)
    yield
    remove_filler()
    signal_server(SOURCE, signal.SIGCONT)
    sandbox.ensure_running(SOURCE)
    if os.path.exists(WORKSPACE):
        finish_recovery()
    sandbox.ensure_running(TARGET)
    sandbox.reset_pair()
    sandbox.both('DROP TABLE IF EXISTS fault_markers; DROP TABLE IF EXISTS fault_bulk')


def hold_mngdb_row():
    """Keeps forest_mngdb's UPDATE on the target waiting, so the fault lands while it runs."""
    holder = sandbox.connect(TARGET, sandbox.MNGDB, autocommit=False)
    holder.execute("SELECT * FROM global_config WHERE key = 'mngdb_read_duration' FOR UPDATE")
    return holder


def inject(step, fault, prefill=False):
    """Start the step, wait until it runs, inject the fault, undo it; return (result, seconds to the fault).

    prefill: the disk is full before the step starts (a fast step is over before a fill could land)."""
    STEPS[step]['prepare']()
    if prefill:
        fill_disk(leave_kb=256)
    holder = hold_mngdb_row() if step == 'mngdb config' else None
    try:
        started = time.monotonic()
        run = STEPS[step]['start']()

        def running():
            assert run.process.poll() is None, 'the step ended before the fault: %s' % run.wait()
            return STEPS[step]['running']()
        wait_for('the step to run', running, timeout=120, interval=0.02)
        at = round(time.monotonic() - started, 2)
        injector = threading.Thread(target=FAULTS[fault], args=(run,))
        injector.start()
        if holder is not None:
            injector.join()  # the fault has landed while the step waits on the held row
    finally:
        if holder is not None:
            holder.close()
    injector.join()
    result = run.wait()
    remove_filler()
    signal_server(SOURCE, signal.SIGCONT)
    return result, at


CASES = [(step, fault) for step in STEPS for fault in FAULTS]
FAST_STEPS = ('dbsync sync', 'mngdb config')


@pytest.mark.parametrize('step, fault', CASES, ids=['%s: %s' % case for case in CASES])
def test_fault(step, fault, fault_pair, record):
    saved = mount_target_on_tmpfs(size_mb=int(sandbox_usage_mb() + 700)) if fault == 'target disk full' else None
    try:
        result, at = inject(step, fault, prefill=bool(saved) and step in FAST_STEPS)
        wait_tool_gone()
        state_after = sandbox.module('forest_status')
        sandbox.ensure_running(SOURCE)
        if not os.path.exists(WORKSPACE):  # else the recovery owns the target's directory: cancel or finish it
            sandbox.ensure_running(TARGET)
        status = sandbox.module('forest_status')
        markers = sandbox.query(SOURCE, 'SELECT count(*) FROM fault_markers', dbname=sandbox.USERDB)[0][0]
        rerun = STEPS[step]['finish']()
    finally:
        if saved:
            unmount_target(saved)
    facts = pair_checks()
    record(fault_at_seconds=at, step_result=(result.get('msg') or 'completed')[:300],
           state_right_after=state_after['cluster_state'], state_once_servers_run=status['cluster_state'],
           action=status['recommended_action']['action'], rerun=(rerun.get('msg') or 'completed')[:200],
           **dict((k, facts[k]) for k in ('cluster_state', 'equal', 'sequences_aligned')))
    assert markers == MARKERS, 'the valid node lost rows'
    assert status['cluster_state'] in ('healthy', 'degraded', 'recovering'), status['recommended_action']
    assert not rerun.get('failed'), rerun.get('msg')
    assert facts['cluster_state'] == 'healthy' and facts['equal'] is True and facts['sequences_aligned']
    values = [sandbox.query(sid, "SELECT value FROM global_config WHERE key = 'mngdb_read_duration'",
                            dbname=sandbox.MNGDB) for sid in sandbox.NODES]
    assert values[0] == values[1], 'the management databases disagree: %s' % values


def wait_tool_gone(timeout=120):
    """An interrupted module may still be rolling back after Ansible returned."""
    wait_for('the module processes to end', lambda: not sandbox.own_processes('AnsiballZ_forest_'), timeout,
             interval=0.2)


def sandbox_usage_mb():
    return sum(os.path.getsize(os.path.join(folder, name)) for folder, _d, names in os.walk(NODE_DIR)
               for name in names if os.path.isfile(os.path.join(folder, name))) / 2 ** 20
