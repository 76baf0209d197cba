"""forest_backup / forest_restore and playbooks/backup.yml, restore.yml against the sandbox pair."""
import json
import os
import shutil

import pytest

from pgforest_dev import sandbox

SCHEMA = 'Backup Tëst'
BACKUPS = os.path.join(sandbox.SANDBOX, 'test-backups')
ORDERS = '"%s".orders' % SCHEMA
both, on = sandbox.both, sandbox.on


@pytest.fixture(autouse=True)
def pair_with_data():
    """Both nodes valid and equal: 3000 orders, a sequence at 3000, an empty backup directory."""
    sandbox.reset_pair()
    shutil.rmtree(BACKUPS, ignore_errors=True)
    both('DROP SCHEMA IF EXISTS "{s}" CASCADE; CREATE SCHEMA "{s}";'
         'CREATE TABLE "{s}".orders (id serial PRIMARY KEY, item text, qty int);'
         'CREATE TABLE "{s}".notes (note text);'
         'INSERT INTO "{s}".orders (item, qty) SELECT $$item$$ || g, g FROM generate_series(1, 3000) g;'
         'INSERT INTO "{s}".notes VALUES ($$one$$), ($$two$$)'.format(s=SCHEMA))
    both(DROP_LARGE_OBJECT + "; SELECT lo_from_bytea(424260, 'backed up')")
    yield
    for serverid in sandbox.NODES:
        sandbox.ensure_running(serverid)
        for name in ('pgforest_restore_userdb', 'pgforest_restore_mngdb'):
            sandbox.query(serverid, 'DROP DATABASE IF EXISTS %s' % name)
    sandbox.reset_pair()
    both('DROP SCHEMA IF EXISTS "%s" CASCADE' % SCHEMA)
    both(DROP_LARGE_OBJECT)
    shutil.rmtree(BACKUPS, ignore_errors=True)


DROP_LARGE_OBJECT = 'SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE oid::int8 = 424260'


def large_object(serverid):
    return sandbox.query(serverid, 'SELECT lo_get(oid) FROM pg_largeobject_metadata WHERE oid::int8 = 424260',
                         dbname=sandbox.USERDB)


def backup(**args):
    args.setdefault('backup_dir', BACKUPS)
    return sandbox.module('forest_backup', **args)


def restore(**args):
    args.setdefault('backup_dir', BACKUPS)
    return sandbox.module('forest_restore', timeout=300, **args)


def manifest(path):
    with open(os.path.join(path, 'manifest.json')) as handle:
        return json.load(handle)


def orders(serverid):
    return sandbox.query(serverid, 'SELECT count(*), sum(qty) FROM %s' % ORDERS, dbname=sandbox.USERDB)[0]


def marker_survives():
    """A row written after the backup: still there means nothing was restored."""
    return [orders(0), orders(1)] == [(3001, 4501500 + 7)] * 2


def write_marker():
    both("INSERT INTO %s (item, qty) VALUES ('after the backup', 7)" % ORDERS)


def leftover_databases():
    return [row[0] for serverid in sandbox.NODES for row in sandbox.query(
        serverid, "SELECT datname FROM pg_database WHERE datname LIKE 'pgforest%'")]


def test_backup_damage_both_nodes_restore_with_the_playbooks():
    done = sandbox.playbook('backup.yml', extra_vars=dict(forest_backup_dir=BACKUPS))
    assert done.returncode == 0, done.stdout + done.stderr
    [name] = os.listdir(BACKUPS)
    taken = manifest(os.path.join(BACKUPS, name))
    assert (taken['kind'], taken['source']['serverid'], taken['source']['validity']) == ('logical', 0, 1)
    assert taken['databases']['userdb']['tables']['"%s".orders' % SCHEMA] == 3000
    assert taken['databases']['mngdb']['tables']['public.server_info'] == 2
    assert taken['server_version'] // 10000 == 15 and taken['total_bytes'] > 0
    assert all(len(f['sha256']) == 64 for f in taken['files'].values())
    assert any(path.startswith('userdb/') for path in taken['files'])

    on(0, 'DROP TABLE %s' % ORDERS)
    both(DROP_LARGE_OBJECT)
    on(1, 'DELETE FROM %s WHERE id %% 3 = 0' % ORDERS)
    on(1, 'SELECT setval(\'"%s".orders_id_seq\', 5)' % SCHEMA)
    sandbox.set_views({0: -1, 1: -1}, {0: -1, 1: -1})
    assert sandbox.module('forest_status')['cluster_state'] == 'down'

    done = sandbox.playbook('restore.yml', extra_vars=dict(forest_backup_dir=BACKUPS, confirm_restore=True))
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'restored: the pair is healthy, the user databases are equal' in done.stdout
    status, compared = sandbox.modules([('forest_status', 'forest0', {}),
                                        ('forest_dbsync', 'forest0', dict(include=[SCHEMA + '.*']))])
    assert status['cluster_state'] == 'healthy' and compared['equal'] is True
    for serverid in sandbox.NODES:
        assert orders(serverid) == (3000, 4501500)
        assert large_object(serverid) == [(b'backed up',)]
        assert sandbox.query(serverid, 'SELECT last_value FROM "%s".orders_id_seq' % SCHEMA,
                             dbname=sandbox.USERDB) == [(3000,)]
    assert leftover_databases() == []


def test_a_broken_node_is_never_backed_up_by_accident():
    sandbox.set_views({0: -1}, {0: -1})
    refused = backup(source=0)
    assert refused.get('failed') and 'serverid 0 is broken' in refused['msg'], refused
    assert 'serverid 1 is valid' in refused['msg']
    assert not os.path.exists(BACKUPS)
    taken = backup()
    assert not taken.get('failed'), taken.get('msg')
    assert taken['source'] == 1
    sandbox.set_views({0: -1, 1: -1}, {0: -1, 1: -1})
    refused = backup(name='forest-logical-20260101T000000Z')
    assert refused.get('failed') and 'no node is valid' in refused['msg'], refused
    kept = backup(source=0, allow_invalid_source=True, name='forest-logical-20260101T000001Z')
    assert not kept.get('failed'), kept.get('msg')
    assert manifest(kept['backup'])['source'] == dict(serverid=0, host='127.0.0.11', port=5432, validity=-1)
    assert sorted(os.listdir(BACKUPS)) == ['forest-logical-20260101T000001Z', os.path.basename(taken['backup'])]


def test_a_corrupted_backup_is_refused_before_anything_is_dropped():
    taken = backup()
    write_marker()
    data = sorted(p for p in manifest(taken['backup'])['files'] if p.startswith('userdb/') and p.endswith('.gz'))
    path = os.path.join(taken['backup'], data[-1])
    with open(path, 'r+b') as handle:
        first = handle.read(1)
        handle.seek(0)
        handle.write(bytes([first[0] ^ 0xff]))
    refused = restore(confirm=True)
    assert refused.get('failed') and 'is damaged, nothing was changed' in refused['msg'], refused
    assert data[-1] + ' does not match its SHA-256' in refused['msg']
    done = sandbox.playbook('restore.yml', extra_vars=dict(forest_backup_dir=BACKUPS, confirm_restore=True))
    assert done.returncode != 0 and 'is damaged' in done.stdout
    assert marker_survives() and leftover_databases() == []


def test_a_restore_without_confirmation_changes_nothing():
    backup()
    write_marker()
    refused = restore()
    assert refused.get('failed') and 'confirm=true' in refused['msg'], refused
    done = sandbox.playbook('restore.yml', extra_vars=dict(forest_backup_dir=BACKUPS))
    assert done.returncode != 0 and '-e confirm_restore=true' in done.stdout
    assert sandbox.recap(done.stdout)['forest0']['changed'] == 0
    planned = restore(check=True)
    assert (planned['changed'], planned['kind'], planned['restored']) == (True, 'logical', [0, 1])  # would change
    assert marker_survives() and leftover_databases() == []


def test_a_restore_is_refused_while_applications_are_connected():
    backup()
    write_marker()
    with sandbox.connect(1, sandbox.USERDB, application_name='billing') as app:
        refused = restore(confirm=True)
        pid = app.info.backend_pid
    assert refused.get('failed') and 'pid %d' % pid in refused['msg'] and 'billing' in refused['msg'], refused
    assert marker_survives()


def test_a_restore_that_fails_after_loading_leaves_the_pair_as_it_was():
    """Row counts that do not match (here: a manifest edited by hand) stop the restore before the swap."""
    taken = backup()
    write_marker()
    edited = manifest(taken['backup'])
    edited['databases']['userdb']['tables']['"%s".notes' % SCHEMA] = 5
    with open(os.path.join(taken['backup'], 'manifest.json'), 'w') as handle:
        json.dump(edited, handle)
    refused = restore(confirm=True)
    assert refused.get('failed') and 'do not have the backup\'s row counts, nothing was changed' in refused['msg']
    assert '"%s".notes has 2 rows, the backup 5' % SCHEMA in refused['msg']
    assert marker_survives() and leftover_databases() == []
    assert sandbox.module('forest_status')['cluster_state'] == 'healthy'


def test_a_restore_needs_the_roles_of_the_backup():
    sandbox.query(0, 'DROP ROLE IF EXISTS "report Owner"')
    sandbox.query(0, 'CREATE ROLE "report Owner"')  # roles are per server: only on serverid 0
    try:
        on(0, 'ALTER TABLE "%s".notes OWNER TO "report Owner"' % SCHEMA)
        backup()
        write_marker()
        on(0, 'ALTER TABLE "%s".notes OWNER TO postgres' % SCHEMA)
        refused = restore(confirm=True)
    finally:
        sandbox.query(0, 'DROP ROLE IF EXISTS "report Owner"')
    assert refused.get('failed') and 'serverid 1 lacks the roles "report Owner" that' in refused['msg'], refused
    assert marker_survives()


def test_retention_keeps_the_newest_backups():
    os.makedirs(os.path.join(BACKUPS, 'notes'))
    names = ['forest-logical-20260101T00000%dZ' % i for i in range(3)]
    for name in names:
        taken = backup(name=name, keep=2)
        assert not taken.get('failed'), taken.get('msg')
    assert taken['removed'] == [names[0]]
    assert sorted(os.listdir(BACKUPS)) == names[1:] + ['notes']
    bad = backup(name='nightly', keep=2)
    assert bad.get('failed') and 'forest-logical-YYYYmmddTHHMMSSZ' in bad['msg']


def test_check_mode_writes_nothing():
    planned = backup(check=True)
    assert not planned.get('failed') and planned['source'] == 0 and planned['changed'] is True  # would change
    assert not os.path.exists(BACKUPS)


def test_physical_backup_and_restore_with_the_playbooks():
    done = sandbox.playbook('backup.yml', extra_vars=dict(forest_backup_dir=BACKUPS, kind='physical'))
    assert done.returncode == 0, done.stdout + done.stderr
    [name] = os.listdir(BACKUPS)
    for serverid in sandbox.NODES:
        part = manifest(os.path.join(BACKUPS, name, 'serverid-%d' % serverid))
        assert (part['kind'], part['node']['serverid']) == ('physical', serverid)
        assert part['databases']['userdb']['tables']['"%s".orders' % SCHEMA] == 3000
        assert 'data/PG_VERSION' in part['files'] and 'data/postmaster.pid' not in part['files']
    on(0, 'DELETE FROM %s' % ORDERS)
    both(DROP_LARGE_OBJECT)
    on(1, "INSERT INTO %s (item, qty) VALUES ('lost', 1)" % ORDERS)
    sandbox.set_views({0: -1, 1: -1}, {0: -1, 1: -1})

    done = sandbox.playbook('restore.yml', extra_vars=dict(forest_backup_dir=BACKUPS, confirm_restore=True))
    assert done.returncode == 0, done.stdout + done.stderr
    assert sandbox.module('forest_status')['cluster_state'] == 'healthy'
    assert [orders(0), orders(1)] == [(3000, 4501500)] * 2
    assert [large_object(0), large_object(1)] == [[(b'backed up',)]] * 2
    for serverid in sandbox.NODES:
        data = sandbox.data_dir(serverid)
        assert os.stat(data).st_uid == os.stat(os.path.join(data, 'PG_VERSION')).st_uid != 0
        assert not os.path.exists(data + '.pgforest-replaced')
        assert not os.path.exists(data + '.pgforest-restoring')


def test_physical_backup_is_refused_while_applications_are_connected():
    pid_before = sandbox.postmaster_pid(1)
    with sandbox.connect(1, sandbox.USERDB, application_name='billing'):
        done = sandbox.playbook('backup.yml', extra_vars=dict(forest_backup_dir=BACKUPS, kind='physical'))
    assert done.returncode != 0 and 'these sessions are connected' in done.stdout
    assert sandbox.postmaster_pid(1) == pid_before  # never stopped
    assert not any('serverid-1' == entry for _root, dirs, _files in os.walk(BACKUPS) for entry in dirs)


def test_physical_restore_refuses_the_other_nodes_part():
    taken = sandbox.playbook('backup.yml', extra_vars=dict(forest_backup_dir=BACKUPS, kind='physical'))
    assert taken.returncode == 0, taken.stdout
    write_marker()
    refused = restore(confirm=True, serverid=1, data_dir=sandbox.data_dir(1))  # run on forest0: 127.0.0.11
    assert refused.get('failed') and 'restore it on its own node' in refused['msg'], refused
    assert marker_survives()


def test_bad_input_is_refused_clearly():
    missing = restore(backup='/nonexistent/forest-logical-20260101T000000Z', confirm=True)
    assert missing.get('failed') and 'does not exist' in missing['msg']
    wrong_kind = backup(kind='physical', source=0, data_dir=sandbox.data_dir(0))
    assert wrong_kind.get('failed') and 'source is for kind=logical' in wrong_kind['msg']
    assert leftover_databases() == []


def test_the_node_server_comes_from_the_inventory_unless_the_task_names_it():
    """No data_dir, os_user, service_manager or service_name given: the action plugin takes the host's
    (forest_node_base_dir of the sandbox inventory over the rule); one given wins over the inventory's."""
    taken = backup(kind='physical')
    assert not taken.get('failed'), taken.get('msg')
    assert any('(%s)' % sandbox.data_dir(0) in line for line in taken['progress']), taken['progress']
    servers = [sandbox.postmaster_pid(serverid) for serverid in sandbox.NODES]
    own_user = backup(kind='physical', os_user='pgforest-no-such-user')
    assert own_user.get('failed') and "'pgforest-no-such-user' does not exist" in own_user['msg'], own_user
    own_dir = backup(kind='physical', data_dir=os.path.join(sandbox.SANDBOX, 'no-such-node', 'data'))
    assert own_dir.get('failed') and 'no-such-node' in own_dir['msg'], own_dir
    assert [sandbox.postmaster_pid(serverid) for serverid in sandbox.NODES] == servers


def test_a_physical_backup_host_decides_on_its_own_status_read(tmp_path):
    """The first host cannot run the status module (here: no Python there): the other host reads the pair's
    status itself and backs up its node. It read the first host's registered status, which then held no
    state: a template error, not a decision."""
    import yaml
    with open(sandbox.INVENTORY) as handle:
        inventory = yaml.safe_load(handle)
    inventory['forest']['vars']['forest_sandbox_dir'] = sandbox.SANDBOX
    inventory['forest']['hosts']['forest0']['ansible_python_interpreter'] = '/nonexistent/python3'
    path = tmp_path / 'inventory.yml'
    path.write_text(yaml.safe_dump(inventory))
    done = sandbox.playbook('backup.yml', extra_vars=dict(forest_backup_dir=BACKUPS, kind='physical'),
                            inventory=str(path))
    recap = sandbox.recap(done.stdout)
    assert done.returncode != 0 and recap['forest0']['failed'] == 1, done.stdout[-3000:]
    assert recap['forest1']['failed'] == 0 and 'has no attribute' not in done.stdout, done.stdout[-3000:]
    [name] = os.listdir(BACKUPS)
    assert os.listdir(os.path.join(BACKUPS, name)) == ['serverid-1']


def test_a_physical_restore_without_confirmation_changes_neither_node():
    """The leader refuses without -e confirm_restore=true, and so does the other host: it must not restore its
    own part of the physical backup on its own (it did: the refusal ran on the leader only)."""
    taken = sandbox.playbook('backup.yml', extra_vars=dict(forest_backup_dir=BACKUPS, kind='physical'))
    assert taken.returncode == 0, taken.stdout[-3000:]
    write_marker()
    servers = [sandbox.postmaster_pid(serverid) for serverid in sandbox.NODES]
    done = sandbox.playbook('restore.yml', extra_vars=dict(forest_backup_dir=BACKUPS, kind='physical'))
    assert done.returncode != 0, done.stdout[-3000:]
    refused = [line for line in done.stdout.splitlines() if line.startswith('fatal: [forest')]
    assert len(refused) == 2 and all('-e confirm_restore=true' in line for line in refused), done.stdout[-3000:]
    assert [sandbox.recap(done.stdout)[host]['changed'] for host in ('forest0', 'forest1')] == [0, 0]
    assert marker_survives() and [sandbox.postmaster_pid(serverid) for serverid in sandbox.NODES] == servers


def mark_broken_after_the_restore(stop, marked):
    """A driver that marks serverid 1 broken right after the restore: once the restore's working databases
    (pgforest_restore_*, pgforest_replaced_*) came and went on serverid 0, a broken_log row and -1 in both views."""
    import time
    seen = False
    while not stop.is_set():
        working = sandbox.query(0, "SELECT count(*) FROM pg_database WHERE datname LIKE 'pgforest\\_re%'")[0][0]
        seen = seen or working > 0
        if seen and not working:
            for serverid in sandbox.NODES:
                with sandbox.connect(serverid, sandbox.MNGDB, application_name='pgforest.cluster') as conn:
                    conn.execute("INSERT INTO broken_log_detail (serverid, client, api_task, err_msg, err_state) "
                                 "VALUES (1, 'batch-host-2', 'commit', 'server closed the connection unexpectedly', "
                                 "'08006')")
                    conn.execute('UPDATE server_info SET udb_validity = -1 WHERE serverid = 1')
            marked.append(True)
            return
        time.sleep(0.02)


def test_restore_playbook_fails_when_a_node_is_marked_broken_right_after():
    import threading
    backup()
    stop, marked = threading.Event(), []
    watcher = threading.Thread(target=mark_broken_after_the_restore, args=(stop, marked), daemon=True)
    watcher.start()
    try:
        done = sandbox.playbook('restore.yml', extra_vars=dict(forest_backup_dir=BACKUPS, confirm_restore=True))
    finally:
        stop.set()
        watcher.join(10)
    assert marked, done.stdout[-3000:]
    assert done.returncode != 0, done.stdout[-3000:]
    [failure] = [line for line in done.stdout.splitlines() if line.startswith('fatal: [forest0]')]
    for words in ('After the restore of pair forest the pair is not healthy: degraded', 'serverid 1 is marked -1',
                  'by client batch-host-2', 'server closed the connection unexpectedly (SQLSTATE 08006)'):
        assert words in failure, failure


def test_a_physical_backup_of_another_major_is_refused_before_anything_changes():
    """A physical copy runs only on the major it was taken from. The backup's manifest says it is of another
    major (edited here, as a node moved to a new major would meet an old backup): the restore refuses before
    anything changes, and says what to do instead."""
    taken = backup(kind='physical')
    assert not taken.get('failed'), taken.get('msg')
    found = manifest(taken['backup'])
    major = found['server_version'] // 10000
    found['server_version'] = (major + 2) * 10000 + 1
    with open(os.path.join(taken['backup'], 'manifest.json'), 'w') as handle:
        json.dump(found, handle)
    write_marker()
    servers = [sandbox.postmaster_pid(serverid) for serverid in sandbox.NODES]
    refused = restore(confirm=True, serverid=0, data_dir=sandbox.data_dir(0))
    assert refused.get('failed'), refused
    assert ("the physical backup of serverid 0 is PostgreSQL %d, but the node's data directory here is PostgreSQL %d"
            % (major + 2, major)) in refused['msg'] and 'kind=logical' in refused['msg'], refused['msg']
    assert marker_survives() and [sandbox.postmaster_pid(serverid) for serverid in sandbox.NODES] == servers
