"""The two-node sandbox, as the tests see it (see sandbox/inventory.yml)."""
import os
import subprocess
import tempfile

import psycopg

from pgforest_dev import REPO
from pgforest_dev.wait import wait_for
from ansible_collections.pgforest.cluster.plugins.module_utils import pg_platform
# A parallel test worker's own sandbox (scripts/worker_sandboxes.py), else the checkout's: .sandbox,
# a link to where the postgres OS user can reach.
SANDBOX = os.environ.get('FOREST_SANDBOX_DIR') or os.path.realpath(os.path.join(REPO, '.sandbox'))
INVENTORY = os.path.join(REPO, 'sandbox', 'inventory.yml')
BIN = os.path.join(REPO, '.venv', 'bin')
# The programs of the major the role gives a new sandbox node here: the newest installed (pg_platform.choose_major).
PG_BIN = pg_platform.bindir(max(pg_platform.installed_majors() or [pg_platform.MIN_MAJOR]))
NODES = {
    0: dict(host='127.0.0.11', port=5432, name='forest0'),
    1: dict(host='127.0.0.12', port=5432, name='forest1'),
}
USERDB = 'userdb'
MNGDB = USERDB + '_pghainfo'
# Ansible's home for the runs of the tests and helpers (local tmp, caches): the checkout's ignored .ansible/,
# so nothing they leave lands in ~/.ansible (tests/conftest.py checks it).
ANSIBLE_HOME = os.path.join(REPO, '.ansible')


def password():
    with open(os.path.join(SANDBOX, 'secrets', 'postgres.password')) as handle:
        return handle.read().strip()


def connect(serverid, dbname='postgres', **kwargs):
    node = NODES[serverid]
    kwargs.setdefault('autocommit', True)
    return psycopg.connect(host=node['host'], port=node['port'], user='postgres',
                           password=password(), dbname=dbname, connect_timeout=3, **kwargs)


def query(serverid, sql, params=None, dbname='postgres'):
    with connect(serverid, dbname) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else None


def data_dir(serverid):
    return os.path.join(SANDBOX, NODES[serverid]['name'], 'data')


def pg_ctl(serverid, *args, check=True):
    return subprocess.run(['runuser', '-u', 'postgres', '--', PG_BIN + '/pg_ctl', '-D', data_dir(serverid)]
                          + list(args), capture_output=True, text=True, check=check)


def ansible_env():
    env = dict(os.environ)
    env['ANSIBLE_CONFIG'] = os.path.join(REPO, 'ansible.cfg')
    env['PATH'] = BIN + os.pathsep + env.get('PATH', '')
    env.setdefault('ANSIBLE_HOME', ANSIBLE_HOME)
    env.setdefault('ANSIBLE_NOCOLOR', '1')
    return env


def playbook(name, *args, extra_vars=None, inventory=INVENTORY, timeout=600):
    """Run playbooks/<name>; extra_vars go through a private file, never argv."""
    cmd = [os.path.join(BIN, 'ansible-playbook'), '-i', inventory, os.path.join(REPO, 'playbooks', name)]
    with tempfile.NamedTemporaryFile('w', suffix='.json', dir=SANDBOX) as varfile:
        if extra_vars:
            import json
            json.dump(extra_vars, varfile)
            varfile.flush()
            cmd += ['-e', '@' + varfile.name]
        return subprocess.run(cmd + list(args), capture_output=True, text=True, env=ansible_env(),
                              cwd=REPO, timeout=timeout, check=False)


def recap(output):
    """{host: {ok: n, changed: n, failed: n, ...}} from a PLAY RECAP."""
    result = {}
    for line in output.split('PLAY RECAP')[-1].splitlines()[1:]:
        if ':' not in line:
            continue
        host, counts = line.split(':', 1)
        result[host.strip()] = {k: int(v) for k, v in (item.split('=') for item in counts.split())}
    return result


def module_command(module_name, host='forest0', check=False, diff=False, **args):
    """argv and environment of an ad hoc run of pgforest.cluster.<module_name> with JSON output."""
    import json
    env = ansible_env()
    env.update(ANSIBLE_CALLBACK_RESULT_FORMAT='json')
    cmd = [os.path.join(BIN, 'ansible'), host, '-i', INVENTORY, '-m', 'pgforest.cluster.' + module_name]
    if args:
        cmd += ['-a', json.dumps(args)]
    if check:
        cmd.append('--check')
    if diff:
        cmd.append('--diff')
    return cmd, env


def module_result(host, proc, what='the module'):
    """The result dict from an ad hoc run's output ("forest0 | SUCCESS => {...}")."""
    import json
    head = '%s | ' % host
    try:
        start = proc.stdout.index(head)
        result = json.loads(proc.stdout[proc.stdout.index('{', start):])
        if proc.stdout[start:start + 40].split('=>')[0].rstrip().endswith(('FAILED!', 'UNREACHABLE!')):
            result['failed'] = True
        result['_stdout'] = proc.stdout  # ad hoc output prints --diff outside the result
        return result
    except ValueError:
        raise AssertionError('no result from %s: rc=%s\n%s\n%s' % (what, proc.returncode, proc.stdout, proc.stderr))


def module(module_name, host='forest0', check=False, diff=False, timeout=120, **args):
    """Run pgforest.cluster.<name> ad hoc on an inventory host; return its result dict.

    Connection options come from the inventory (the action plugin), as for a DBA."""
    cmd, env = module_command(module_name, host, check, diff, **args)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout, check=False)
    return module_result(host, proc, module_name)


def modules(calls, timeout=600):
    """Module runs one after another, each whatever the one before returned, as the tasks of one playbook:
    [(module_name, host, args)] -> their result dicts, in order.  An ad hoc run pays Ansible's start (about a
    CPU-second on this machine, where the module itself takes a third of that) each time; a playbook once.
    Connection options come from the inventory, as for module()."""
    import json
    registers = ['call_%d' % number for number in range(len(calls))]
    tasks = [{'name': '%s %s' % (register, name), 'pgforest.cluster.' + name: args, 'register': register,
              'ignore_errors': True, 'when': "inventory_hostname == '%s'" % host}
             for register, (name, host, args) in zip(registers, calls)]
    with tempfile.TemporaryDirectory(dir=SANDBOX) as scratch:
        results = os.path.join(scratch, 'results.json')
        # The results of every host's tasks, written on this machine (each node's connection is local).
        each = ["hostvars['%s']['%s']" % (host, register) for register, (_name, host, _args) in zip(registers, calls)]
        gathered = '{{ [%s] | to_json }}' % ', '.join(each)
        written = {'content': gathered, 'dest': results, 'mode': '0600'}
        tasks.append({'name': 'the results', 'ansible.builtin.copy': written, 'run_once': True})
        play = os.path.join(scratch, 'play.json')
        with open(play, 'w') as handle:
            json.dump([{'name': 'modules', 'hosts': 'forest', 'gather_facts': False, 'tasks': tasks}], handle)
        done = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', INVENTORY, play], capture_output=True,
                              text=True, env=ansible_env(), cwd=REPO, timeout=timeout, check=False)
        if done.returncode != 0 or not os.path.exists(results):
            raise AssertionError('no results from %s: rc=%s\n%s\n%s' % (
                [call[0] for call in calls], done.returncode, done.stdout[-3000:], done.stderr[-2000:]))
        with open(results) as handle:
            return json.load(handle)


def own_processes(pattern):
    """PIDs whose command line matches the regular expression, in this sandbox's network namespace
    only: the processes of a parallel worker's sandbox (scripts/worker_sandboxes.py) are not ours."""
    import re
    own = os.readlink('/proc/self/ns/net')
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if os.readlink('/proc/%s/ns/net' % entry) != own:
                continue
            with open('/proc/%s/cmdline' % entry, 'rb') as handle:
                command = handle.read().replace(b'\0', b' ').decode('utf-8', 'replace')
        except OSError:  # gone meanwhile
            continue
        if re.search(pattern, command):
            found.append(int(entry))
    return found


def kill_own(pattern, signum=9):
    """Send signum to own_processes(pattern); whether any was found."""
    pids = own_processes(pattern)
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    return bool(pids)


def postmaster_pid(serverid):
    with open(os.path.join(data_dir(serverid), 'postmaster.pid')) as handle:
        return int(handle.readline())


def ensure_running(serverid):
    """Undo a fault: resume a SIGSTOPped postmaster, start a stopped one."""
    import signal
    if os.path.exists(os.path.join(data_dir(serverid), 'postmaster.pid')):
        try:
            os.kill(postmaster_pid(serverid), signal.SIGCONT)
        except ProcessLookupError:
            pass
    if pg_ctl(serverid, 'status', check=False).returncode != 0:
        log = os.path.join(SANDBOX, NODES[serverid]['name'], 'postgresql.log')
        pg_ctl(serverid, 'start', '-w', '-l', log)

    def answers():
        try:
            return query(serverid, 'SELECT 1')
        except psycopg.OperationalError:
            return False
    wait_for('serverid %d to come back' % serverid, answers, interval=0.2)


def reset_pair(userdb=USERDB):
    """Both management databases of userdb as provisioned: same server_info, validity 1, default config."""
    from ansible_collections.pgforest.cluster.plugins.module_utils import mngdb
    mngdb_name = mngdb.mngdb_name(userdb)
    for serverid in NODES:
        ensure_running(serverid)
        with connect(serverid, mngdb_name) as conn:
            with conn.transaction():
                conn.execute('DELETE FROM server_info')
                for sid, node in sorted(NODES.items()):
                    conn.execute('INSERT INTO server_info VALUES (%s, %s, 1)',
                                 [sid, '%s:%s/%s' % (node['host'], node['port'], userdb)])
                conn.execute('DELETE FROM global_config')
                conn.execute('DELETE FROM local_config')
                for key, (value, _range) in mngdb.GLOBAL_CONFIG.items():
                    conn.execute('INSERT INTO global_config VALUES (%s, %s)', [key, value])
                for key, (value, _range) in mngdb.LOCAL_CONFIG.items():
                    conn.execute("INSERT INTO local_config VALUES ('DEFAULT', %s, %s)", [key, value])
                conn.execute('DELETE FROM broken_log_detail')
    record_identities(mngdb_name)


def record_identities(mngdb_name=MNGDB):
    """The pair's record of both nodes' identities, as they are now, in both views (what provision
    records for a healthy pair): a test that replaced a node's data directory leaves no `replaced`."""
    from ansible_collections.pgforest.cluster.plugins.module_utils import node_identity
    conns = [connect(serverid, mngdb_name) for serverid in sorted(NODES)]
    try:
        for serverid, conn in enumerate(conns):
            node_identity.accept_node(serverid, conn, conns, how=node_identity.ORIGIN_ADOPTED)
    finally:
        for conn in conns:
            conn.close()


def driver_nodes():
    """{serverid: (host, port)}: the sandbox pair as the reference driver (forest_driver.ForestDriver) takes it."""
    return dict((sid, (node['host'], node['port'])) for sid, node in NODES.items())


def set_read_duration(seconds):
    """The drivers' poll interval (mngdb_read_duration, whole seconds) in both nodes' management databases."""
    both("UPDATE global_config SET value = '%d' WHERE key = 'mngdb_read_duration'" % int(seconds), dbname=MNGDB)


def set_views(view0, view1):
    """Put validity values into each node's server_info: view = {serverid: validity}."""
    for owner, view in ((0, view0), (1, view1)):
        with connect(owner, MNGDB) as conn:
            for sid, validity in view.items():
                conn.execute('UPDATE server_info SET udb_validity = %s WHERE serverid = %s', [validity, sid])


def mngdb_rows(serverid, table):
    order = {'server_info': 'serverid', 'global_config': 'key', 'local_config': 'configid, key'}[table]
    return query(serverid, 'SELECT * FROM %s ORDER BY %s' % (table, order), dbname=MNGDB)


def on(serverid, sql, dbname=USERDB):
    with connect(serverid, dbname) as conn:
        conn.execute(sql)


def both(sql, dbname=USERDB):
    for serverid in NODES:
        on(serverid, sql, dbname)
