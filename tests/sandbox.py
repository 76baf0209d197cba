"""The two-node sandbox, as the tests see it (see sandbox/inventory.yml)."""
import os
import subprocess
import tempfile

import psycopg

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SANDBOX = os.path.join(REPO, '.sandbox')
INVENTORY = os.path.join(REPO, 'sandbox', 'inventory.yml')
BIN = os.path.join(REPO, '.venv', 'bin')
PG_BIN = '/usr/lib/postgresql/15/bin'
NODES = {
    0: dict(host='127.0.0.11', port=5432, name='forest0'),
    1: dict(host='127.0.0.12', port=5432, name='forest1'),
}
USERDB = 'userdb'
MNGDB = USERDB + '_pghainfo'


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
                              cwd=REPO, timeout=timeout)


def recap(output):
    """{host: {ok: n, changed: n, failed: n, ...}} from a PLAY RECAP."""
    result = {}
    for line in output.split('PLAY RECAP')[-1].splitlines()[1:]:
        if ':' not in line:
            continue
        host, _, counts = line.partition(':')
        result[host.strip()] = {k: int(v) for k, v in (item.split('=') for item in counts.split())}
    return result
