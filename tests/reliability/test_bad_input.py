"""A catalogue of bad input across the modules and playbooks: each case must fail with a
message that says what to do, and change nothing on either node."""
import contextlib
import json
import os
import re
import threading

import pytest

from pgforest_dev import sandbox

BACKUPS = os.path.join(sandbox.SANDBOX, 'backups')
HOSTILE = 'userdb"; DROP TABLE catalogue_orders; --'


def fingerprint():
    """Everything a wrong call could change: management rows, databases, user tables' contents, servers, files."""
    state = {}
    for sid in sandbox.NODES:
        state[sid, 'running'] = sandbox.pg_ctl(sid, 'status', check=False).returncode == 0
        state[sid, 'databases'] = sandbox.query(sid, 'SELECT datname FROM pg_database ORDER BY 1')
        state[sid, 'mngdb'] = [mngdb_table(sid, table) for table in ('server_info', 'global_config', 'local_config')]
        tables = sandbox.query(sid, "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables "
                               "WHERE schemaname = 'public' ORDER BY 1", dbname=sandbox.USERDB)
        state[sid, 'userdb'] = [(name, sandbox.query(sid, "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY "
                                                     "t::text), '')) FROM %s t" % name, dbname=sandbox.USERDB))
                                for (name,) in tables]
        state[sid, 'workspace'] = os.path.exists(sandbox.data_dir(sid) + '.pgforest-recovery')
    state['backups'] = sorted(os.listdir(BACKUPS)) if os.path.isdir(BACKUPS) else []
    return state


def mngdb_table(sid, table):
    if not sandbox.query(sid, 'SELECT to_regclass(%s) IS NOT NULL', [table], dbname=sandbox.MNGDB)[0][0]:
        return 'missing'
    return sandbox.query(sid, 'SELECT * FROM %s ORDER BY 1, 2' % table, dbname=sandbox.MNGDB)


# With ANSIBLE_DISPLAY_TRACEBACK=always ansible-core prints a traceback for every failure (for a
# fail_json too, with the exception being handled if any). What sets an unhandled exception apart
# is the task's result: its msg is ansible-core's "Task failed: Module failed: <the exception>",
# where a fail_json's msg is the module's own message.
UNHANDLED_MSG = 'Task failed: Module failed: '
UNHANDLED = re.compile(r'"msg": "%s' % UNHANDLED_MSG)


def unhandled(output):
    return UNHANDLED.findall(output)


@pytest.fixture(scope='module', autouse=True)
def tracebacks_shown():
    """ansible-core shows a module's unhandled exception with its traceback only when asked: ask."""
    os.environ['ANSIBLE_DISPLAY_TRACEBACK'] = 'always'
    yield
    del os.environ['ANSIBLE_DISPLAY_TRACEBACK']


# Lower case: in CASES it reads as the calls beside it, playbook() and metrics_playbook().
class module(object):  # pylint: disable=invalid-name
    """A module run with bad input.  The cases that share a set-up run as the tasks of one playbook
    (test_bad_module_input_is_refused_clearly_and_changes_nothing): an ad hoc run costs about a CPU-second
    of Ansible's start before the module runs, a task of a playbook a fraction of it."""

    def __init__(self, name, host='forest0', **args):
        self.name, self.host, self.args = name, host, args

    @staticmethod
    def outcome(result):
        """(failed, message, changed) of the module's result; AssertionError on an unhandled exception."""
        assert not result.get('msg', '').startswith(UNHANDLED_MSG), result.get('exception', result)
        return bool(result.get('failed')), result.get('msg', ''), bool(result.get('changed'))

    def __call__(self):
        """The module alone, ad hoc (naming the case that changed something in a batch that did)."""
        return self.outcome(sandbox.module(self.name, host=self.host, **self.args))


def playbook(name, **extra_vars):
    def call():
        done = sandbox.playbook(name, extra_vars=extra_vars)
        assert not unhandled(done.stdout + done.stderr), (done.stdout + done.stderr)[-3000:]
        return done.returncode != 0, done.stdout + done.stderr, 'changed=0' not in done.stdout.split('PLAY RECAP')[-1]
    return call


def metrics_playbook(**extra_vars):
    """playbooks/metrics.yml with this machine (forest0) as the monitoring host: a second inventory adds the
    group; become off (the sandbox runs as root, without sudo).  Nothing may be written under /etc."""
    def call():
        extra = os.path.join(sandbox.SANDBOX, 'monitoring-inventory.yml')
        with open(extra, 'w') as handle:
            handle.write('forest_monitoring:\n  hosts:\n    forest0:\n')
        variables = dict(extra_vars, ansible_become=False, forest_metrics_config_dir=METRICS_DIR)
        done = sandbox.playbook('metrics.yml', '-i', extra, extra_vars=variables)
        assert not unhandled(done.stdout + done.stderr), (done.stdout + done.stderr)[-3000:]
        assert not os.path.exists(METRICS_DIR) and not os.path.exists('/etc/systemd/system/pgforest-metrics.timer')
        assert not os.path.exists('/etc/systemd/system/pgforest-exporter.service')
        return done.returncode != 0, done.stdout + done.stderr, 'changed=0' not in done.stdout.split('PLAY RECAP')[-1]
    return call


METRICS_DIR = '/etc/pgforest-metrics-bad-input-test'


def hidden_table(sid, table):
    return (lambda: sandbox.on(sid, 'ALTER TABLE %s RENAME TO %s_hidden' % (table, table), dbname=sandbox.MNGDB),
            lambda: sandbox.on(sid, 'ALTER TABLE %s_hidden RENAME TO %s' % (table, table), dbname=sandbox.MNGDB))


def swapped_server_info():
    def swap():
        sandbox.on(1, 'UPDATE server_info s SET udb_url = o.udb_url FROM server_info o '
                   'WHERE o.serverid = 1 - s.serverid', dbname=sandbox.MNGDB)
    return swap, swap


def extra_server_row():
    return (lambda: sandbox.on(0, "INSERT INTO server_info VALUES (2, '127.0.0.13:5432/userdb', 1)",
                               dbname=sandbox.MNGDB),
            lambda: sandbox.on(0, 'DELETE FROM server_info WHERE serverid = 2', dbname=sandbox.MNGDB))


def views(view0, view1):
    return (lambda: sandbox.set_views(view0, view1), sandbox.reset_pair)


BROKEN_1 = views({1: -1}, {1: -1})
BOTH_BROKEN = views({0: -1, 1: -1}, {0: -1, 1: -1})
NONE = (None, None)

# (case, call, words the message must contain, (set-up, undo))
CASES = [
    ('status: unknown option', module('forest_status', colour='red'), ['Unsupported parameters', 'colour'], NONE),
    ('status: wrong type', module('forest_status', broken_log_limit='many'), ['broken_log_limit', 'int'], NONE),
    ('status: compare not a choice', module('forest_status', compare='all'), ['compare', 'one of'], NONE),
    ('status: wrong password', module('forest_status', login_password='not-the-password', fail_unless_healthy=True),
     ['password authentication failed'], NONE),
    ('status: unreachable node', module('forest_status', login_port=1, peer_port=1, fail_unless_healthy=True),
     ['down', 'check that both servers run'], NONE),
    ('status: hostile userdb name', module('forest_status', userdb=HOSTILE, fail_unless_healthy=True),
     ['management database missing', 'create it'], NONE),
    ('mngdb: validity not a choice', module('forest_mngdb', serverid=1, validity=2), ['validity', 'one of'], NONE),
    ('mngdb: serverid out of range', module('forest_mngdb', serverid=5, validity=-1), ['serverid', 'one of'], NONE),
    ('mngdb: unknown global_config key', module('forest_mngdb', global_config={'no_such_key': '1'}),
     ['no_such_key'], NONE),
    ('mngdb: value out of range', module('forest_mngdb', global_config={'mngdb_read_duration': '-5'}),
     ['mngdb_read_duration'], NONE),
    ('mngdb: value of the wrong type', module('forest_mngdb', global_config={'mngdb_read_duration': 'soon'}),
     ['mngdb_read_duration'], NONE),
    ('mngdb: validity without serverid', module('forest_mngdb', validity=-1), ['serverid'], NONE),
    ('mngdb: config on a swapped server_info', module('forest_mngdb', global_config={'mngdb_read_duration': '5'}),
     ['misconfigured', 'server_info differs'], swapped_server_info()),
    ('mngdb: validity with a table missing', module('forest_mngdb', serverid=1, validity=-1),
     ['global_config'], hidden_table(1, 'global_config')),
    ('dbsync: source not a choice', module('forest_dbsync', source=3), ['source', 'one of'], NONE),
    ('dbsync: mode not a choice', module('forest_dbsync', mode='merge'), ['mode', 'one of'], NONE),
    ('dbsync: reload_fraction out of range', module('forest_dbsync', mode='sync', source=0, reload_fraction=0),
     ['reload_fraction must be above 0'], NONE),
    ('dbsync: include names no table', module('forest_dbsync', mode='sync', source=0, include=['no_such_table']),
     ['no_such_table'], NONE),
    ('dbsync: hostile table name', module('forest_dbsync', mode='sync', source=0,
                                          include=['x; DROP TABLE catalogue_orders; --']), ['DROP TABLE'], NONE),
    ('dbsync: sync from the broken node', module('forest_dbsync', mode='sync', source=1),
     ['serverid 1'], BROKEN_1),
    ('recover: both nodes broken', module('forest_recover', mode='offline'), ['restore both nodes from a backup'], BOTH_BROKEN),
    ('recover: from the broken node', module('forest_recover', mode='offline', target=0),
     ['from the broken node would copy the wrong data'], BROKEN_1),
    ('recover: online on the wrong host', module('forest_recover', mode='online', data_dir=sandbox.data_dir(0)),
     ['data directory of serverid 0, the valid source'], BROKEN_1),
    ('recover: online without data_dir', module('forest_recover', mode='online'), ['data_dir'], BROKEN_1),
    ('recover: cut before base', module('forest_recover', host='forest1', mode='online', phase='cut',
                                        data_dir=sandbox.data_dir(1)), ['run phase=base first'], BROKEN_1),
    ('recover: max_rate not a rate', module('forest_recover', host='forest1', mode='online', max_rate='fast',
                                            data_dir=sandbox.data_dir(1)), ['max_rate must be'], BROKEN_1),
    ('recover: negative timeout', module('forest_recover', mode='offline', idle_wait_timeout=-1),
     ['idle_wait_timeout must be above 0'], BROKEN_1),
    ('recover: freeze_read_duration 0', module('forest_recover', host='forest1', mode='online', freeze_read_duration=0,
                                               data_dir=sandbox.data_dir(1)),
     ['freeze_read_duration must be above 0'], BROKEN_1),
    ('dbsync: freeze_read_duration negative', module('forest_dbsync', online=True, freeze_read_duration=-1),
     ['freeze_read_duration must be above 0'], NONE),
    ('dbsync: jobs 0', module('forest_dbsync', jobs=0), ['jobs must be above 0'], NONE),
    ('dbsync: jobs 1000', module('forest_dbsync', jobs=1000), ['jobs must be from 1 to 64'], NONE),
    ('recover: offline with a step of online', module('forest_recover', mode='offline', phase='cut'),
     ['offline recovery has one step'], BROKEN_1),
    ('recover: extra row in server_info', module('forest_recover', mode='offline'), ['serverid 0 and 1'], extra_server_row()),
    ('backup: kind not a choice', module('forest_backup', kind='incremental', backup_dir=BACKUPS),
     ['kind', 'one of'], NONE),
    ('backup: negative keep', module('forest_backup', keep=-1, backup_dir=BACKUPS), ['keep must be 0'], NONE),
    ('backup: no backup_dir', module('forest_backup'), ['backup_dir'], NONE),
    ('restore: no such backup', module('forest_restore', backup='forest-logical-19990101T000000Z', confirm=True,
                                       backup_dir=BACKUPS),
     ['forest-logical-19990101T000000Z'], NONE),
    ('restore: hostile backup name', module('forest_restore', backup=HOSTILE, backup_dir=BACKUPS),
     ['userdb"; DROP'], NONE),
    ('status: connect_timeout 0', module('forest_status', connect_timeout=0),
     ['connect_timeout must be 1 to 86400 seconds (got 0)'], NONE),
    ('mngdb: negative connect_timeout', module('forest_mngdb', connect_timeout=-3,
                                               global_config={'mngdb_read_duration': '5'}),
     ['connect_timeout must be 1 to 86400 seconds (got -3)', 'Nothing was changed'], NONE),
    ('dbsync: negative statement_timeout', module('forest_dbsync', statement_timeout=-5),
     ['statement_timeout must be 1 to 2147483647 milliseconds (got -5)'], NONE),
    ('status: port out of range', module('forest_status', login_port=70000), ['login_port must be a TCP port'], NONE),
    ('recover: 60-character userdb', module('forest_recover', mode='offline', userdb='u' * 60), ['is too long', '63 bytes'], NONE),
    ('backup: 60-character userdb', module('forest_backup', userdb='u' * 60, backup_dir=BACKUPS),
     ['is too long'], NONE),
    ('restore: 60-character userdb', module('forest_restore', userdb='u' * 60, backup_dir=BACKUPS),
     ['is too long'], NONE),
    ('dbsync: 60-character userdb', module('forest_dbsync', userdb='ü' * 30), ['is too long'], NONE),
    ('playbook recover: unknown mode', playbook('recover.yml', mode='sideways'),
     ['forest_recovery_mode must be one of: online, offline, got: sideways'], BROKEN_1),
    ('playbook provision: port not a number', playbook('provision.yml', forest_node_port='abc'),
     ["argument 'forest_node_port' is of type str", 'forest_node/meta/argument_specs.yml'], NONE),
    ('playbook config: nothing to change', playbook('config.yml'), ['Say what to change'], NONE),
    ('playbook dbsync: wrong password', playbook('dbsync.yml', forest_pg_password='not-the-password'),
     ['password authentication failed'], NONE),
    ('playbook status: unreachable nodes', playbook('status.yml', forest_pg_port=1, fail_unless_healthy=True),
     ['pair forest is down', 'check that both servers run'], NONE),
    ('playbook config: unreachable nodes', playbook('config.yml', forest_pg_port=1, key='mngdb_read_duration',
                                                    value='5'), ['Connection refused'], NONE),
    ('playbook restore: no such backup', playbook('restore.yml', backup='/nonexistent/forest-logical-x'),
     ['/nonexistent/forest-logical-x'], NONE),
    ('playbook backup: kind not a choice', playbook('backup.yml', kind='incremental'), ['kind'], NONE),
    ('playbook provision: TLS certificate without its key and CA',
     playbook('provision.yml', forest_tls=True, forest_tls_cert_file='/nonexistent/db1.crt'),
     ['go together: give all three'], NONE),
    ('playbook metrics: interval below 10 s', metrics_playbook(forest_metrics_interval=5),
     ['forest_metrics_interval must be 10 seconds or more (got 5)'], NONE),
    ('playbook metrics: no Ansible, collection or psycopg on the monitoring host (timer)',
     metrics_playbook(forest_metrics_mode='textfile', forest_metrics_ansible_playbook='/nonexistent/ansible-playbook',
                      forest_metrics_collections_path='/nonexistent', forest_metrics_python='/nonexistent/python3'),
     ['/nonexistent/ansible-playbook is not an executable', 'the collection is not in /nonexistent',
      '/nonexistent/python3 cannot import psycopg'], NONE),
    ('playbook metrics: no Python on the monitoring host (exporter)',
     metrics_playbook(forest_metrics_collections_path='/nonexistent', forest_metrics_python='/nonexistent/python3'),
     ['cannot run the exporter: /nonexistent/python3 did not run', 'set forest_metrics_python'], NONE),
    ('playbook metrics: an exporter user somebody else made', metrics_playbook(forest_metrics_exporter_user='postgres'),
     ['user postgres exists on forest0 and was not made by this role: pick another forest_metrics_exporter_user',
      'Nothing was changed'], NONE),
    ('playbook metrics: a unit name with a space', metrics_playbook(forest_metrics_unit='pg metrics'),
     ["two different unit names (got 'pg metrics'"], NONE),
    ('playbook metrics: a port out of range', metrics_playbook(forest_metrics_listen_port=70000),
     ['forest_metrics_listen_port 1-65535 (got 70000)'], NONE),
    ('playbook metrics: a mode that is not one', metrics_playbook(forest_metrics_mode='push'),
     ['forest_metrics_mode must be one of: exporter, textfile, got: push'], NONE),
]


@pytest.fixture(scope='module', autouse=True)
def catalogue_data():
    sandbox.reset_pair()
    sandbox.both('DROP TABLE IF EXISTS catalogue_orders; CREATE TABLE catalogue_orders (id int PRIMARY KEY, item '
                 "text); INSERT INTO catalogue_orders SELECT g, 'item ' || g FROM generate_series(1, 500) g")
    yield
    sandbox.reset_pair()
    sandbox.both('DROP TABLE IF EXISTS catalogue_orders')


@contextlib.contextmanager
def prepared(setup_undo):
    """A case's set-up for what runs inside, undone afterwards whatever happened."""
    setup, undo = setup_undo
    if setup:
        setup()
    try:
        yield
    finally:
        if undo:
            undo()


def shown(message, words):
    return (message if len(message) < 400 else '...' + message[message.find(words[0]) - 150:][:400]).strip()


def problems(outcome, words):
    """What is wrong with a case's (failed, message, changed): [] when it was refused clearly, changing nothing."""
    failed, message, changed = outcome
    found = [] if failed else ['accepted: %s' % message[-2000:]]
    found += ['message lacks %r: %s' % (word, message[-3000:]) for word in words if word not in message]
    return found + (['changed=true'] if changed else [])


def differences(before, after):
    return [key for key in before if before[key] != after.get(key)]


OTHER_CASES = [case for case in CASES if not isinstance(case[1], module)]


@pytest.mark.parametrize('name, call, words, setup_undo', OTHER_CASES, ids=[case[0] for case in OTHER_CASES])
def test_bad_input_is_refused_clearly_and_changes_nothing(name, call, words, setup_undo, record):
    with prepared(setup_undo):
        before = fingerprint()
        outcome = call()
        after = fingerprint()
    record(message=shown(outcome[1], words))
    assert problems(outcome, words) == []
    assert after == before, differences(before, after)


# The module cases, one playbook per set-up they share: named by the set-up (a set-up of one case by the case).
SET_UPS = {id(NONE): 'nothing set up', id(BROKEN_1): 'serverid 1 broken in both views',
           id(BOTH_BROKEN): 'both nodes broken'}
MODULE_GROUPS = {}
for _case in CASES:
    if isinstance(_case[1], module):
        MODULE_GROUPS.setdefault(SET_UPS.get(id(_case[3]), _case[0]), []).append(_case)


def row_name(name):
    """A module case's row in the report: named as when each case was a test of its own."""
    return 'test_bad_input_is_refused_clearly_and_changes_nothing[%s]' % name


def run_as_one_playbook(cases):
    """Each case a task of one playbook on the pair; {case name: its module's result}."""
    results = sandbox.modules([(case[1].name, case[1].host, case[1].args) for case in cases])
    return dict((case[0], result) for case, result in zip(cases, results))


@pytest.mark.parametrize('set_up', sorted(MODULE_GROUPS))
def test_bad_module_input_is_refused_clearly_and_changes_nothing(set_up, record):
    """As the case above, for every module case of one set-up at once; a row per case in the report."""
    cases = MODULE_GROUPS[set_up]
    # Until each case's result is known, its row says it failed: a batch that fails before its results do
    # (its set-up, the playbook) leaves no row of an earlier run passed.
    record(subcases=[dict(case=row_name(name), outcome='failed', facts=dict(failure='no result: the batch failed'))
                     for name, _call, _words, _setup_undo in cases])
    with prepared(cases[0][3]):
        before = fingerprint()
        results = run_as_one_playbook(cases)
        after = fingerprint()
    wrong, subcases = {}, []
    for name, _call, words, _setup_undo in cases:
        try:
            outcome = module.outcome(results[name])
            wrong[name] = problems(outcome, words)
            message = shown(outcome[1], words)
        except AssertionError as unhandled_error:
            wrong[name], message = ['unhandled: %s' % unhandled_error], ''
        facts = dict(message=message, failure='; '.join(wrong[name])[:300]) if wrong[name] else dict(message=message)
        subcases.append(dict(case=row_name(name), outcome='failed' if wrong[name] else 'passed', facts=facts))
    record(subcases=subcases)
    assert dict((name, found) for name, found in wrong.items() if found) == {}
    if after != before:
        # Which case changed it: each again on its own, with the state as it is now.
        changed_by = []
        for name, call, _words, setup_undo in cases:
            with prepared(setup_undo):
                alone = fingerprint()
                call()
                if fingerprint() != alone:
                    changed_by.append(name)
        assert after == before, dict(changed=differences(before, after), by=changed_by)


BAD_ROLE_VARIABLES = [('recover.yml', dict(mode='sideways')), ('provision.yml', dict(forest_node_port='abc'))]


@pytest.mark.parametrize('name, extra_vars', BAD_ROLE_VARIABLES)
def test_a_bad_variable_to_a_role_is_one_line_not_its_argument_spec(name, extra_vars, record, monkeypatch):
    monkeypatch.delenv('ANSIBLE_DISPLAY_TRACEBACK')  # what a DBA sees by default
    done = sandbox.playbook(name, extra_vars=extra_vars)
    record(output_bytes=len(done.stdout))
    assert done.returncode != 0
    assert 'argument_spec_data' not in done.stdout and 'validate_args_context' not in done.stdout
    assert len(done.stdout) < 3000, done.stdout


def test_two_recoveries_at_once_one_refuses(record):
    """Two offline recoveries of the same pair started together: one repairs, the other is refused by the lock."""
    sandbox.reset_pair()
    sandbox.on(1, "UPDATE catalogue_orders SET item = 'drifted' WHERE id <= 200")
    sandbox.set_views({1: -1}, {1: -1})
    results = []
    starters = [threading.Thread(target=lambda: results.append(sandbox.module('forest_recover', mode='offline'))) for _attempt in range(2)]
    for thread in starters:
        thread.start()
    for thread in starters:
        thread.join()
    repaired = [r for r in results if not r.get('failed') and r['changed']]
    # The other one is refused by the lock, or (started after the first finished) finds the pair healthy: ok.
    refused = [r for r in results if r.get('failed')]
    healthy = [r for r in results if not r.get('failed') and not r['changed']]
    record(messages=[r.get('msg') for r in refused + healthy])
    assert len(repaired) == 1 and len(refused + healthy) == 1, results
    assert not healthy or healthy[0]['msg'].startswith('Nothing to recover: the pair is healthy')
    if refused:
        assert 'another recovery of this pair is running' in refused[0]['msg'], refused[0]['msg']
    assert sandbox.module('forest_dbsync')['equal'] is True
    sandbox.reset_pair()


def test_a_held_recovery_lock_refuses_a_second_recovery(record):
    """The lock a running recovery holds (taken here by the test) makes another refuse, changing nothing."""
    sandbox.set_views({1: -1}, {1: -1})
    holder = sandbox.connect(0, sandbox.MNGDB)
    try:
        holder.execute("SELECT pg_advisory_lock(hashtext('pgforest.cluster recovery'))")
        before = fingerprint()
        result = sandbox.module('forest_recover', mode='offline')
        assert fingerprint() == before
    finally:
        holder.close()
        sandbox.reset_pair()
    record(message=result.get('msg'))
    assert result.get('failed') and 'another recovery of this pair is running' in result['msg']


# --- one-line refusals on every host of the pair (issue 26) -------------------------------------------------
FATAL = re.compile(r'^fatal: \[(forest\d)\]: FAILED! => (\{.*\})$', re.M)


def refusals(output):
    """{host: msg} of the play's failures, one per host (ansible's `fatal: [host]: FAILED! => {...}` lines)."""
    found = {}
    for host, result in FATAL.findall(output):
        assert host not in found, 'two failures on %s: %s' % (host, output[-3000:])
        found[host] = json.loads(result)['msg']
    return found


def assert_refused_on_every_host(done, words):
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert not unhandled(output) and 'Error while evaluating' not in output, output[-3000:]
    found = refusals(done.stdout)
    assert sorted(found) == ['forest0', 'forest1'], output[-3000:]
    for message in found.values():
        assert '\n' not in message, message
        for word in words:
            assert word in message, 'message lacks %r: %s' % (word, message)
    assert 'changed=0' in done.stdout.split('PLAY RECAP')[-1].split('forest1')[0]
    return found['forest0']


NOT_A_BACKUP = os.path.join(sandbox.SANDBOX, 'not-a-backup')
NAMED_LIKE_ONE = os.path.join(sandbox.SANDBOX, 'forest-logical-20260101T000000Z')


@pytest.mark.parametrize('given, words', [
    ('/etc/passwd', ['backup /etc/passwd is a file, not a backup']),
    ('/nonexistent/forest-logical-20260101T000000Z', ['/nonexistent/forest-logical-20260101T000000Z does not exist']),
    (NOT_A_BACKUP, [NOT_A_BACKUP + ' is not named like a backup']),
    (NAMED_LIKE_ONE, ['is not a readable backup manifest']),
], ids=['a file', 'a missing path', 'a directory that is not a backup', 'a directory named like one, empty'])
def test_a_bad_backup_to_restore_is_one_line_on_every_host_and_changes_nothing(given, words, record):
    for folder in (NOT_A_BACKUP, NAMED_LIKE_ONE):
        os.makedirs(folder, exist_ok=True)
    try:
        before = fingerprint()
        for confirmed in (False, True):
            done = sandbox.playbook('restore.yml', extra_vars=dict(backup=given, confirm_restore=confirmed))
            message = assert_refused_on_every_host(done, words)
        assert fingerprint() == before
    finally:
        for folder in (NOT_A_BACKUP, NAMED_LIKE_ONE):
            os.rmdir(folder)
    record(message=message)


USERDB_REFUSED = ['is not a user database of pair forest; its user databases are userdb', 'Nothing was changed']


@pytest.mark.parametrize('name, extra_vars', [
    ('dbsync.yml', {}),
    ('dbsync.yml', dict(mode='sync', source=0)),
    ('backup.yml', {}),
    ('config.yml', dict(key='mngdb_read_duration', value='5')),
    ('restore.yml', dict(confirm_restore=True)),
    ('recover.yml', dict(mode='offline')),
    ('recover.yml', {}),
], ids=['dbsync', 'dbsync sync', 'backup', 'config', 'restore', 'recover offline', 'recover online'])
def test_a_userdb_that_is_not_the_pairs_is_one_line_on_every_host(name, extra_vars, record):
    with prepared(BROKEN_1 if name == 'recover.yml' else NONE):
        before = fingerprint()
        done = sandbox.playbook(name, extra_vars=dict(extra_vars, userdb='userdb; drop table catalogue_orders'))
        message = assert_refused_on_every_host(done, ['userdb "userdb; drop table catalogue_orders"'] + USERDB_REFUSED)
        assert fingerprint() == before
    record(message=message)


@pytest.mark.parametrize('userdb, shown', [
    ("it's", 'userdb "it\'s"'),
    ('user.db', 'userdb "user.db"'),
    ('userdb"; --', 'userdb "userdb"; --"'),
    ('ünïcødé', 'userdb "ünïcødé"'),
    ('', 'userdb ""'),
    ('USERDB', 'userdb "USERDB"'),
    (42, 'userdb "42"'),
    (['userdb', 'other'], 'userdb "other"'),
    ('tab\there', 'userdb "tab\\x09here"'),
], ids=['quote', 'dot', 'double quote', 'non-ASCII', 'empty', 'case', 'a number', 'a list', 'control character'])
def test_an_odd_userdb_is_refused_cleanly(userdb, shown, record):
    before = fingerprint()
    done = sandbox.playbook('dbsync.yml', extra_vars=dict(userdb=userdb))
    message = assert_refused_on_every_host(done, [shown] + USERDB_REFUSED)
    assert fingerprint() == before
    record(message=message)
