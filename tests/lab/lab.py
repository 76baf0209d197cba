"""The two-machine lab as the tests see it (lab/lab.sh, lab/inventory.yml).

The tests run inside the lab's network namespace (make lab-test runs them
through lab/exec), as the DBA's workstation 10.77.0.1: playbooks go to the
nodes over SSH, and the checks connect to both servers over the network."""
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time

import psycopg

from pgforest_dev import sandbox
from pgforest_dev.forest_driver import count_acked_on, wait_acked
from pgforest_dev.forest_driver import write_counts as _write_counts
from pgforest_dev.wait import TIMEOUT
from pgforest_dev.wait import wait_for as wait_for_event
# One PLAY RECAP parser for the sandbox's tests and the lab's.
from pgforest_dev.sandbox import recap  # noqa: F401  pylint: disable=unused-import

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INVENTORY = os.path.join(REPO, 'lab', 'inventory.yml')
DRIVER_DIR = os.path.join(REPO, '.cache', 'lab-drivers')  # the drivers' result files (AppDriver)
LAB = os.path.join(REPO, 'lab', 'lab.sh')
BIN = os.path.join(REPO, '.venv', 'bin')
# The Ansible controller the cases run playbooks and modules from: this checkout's venv (ansible-core 2.19 on
# this host's Python), or with FOREST_LAB_CONTROLLER=current a Debian 13 machine with Python 3.13 and
# ansible-core 2.21 in the lab's network (scripts/py313_controller.sh lab). The checks, the drivers and the
# faults stay on this host either way.
CURRENT_CONTROLLER = os.environ.get('FOREST_LAB_CONTROLLER') == 'current'
# Files a command on the controller reads (extra vars): inside the checkout, which that machine sees too.
SCRATCH = os.path.join(REPO, '.cache', 'lab')
NS = os.environ.get('FOREST_LAB_NS', 'pgforest-lab')
STATE = os.environ.get('FOREST_LAB_STATE', '/var/lib/' + NS)  # lab/settings.sh's rule
# The Debian release that is up, and the lab's default (lab/exec exports both from lab/settings.sh and the state).
DEBIAN = os.environ.get('FOREST_LAB_DEBIAN', '12')
DEFAULT_DEBIAN = os.environ.get('FOREST_LAB_DEBIAN_DEFAULT', '12')
NODES = {0: dict(name='node0', host='10.77.0.11'), 1: dict(name='node1', host='10.77.0.12')}
APPS = {'appa': '10.77.0.21', 'appb': '10.77.0.22'}
CONTROLLER = '10.77.0.1'
USERDB = 'userdb'
MNGDB = USERDB + '_pghainfo'
PASSWORD_FILE = os.path.join(STATE, 'secrets', 'postgres.password')
# Whether this run provisioned the pair as the inventory says (by the `pair` fixture of conftest.py or a case
# that provisions it itself, test_first_contact.py), so the next case need not; a case that rebuilds the nodes
# empties it.
PAIR_PROVISIONED = []


def in_lab():
    """True when this process runs inside the lab's namespace (it has the bridge's address)."""
    out = subprocess.run(['ip', '-o', 'addr', 'show'], capture_output=True, text=True, check=False).stdout
    return (' %s/' % CONTROLLER) in out


def password():
    with open(PASSWORD_FILE) as handle:
        return handle.read().strip()


def connect(serverid, dbname='postgres', timeout=3, **kwargs):
    kwargs.setdefault('autocommit', True)
    return psycopg.connect(host=NODES[serverid]['host'], port=5432, user='postgres', password=password(),
                           dbname=dbname, connect_timeout=timeout, **kwargs)


def query(serverid, sql, params=None, dbname=USERDB):
    with connect(serverid, dbname) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else None


def validity(serverid, view):
    """server_info.udb_validity of serverid as node `view`'s management database says."""
    return query(view, 'SELECT udb_validity FROM server_info WHERE serverid = %s', [serverid], dbname=MNGDB)[0][0]


def env():
    """The sandbox's Ansible environment, plus where the lab keeps its keys and secrets."""
    result = sandbox.ansible_env()
    result['FOREST_LAB_STATE'] = STATE
    return result


def run(cmd, timeout=900, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=REPO, timeout=timeout, check=False,
                          **kwargs)


def ansible(program, *args, settings=None):
    """argv running an Ansible program (ansible, ansible-playbook) on the lab's controller, with settings
    (environment variables) given to it there."""
    prefix = ['env'] + ['%s=%s' % item for item in sorted((settings or {}).items())]
    if CURRENT_CONTROLLER:
        return ['bash', os.path.join(REPO, 'scripts', 'py313_controller.sh'), 'lab'] + prefix + [program] + list(args)
    return prefix + [os.path.join(BIN, program)] + list(args)


def adhoc(hosts, module_name, args, timeout=300):
    """`ansible HOSTS -m pgforest.cluster.MODULE -a ARGS`: (the process, each host's result as a dict), read
    from the minimal callback's "HOST | STATUS => {...}" blocks in JSON (ansible-core 2.21 deprecates -o)."""
    proc = run(ansible('ansible', hosts, '-i', INVENTORY, '-m', 'pgforest.cluster.' + module_name,
                       '-a', json.dumps(args),
                       settings=dict(ANSIBLE_STDOUT_CALLBACK='minimal', ANSIBLE_CALLBACK_RESULT_FORMAT='json')),
               timeout=timeout)
    results, decoder = {}, json.JSONDecoder()
    for block in re.finditer(r'^(\S+) \| [A-Z!]+ => ', proc.stdout, re.M):
        try:
            results[block.group(1)] = decoder.raw_decode(proc.stdout, block.end())[0]
        except ValueError:
            continue
    return proc, results


def playbook(name, *args, extra_vars=None, timeout=900):
    """playbooks/<name> against the lab over SSH; extra vars through a private file."""
    cmd = ansible('ansible-playbook', '-i', INVENTORY, os.path.join(REPO, 'playbooks', name))
    os.makedirs(SCRATCH, exist_ok=True)
    with tempfile.NamedTemporaryFile('w', suffix='.json', dir=SCRATCH) as varfile:
        if extra_vars:
            json.dump(extra_vars, varfile)
            varfile.flush()
            cmd += ['-e', '@' + varfile.name]
        return run(cmd + list(args), timeout=timeout)


def module(name, host='node0', timeout=300, **args):
    """An ad hoc module run on one node (as `ansible node0 -m ...`); its result as a dict."""
    args.setdefault('userdb', USERDB)
    proc, results = adhoc(host, name, args, timeout=timeout)
    if host in results:
        return results[host]
    return dict(failed=True, msg=proc.stdout + proc.stderr)


def ssh(serverid, command, timeout=60, check=True, input_text=None):
    """A shell command on a node as root (through the deploy user's sudo); input_text: its standard input."""
    proc = subprocess.run(['ssh', '-i', os.path.join(STATE, 'ssh', 'id_ed25519'),
                           '-o', 'UserKnownHostsFile=' + os.path.join(STATE, 'ssh', 'known_hosts'),
                           '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5',
                           'deploy@' + NODES[serverid]['host'], 'sudo sh -c ' + _quote(command)],
                          capture_output=True, text=True, timeout=timeout, check=False, input=input_text)
    if check and proc.returncode != 0:
        raise AssertionError('on node%d: %s -> %d %s' % (serverid, command, proc.returncode, proc.stderr))
    return proc


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def lab(*args, timeout=300):
    """lab/lab.sh: power a machine off or on, reset it."""
    proc = subprocess.run(['bash', LAB] + list(args), capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise AssertionError('lab/lab.sh %s: %s' % (' '.join(args), proc.stderr))
    return proc


def nft(script):
    """nftables inside the lab's namespace (this process is there)."""
    proc = subprocess.run(['nft', '-f', '-'], input=script, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AssertionError('nft: %s\n%s' % (proc.stderr, script))


def drop(pairs):
    """Silent drop in the bridge for each (a, b) address pair, both directions: packets vanish."""
    rules = '\n'.join('  ip saddr %s ip daddr %s drop\n  ip saddr %s ip daddr %s drop' % (a, b, b, a)
                      for a, b in pairs)
    heal()
    # forward: between machines on the bridge; input/output: to and from this side (the controller, 10.77.0.1).
    chains = ''.join(' chain %s {\n  type filter hook %s priority 0;\n%s\n }\n' % (hook, hook, rules)
                     for hook in ('forward', 'input', 'output'))
    nft('table bridge lab {\n%s}\n' % chains)


def heal():
    subprocess.run(['nft', 'delete', 'table', 'bridge', 'lab'], capture_output=True, check=False)


def link(state, serverid):
    proc = subprocess.run(['ip', 'link', 'set', 'vb-' + NODES[serverid]['name'], state], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise AssertionError(proc.stderr)
    if state == 'up':
        subprocess.run(['ip', 'link', 'set', 'vb-' + NODES[serverid]['name'], 'master', 'br0'], check=False)


class AppDriver(object):
    """The reference driver (dev/pgforest_dev/forest_driver.py) on an application host, as its own process."""

    def __init__(self, app, read_duration=1.0, listen=True):
        self.app = app
        self.table = 'forest_load_' + app
        # In the checkout's .cache, not /tmp: the sandbox suites run beside the lab, and their session check
        # counts a driver file in /tmp as theirs.
        os.makedirs(DRIVER_DIR, exist_ok=True)
        handle, self.out = tempfile.mkstemp(prefix='driver-%s-' % app, suffix='.json', dir=DRIVER_DIR)
        os.close(handle)  # the driver replaces it when it stops
        cmd = ['nsenter', '--net=/run/netns/%s-%s' % (NS, app), os.path.join(BIN, 'python'),
               os.path.join(REPO, 'dev', 'pgforest_dev', 'forest_driver.py'), '--userdb', USERDB,
               '--password-file', PASSWORD_FILE, '--read-duration', str(read_duration), '--out', self.out, '--table', self.table]
        if not listen:  # polls only, as the JDBC driver does
            cmd.append('--no-listen')
        for serverid, node in NODES.items():
            cmd += ['--node', '%d=%s:5432' % (serverid, node['host'])]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if 'started' not in line:
            raise AssertionError('driver on %s did not start: %s %s' % (app, line, self.proc.stderr.read()))
        self.result = None
        self.nodes = NODES
        # What the driver process reports as it goes (forest_driver.main: one JSON line when it changed).
        self.progress = dict(acked_on={}, validity={}, errors=0)
        self._reader = threading.Thread(target=self._read_progress, daemon=True)
        self._reader.start()

    def _read_progress(self):
        for line in self.proc.stdout:
            try:
                self.progress = json.loads(line)
            except ValueError:
                continue

    @property
    def validity(self):
        return dict((int(sid), value) for sid, value in self.progress['validity'].items())

    @property
    def errors(self):
        return ['%d errors so far' % self.progress['errors']] if self.progress['errors'] else []

    def acked_count_on(self, nodes):
        acked_on = dict((tuple(int(sid) for sid in key.split(',')), count)
                        for key, count in self.progress['acked_on'].items())
        return count_acked_on(acked_on, nodes)

    def wait_acked(self, count=10, nodes=None, timeout=TIMEOUT):
        """Until the driver process reported `count` more writes acknowledged by every node of `nodes`
        (default both): ForestDriver.wait_acked across the process boundary."""
        return wait_acked(self, count, nodes, timeout)

    def wait_sees(self, serverid, value, timeout=TIMEOUT):
        """Until the driver process reported that it sees serverid's validity as `value`."""
        return wait_for_event(lambda: 'the driver on %s to see serverid %d as %s (it sees %s)'
                              % (self.app, serverid, value, self.validity),
                              lambda: self.validity.get(serverid) == value, timeout)

    def stop(self):
        if self.result is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
            self._reader.join(5)
            with open(self.out) as handle:
                data = json.load(handle)
            os.unlink(self.out)
            self.result = Acked(data, self.table)
        return self.result


class Acked(object):
    """What a driver acknowledged, in the shape forest_driver.lost_or_duplicated reads."""

    def __init__(self, data, table):
        self.table = table
        self.acked = [tuple(item) for item in data['acked']]
        self.errors = data['errors']
        self.validity = dict((int(k), v) for k, v in data['validity'].items())
        self.nodes = NODES


def write_counts(*drivers):
    """The drivers' acknowledged writes checked on both nodes, measured (for the report):
    {lost, duplicated, other_contents, problems}, summed over the drivers."""
    total = dict(lost=0, duplicated=0, other_contents=0, problems=[])
    for driver in drivers:
        counts = _write_counts(driver, lambda serverid: connect(serverid, USERDB))
        for key in ('lost', 'duplicated', 'other_contents'):
            total[key] += counts[key]
        total['problems'] += counts['problems']
    return total


def lost_or_duplicated(*drivers):
    return write_counts(*drivers)['problems']


def end_app_sessions():
    """The applications are stopped; sessions of hosts the network had cut off would linger until the
    server's TCP keepalives end them (up to a minute): the DBA ends them."""
    for serverid in NODES:
        query(serverid, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
                        "'forest-driver'", dbname='postgres')


def wait_for(predicate, timeout, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except psycopg.Error:
            pass
        time.sleep(step)
    return False


def set_read_duration(seconds):
    """The drivers' poll interval on both management databases (config.yml is tested in test_playbooks)."""
    for serverid in NODES:
        with connect(serverid, MNGDB) as conn:
            conn.execute("UPDATE global_config SET value = %s WHERE key = 'mngdb_read_duration'", [str(seconds)])


# --- the PostgreSQL of a node's host (issue 28) ----------------------------------------------------------
# The postmasters of a host, not their backends ("postgres: 17/main: ..."): the node's, and any other server.
POSTMASTERS = "pgrep -a -f '^/usr/lib/postgresql/[0-9]+/bin/postgres ' || true"


def os_default(serverid):
    """The major Debian's postgresql package depends on, as the node's apt says."""
    out = ssh(serverid, 'apt-cache depends postgresql').stdout
    return int(re.search(r'Depends: postgresql-(\d+)', out).group(1))


def debian(serverid):
    return int(ssh(serverid, 'cut -d. -f1 /etc/debian_version').stdout.strip())


def node_debian(serverid):
    """The Debian release lab/lab.sh made the node from: its own after lab/lab.sh rebuild, else the lab's."""
    try:
        with open(os.path.join(STATE, 'debian-' + NODES[serverid]['name'])) as handle:
            return handle.read().strip()
    except OSError:
        return DEBIAN


def clusters(serverid):
    """pg_lsclusters as [(version, name)] (Debian's clusters: the node is not one)."""
    out = ssh(serverid, 'pg_lsclusters -h || true').stdout
    return [tuple(line.split()[:2]) for line in out.splitlines() if line.strip()]


def chosen(output, host):
    """The major and reason the role printed for `host`: 'PostgreSQL 17 (os default: ...)'."""
    # ansible.cfg's result_format: yaml ("ok: [node0] =>\n  msg: PostgreSQL 17 (...)"); JSON also read.
    found = re.search(r'ok: \[%s\] =>\s*\{?\s*"?msg"?:\s*"?PostgreSQL (\d+) \(([a-z ]+):' % host, output)
    assert found, output[-3000:]
    return int(found.group(1)), found.group(2)
