"""Secrets and injection: the sandbox's (known) password through every module and playbook
at -vvv; pg_hba of the provisioned nodes; identifiers that try to inject SQL."""
import glob
import json
import os
import subprocess
import tempfile
import threading
import time

import pytest

from pgforest_dev import sandbox

SECRET_FILE = os.path.join(sandbox.SANDBOX, 'secrets', 'postgres.password')
BACKUPS = os.path.join(sandbox.SANDBOX, 'backups')


class ProcessWatch(threading.Thread):
    """Reads every process's command line every 20 ms; keeps those that hold the password."""

    def __init__(self, secret):
        super().__init__(daemon=True)
        self.secret = secret.encode()
        self.seen = set()
        self.samples = 0
        self.leaks = []
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            for pid in os.listdir('/proc'):
                if not pid.isdigit():
                    continue
                try:
                    with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                        line = handle.read()
                except OSError:
                    continue
                self.seen.add(line.split(b'\0')[0])
                if self.secret in line:
                    self.leaks.append(line.replace(self.secret, b'<password>').replace(b'\0', b' ')[:300])
            self.samples += 1
            time.sleep(0.02)


def adhoc(module_name, host='forest0', check=False, **args):
    cmd = [os.path.join(sandbox.BIN, 'ansible'), host, '-i', sandbox.INVENTORY, '-vvv',
           '-m', 'pgforest.cluster.' + module_name, '-a', json.dumps(args)] + (['--check'] if check else [])
    return subprocess.run(cmd, capture_output=True, text=True, env=sandbox.ansible_env(), cwd=sandbox.REPO,
                          timeout=600, check=False)


def module_argument_recovery(secret):
    """An online recovery whose password is a module argument (from a private vars file, as from a vault)."""
    cmd, env = sandbox.module_command('forest_recover', 'forest1', login_password='{{ known_password }}',
                                      mode='online', data_dir=sandbox.data_dir(1))
    with tempfile.NamedTemporaryFile('w', suffix='.json', dir=sandbox.SANDBOX) as varfile:
        json.dump(dict(known_password=secret), varfile)
        varfile.flush()
        done = subprocess.run(cmd + ['-vvv', '-e', '@' + varfile.name], capture_output=True, text=True, env=env,
                              cwd=sandbox.REPO, timeout=600, check=False)
    return done, sandbox.module_result('forest1', done)


def files_holding(secret, roots, since):
    """Files under roots (changed since `since`, all of them under .sandbox) whose bytes hold the secret."""
    found, scanned = [], 0
    for root in roots:
        for folder, _dirs, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                if path == SECRET_FILE or not os.path.isfile(path) or os.path.islink(path):
                    continue
                try:
                    if not path.startswith(sandbox.SANDBOX) and os.path.getmtime(path) < since:
                        continue
                    with open(path, 'rb') as handle:
                        scanned += 1
                        if secret.encode() in handle.read():
                            found.append(path)
                except OSError:
                    continue
    return found, scanned


@pytest.fixture
def secret():
    with open(SECRET_FILE) as handle:
        return handle.read().strip()


def test_password_appears_nowhere(secret, provisioned_pair, record):
    started = time.time()
    watch = ProcessWatch(secret)
    watch.start()
    runs = []
    try:
        def play(name, **extra_vars):
            done = sandbox.playbook(name, '-vvv', extra_vars=extra_vars)
            runs.append(('playbook ' + name, done))
            assert done.returncode == 0, done.stdout[-3000:]

        play('provision.yml')
        play('status.yml')
        play('config.yml', key='mngdb_read_duration', value='10')
        play('dbsync.yml')
        play('backup.yml')
        play('restore.yml', confirm_restore=True)
        sandbox.set_views({1: -1}, {1: -1})
        play('recover.yml', mode='offline')
        sandbox.set_views({1: -1}, {1: -1})
        play('recover.yml')
        for name, args in (('forest_status', {}), ('forest_mngdb', dict(serverid=1, validity=1)),
                           ('forest_dbsync', {}), ('forest_recover', dict(mode='offline')),
                           ('forest_backup', dict(backup_dir=BACKUPS)),
                           ('forest_restore', dict(backup_dir=BACKUPS, confirm=True))):
            runs.append(('module ' + name, adhoc(name, check=name == 'forest_restore', **args)))
        sandbox.set_views({1: -1}, {1: -1})
        done, result = module_argument_recovery(secret)
        runs.append(('module forest_recover online, password as argument', done))
        assert not result.get('failed'), result.get('msg')
    finally:
        watch.done.set()
        watch.join()
    leaked_output = [name for name, done in runs if secret in done.stdout + done.stderr]
    logs = [os.path.join(sandbox.SANDBOX, node['name'], 'postgresql.log') for node in sandbox.NODES.values()]
    leaked_logs = [path for path in logs if secret in open(path, errors='replace').read()]
    # Ansible's local tmp is in the checkout's .ansible/ (the tests' ANSIBLE_HOME), ~/.ansible's for other runs.
    leftovers, scanned = files_holding(secret, [sandbox.SANDBOX, '/tmp', os.path.join(sandbox.ANSIBLE_HOME, 'tmp'),
                                                os.path.expanduser('~/.ansible/tmp')], started)
    record(runs=len(runs), vvv_output_chars=sum(len(done.stdout) + len(done.stderr) for _n, done in runs),
           process_list_samples=watch.samples, distinct_programs_seen=len(watch.seen), files_scanned=scanned,
           leaks_in_output=leaked_output, leaks_in_server_logs=leaked_logs,
           leaks_in_process_list=[line.decode(errors='replace') for line in watch.leaks[:3]], leftover_files=leftovers)
    assert all(done.returncode == 0 for name, done in runs if name.startswith('playbook'))
    assert leaked_output == [] and leaked_logs == [] and watch.leaks == [] and leftovers == []
    assert watch.samples > 100 and any(b'pg_basebackup' in program for program in watch.seen)


def test_no_other_sandbox_of_this_machine_shares_this_password(secret, record):
    """Worker sandboxes are copies of the first (scripts/worker_sandboxes.py): each gets a password of its
    own, or the case above would find another worker's module file in /tmp holding this one."""
    others = [path for path in glob.glob(os.path.join(os.path.dirname(sandbox.SANDBOX), '*', 'secrets',
                                                      'postgres.password'))
              if os.path.dirname(os.path.dirname(path)) != sandbox.SANDBOX]
    sharing = []
    for path in others:
        with open(path) as handle:
            if handle.read().strip() == secret:
                sharing.append(path)
    record(other_sandboxes=len(others), sharing=sharing)
    assert sharing == []


def test_pg_hba_has_no_trust_over_tcp_and_only_single_host_entries(record):
    rules = []
    for sid in sandbox.NODES:
        rules += [(sid,) + row for row in sandbox.query(
            sid, 'SELECT type, database, user_name, address, netmask, auth_method FROM pg_hba_file_rules '
            "WHERE type <> 'local' ORDER BY line_number")]
    record(tcp_rules=len(rules), methods=sorted(set(rule[-1] for rule in rules)),
           netmasks=sorted(set(str(rule[5]) for rule in rules)))
    assert rules
    assert [rule for rule in rules if rule[-1] in ('trust', 'password', 'md5', 'ident')] == []
    assert [rule for rule in rules if rule[5] not in ('255.255.255.255', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff')] == []


HOSTILE_SCHEMA = "s'q"
HOSTILE_TABLE = 'we"ird; DROP TABLE victim; --'
HOSTILE_CONFIGID = "x'); DELETE FROM server_info; --"


def test_hostile_identifiers_are_data_not_sql(provisioned_pair, record):
    sandbox.both('DROP SCHEMA IF EXISTS "s\'q" CASCADE; DROP TABLE IF EXISTS victim; CREATE TABLE victim (id int); '
                 'CREATE SCHEMA "s\'q"; CREATE TABLE "s\'q"."we""ird; DROP TABLE victim; --" '
                 '(id serial PRIMARY KEY, "co;l""" text); '
                 'INSERT INTO "s\'q"."we""ird; DROP TABLE victim; --" ("co;l""") '
                 "SELECT 'v' || g FROM generate_series(1, 300) g")
    try:
        sandbox.on(1, 'DELETE FROM "s\'q"."we""ird; DROP TABLE victim; --" WHERE id % 7 = 0; '
                   'UPDATE "s\'q"."we""ird; DROP TABLE victim; --" SET "co;l""" = \'x\' WHERE id < 10')
        synced = sandbox.module('forest_dbsync', mode='sync', source=0,
                                include=['%s.%s' % (HOSTILE_SCHEMA, HOSTILE_TABLE)])
        compared = sandbox.module('forest_dbsync')
        config = sandbox.module('forest_mngdb', configid=HOSTILE_CONFIGID, local_config={'api_exec_timeout': '5'})
        stored = [sandbox.query(sid, 'SELECT value FROM local_config WHERE configid = %s', [HOSTILE_CONFIGID],
                                dbname=sandbox.MNGDB) for sid in sandbox.NODES]
        victims = [sandbox.query(sid, "SELECT to_regclass('public.victim') IS NOT NULL", dbname=sandbox.USERDB)
                   for sid in sandbox.NODES]
        server_info = [len(sandbox.mngdb_rows(sid, 'server_info')) for sid in sandbox.NODES]
    finally:
        sandbox.both('DROP SCHEMA IF EXISTS "s\'q" CASCADE; DROP TABLE IF EXISTS victim')
    record(table='%s.%s' % (HOSTILE_SCHEMA, HOSTILE_TABLE), sync=synced.get('msg') or 'repaired',
           compare_equal=compared.get('equal'), configid=HOSTILE_CONFIGID,
           configid_result=config.get('msg') or 'stored as data: %s' % stored)
    assert not synced.get('failed'), synced.get('msg')
    assert [t['status'] for t in synced['tables']] == ['repaired']
    assert compared['equal'] is True
    assert not config.get('failed'), config.get('msg')
    assert stored == [[('5',)], [('5',)]]
    assert victims == [[(True,)], [(True,)]] and server_info == [2, 2]
