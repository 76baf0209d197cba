"""Ways to break a sandbox node, and the checks every recovery must pass afterwards."""
import contextlib
import os
import signal
import subprocess
import time

from pgforest_dev import sandbox
from pgforest_dev.forest_driver import ForestDriver, write_counts
from pgforest_dev.wait import wait_for

KINDS = ('stopped', 'killed', 'diverged', 'hung then killed')


def server_pids(serverid):
    """The postmaster and every process it started ([] when the server is not running)."""
    try:
        pid = sandbox.postmaster_pid(serverid)
    except FileNotFoundError:
        return []
    children = subprocess.run(['pgrep', '-P', str(pid)], capture_output=True, text=True, check=False).stdout.split()
    return [pid] + [int(child) for child in children]


def signal_server(serverid, signum):
    for pid in server_pids(serverid):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


def kill_server(serverid):
    """An instance crash: SIGKILL to the postmaster and all its processes."""
    pids = server_pids(serverid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for('the processes of serverid %d to end' % serverid,
             lambda: not any(os.path.exists('/proc/%d' % pid) for pid in pids))


def break_node(kind, serverid):
    """Break serverid the way `kind` says; return what was done, for the record."""
    if kind == 'stopped':
        sandbox.pg_ctl(serverid, 'stop', '-m', 'fast')
    elif kind == 'killed':
        kill_server(serverid)
    elif kind == 'diverged':
        # Writes around the driver on this node only (no sequence used: the driver's ids stay aligned),
        # then the DBA marks it broken.
        sandbox.on(serverid, "UPDATE forest_load SET payload = 'diverged' WHERE id IN (SELECT id FROM forest_load "
                   "ORDER BY id LIMIT 50); DELETE FROM forest_load_items WHERE n = 3 AND load_id < 20")
        marked = sandbox.module('forest_mngdb', serverid=serverid, validity=-1)
        assert not marked.get('failed'), marked.get('msg')
    elif kind == 'hung then killed':
        signal_server(serverid, signal.SIGSTOP)
        time.sleep(2)  # how long the hang lasts (the fault itself), not a wait for something to happen
        kill_server(serverid)
    else:
        raise ValueError(kind)


def driver_nodes():
    return sandbox.driver_nodes()


def start_driver():
    return ForestDriver(driver_nodes(), sandbox.USERDB, sandbox.password(), read_duration=1.0).start()


def wait_marked_broken(driver, serverid, timeout=60):
    """Whether the driver marked serverid broken (saw -1 for it) within timeout seconds."""
    try:
        return wait_for('the driver to mark serverid %d broken' % serverid,
                        lambda: driver.validity.get(serverid) == -1, timeout)
    except AssertionError:
        return False


def recover_online(target, **args):
    args.update(mode='online', data_dir=sandbox.data_dir(target))
    return sandbox.module('forest_recover', host=sandbox.NODES[target]['name'], timeout=600, **args)


def sequences(serverid):
    return sandbox.query(serverid, "SELECT format('%I.%I', schemaname, sequencename), last_value "
                         'FROM pg_sequences ORDER BY 1', dbname=sandbox.USERDB)


def pair_checks(driver=None):
    """What must hold after any recovery or repair, as facts; the caller asserts them."""
    status, compared = sandbox.modules([('forest_status', 'forest0', {}), ('forest_dbsync', 'forest0', {})])
    facts = dict(cluster_state=status.get('cluster_state'), equal=compared.get('equal'),
                 sequences_aligned=sequences(0) == sequences(1))
    if driver is not None:
        facts.update(driver_facts(driver), driver_errors=driver.errors[:3])
    return facts


def driver_facts(driver, serverids=None):
    """The driver's acknowledged writes checked on serverids (default both nodes), measured:
    acked, lost, duplicated (and other_contents), problems."""
    return write_counts(driver, lambda sid: sandbox.connect(sid, sandbox.USERDB), serverids)


def healthy_and_equal(facts):
    return (facts['cluster_state'] == 'healthy' and facts['equal'] is True and facts['sequences_aligned']
            and not facts.get('problems') and not facts.get('driver_errors'))


def load_tables_clean():
    sandbox.both('DROP TABLE IF EXISTS forest_load_items; DROP TABLE IF EXISTS forest_load')


def set_read_duration(seconds):
    sandbox.set_read_duration(seconds)


@contextlib.contextmanager
def clean_loaded_pair(setup_sql=None, teardown_sql=None):
    """The pair as provisioned, no load tables, the drivers' interval 1 s; back so afterwards (both
    servers running), whatever the case did. setup_sql/teardown_sql: the case's own tables, on both."""
    sandbox.reset_pair()
    load_tables_clean()
    if setup_sql:
        sandbox.both(setup_sql)
    set_read_duration(1)
    yield
    for serverid in sandbox.NODES:
        sandbox.ensure_running(serverid)
    sandbox.reset_pair()
    load_tables_clean()
    if teardown_sql:
        sandbox.both(teardown_sql)
