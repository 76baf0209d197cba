"""Several sandbox pairs in one inventory, for the many-pairs tests and bench/status_pairs_bench.py.

Pair k (k = 0, 1, ...) is named pair<k>: hosts pair<k>_0 and pair<k>_1 on 127.0.<k+1>.1 and
127.0.<k+1>.2, servers under <sandbox>/pairs/<host>.  The inventory has the docs/inventory.md
shape: group `forest` with a child group per pair that sets `forest_pair`.  Run it inside a
network namespace of its own (a test worker's, or the bench's), where every loopback address is free.
"""
import os
import shutil
import subprocess

import yaml

from pgforest_dev import sandbox

PG_BIN = sandbox.PG_BIN


def address(pair, serverid):
    return '127.0.%d.%d' % (pair + 1, serverid + 1)


def host(pair, serverid):
    return 'pair%d_%d' % (pair, serverid)


def top():
    return os.path.join(sandbox.SANDBOX, 'pairs')


def base_dir(pair, serverid):
    return os.path.join(top(), host(pair, serverid))


def data_dir(pair, serverid):
    return os.path.join(base_dir(pair, serverid), 'data')


def inventory(count, userdbs=('userdb',)):
    """The inventory of `count` pairs as a dict (written by write_inventory)."""
    common = dict(sandbox_inventory()['forest']['vars'])
    common.update(forest_userdbs=list(userdbs),
                  forest_node_base_dir="{{ forest_sandbox_dir }}/pairs/{{ inventory_hostname }}")
    common.pop('forest_userdb', None)
    children = {}
    for pair in range(count):
        hosts = {}
        for serverid in (0, 1):
            hosts[host(pair, serverid)] = dict(forest_serverid=serverid, forest_pg_host=address(pair, serverid),
                                               forest_peer_host=address(pair, 1 - serverid))
        children['pair%d' % pair] = dict(vars=dict(forest_pair='pair%d' % pair), hosts=hosts)
    return dict(forest=dict(vars=common, children=children))


def sandbox_inventory():
    with open(sandbox.INVENTORY) as handle:
        return yaml.safe_load(handle)


def write_inventory(count, path, userdbs=('userdb',)):
    """The inventory file; forest_sandbox_dir as in the sandbox's (this worker's sandbox)."""
    found = inventory(count, userdbs)
    found['forest']['vars']['forest_sandbox_dir'] = sandbox.SANDBOX
    with open(path, 'w') as handle:
        yaml.safe_dump(found, handle, default_flow_style=False, sort_keys=False)
    return path


def pg_ctl(pair, serverid, *args, check=True):
    return subprocess.run(['runuser', '-u', 'postgres', '--', os.path.join(PG_BIN, 'pg_ctl'),
                           '-D', data_dir(pair, serverid)] + list(args),
                          capture_output=True, text=True, check=check)


def connect(pair, serverid, dbname='postgres', **kwargs):
    import psycopg
    kwargs.setdefault('autocommit', True)
    return psycopg.connect(host=address(pair, serverid), port=5432, user='postgres', password=sandbox.password(),
                           dbname=dbname, connect_timeout=3, **kwargs)


def query(pair, serverid, sql, params=None, dbname='postgres'):
    with connect(pair, serverid, dbname) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def down(count):
    """Stop every pair's servers and remove their files."""
    for pair in range(count):
        for serverid in (0, 1):
            if os.path.exists(os.path.join(data_dir(pair, serverid), 'postmaster.pid')):
                pg_ctl(pair, serverid, 'stop', '-m', 'immediate', check=False)
    shutil.rmtree(top(), ignore_errors=True)


def playbook(name, inventory_path, *args, extra_vars=None, timeout=900):
    return sandbox.playbook(name, *args, extra_vars=extra_vars, inventory=inventory_path, timeout=timeout)
