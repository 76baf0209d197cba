"""What the benchmarks share: libpq environment, psql, pgbench data, the bench database
(benchdb) and its clean-up, a timed forest_dbsync run and the result table."""
import os
import subprocess
import time

from pgforest_dev import sandbox

PGBENCH_TABLES = 'pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history'


def env():
    return dict(os.environ, PGPASSWORD=sandbox.password(), PGUSER='postgres', PGCONNECT_TIMEOUT='5')


def host_args(serverid):
    return ['-h', sandbox.NODES[serverid]['host'], '-p', str(sandbox.NODES[serverid]['port'])]


def fill(scale, serverid=0):
    """pgbench tables in the user database of serverid (without the vacuum step, for speed)."""
    started = time.monotonic()
    subprocess.run([sandbox.PG_BIN + '/pgbench', '-i', '-q', '-I', 'dtgp', '-s', str(scale), *host_args(serverid),
                    sandbox.USERDB], env=env(), check=True, capture_output=True)
    size = sandbox.query(serverid, 'SELECT pg_database_size(current_database())', dbname=sandbox.USERDB)[0][0]
    print('  filled serverid %d: pgbench scale %d, user database %.0f MB (%.0fs)'
          % (serverid, scale, size / 2 ** 20, time.monotonic() - started), flush=True)
    return size


DB = 'benchdb'


def psql(serverid, dbname, sql):
    out = subprocess.run([sandbox.PG_BIN + '/psql', '-XAtq', *host_args(serverid), '-d', dbname, '-c', sql],
                         env=env(), check=True, capture_output=True, text=True)
    return out.stdout.strip()


def recreate(serverid):
    psql(serverid, 'postgres', 'DROP DATABASE IF EXISTS %s WITH (FORCE)' % DB)
    psql(serverid, 'postgres', 'CREATE DATABASE %s' % DB)


def pgbench_pair(scale):
    """benchdb afresh on both nodes: pgbench tables at `scale`, and its management database listing both."""
    for serverid in (0, 1):
        recreate(serverid)
    procs = [subprocess.Popen([sandbox.PG_BIN + '/pgbench', '-i', '-q', '-s', str(scale), *host_args(serverid), DB],
                              env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for serverid in (0, 1)]
    if any(proc.wait() for proc in procs):
        raise SystemExit('pgbench -i failed')
    for name in ('forest0', 'forest1'):
        result = sandbox.module('forest_mngdb', host=name, userdb=DB,
                                servers=['127.0.0.11:5432', '127.0.0.12:5432'])
        if result.get('failed'):
            raise SystemExit(result['msg'])


def dbsync(**args):
    started = time.monotonic()
    result = sandbox.module('forest_dbsync', userdb=DB, timeout=3600, **args)
    wall = time.monotonic() - started
    if result.get('failed'):
        raise SystemExit('forest_dbsync failed: %s' % result['msg'])
    return result, wall


def timed(function, *args, **kwargs):
    started = time.monotonic()
    value = function(*args, **kwargs)
    return time.monotonic() - started, value


def print_table(lines, baseline):
    """One row per (task, baseline, its seconds, note, forest_dbsync, module s, wall s, note); ratio = module/baseline."""
    print('%-10s %-28s %9s  %-30s %-24s %9s %9s %7s  %s' % (
        'task', baseline, 'seconds', '', 'forest_dbsync', 'module s', 'wall s', 'ratio', ''))
    for task, baseline_name, baseline_s, baseline_note, ours, ours_s, wall, note in lines:
        print('%-10s %-28s %9.2f  %-30s %-24s %9.2f %9.2f %6.2fx  %s' % (
            task, baseline_name, baseline_s, baseline_note, ours, ours_s, wall, ours_s / baseline_s, note))


def drop_databases():
    """The bench database and its management database, on both nodes."""
    for serverid in (0, 1):
        psql(serverid, 'postgres', 'DROP DATABASE IF EXISTS %s WITH (FORCE)' % DB)
        psql(serverid, 'postgres', 'DROP DATABASE IF EXISTS %s_pghainfo WITH (FORCE)' % DB)


def dump_restore(schema_only_target=False):
    """drop + pg_dump | psql onto serverid 1; returns bytes of the dump."""
    recreate(1)
    dump = subprocess.Popen([sandbox.PG_BIN + '/pg_dump', *host_args(0), DB] + (['--schema-only'] if schema_only_target else []),
                            env=env(), stdout=subprocess.PIPE)
    load = subprocess.Popen([sandbox.PG_BIN + '/psql', '-Xq', '-v', 'ON_ERROR_STOP=1', *host_args(1), '-d', DB],
                            env=env(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    size = 0
    for chunk in iter(lambda: dump.stdout.read(1 << 16), b''):
        size += len(chunk)
        load.stdin.write(chunk)
    load.stdin.close()
    if dump.wait() or load.wait():
        raise SystemExit('pg_dump | psql failed')
    return size


def user_tables(serverid, dbname, keyed_only=False):
    """schema.table of every ordinary table ([with its primary key column list] if keyed_only)."""
    rows = psql(serverid, dbname, """
        SELECT format('%I.%I', n.nspname, c.relname) || coalesce('?' || (
                 SELECT string_agg(a.attname, ',' ORDER BY k.ord) FROM pg_index i
                 CROSS JOIN unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                 WHERE i.indrelid = c.oid AND i.indisprimary), '')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        ORDER BY 1""")
    tables = [line for line in rows.splitlines() if line]
    return [t for t in tables if '?' in t] if keyed_only else [t.split('?')[0] for t in tables]


def hash_floor(dbname):
    """The floor of any content compare: bit_xor(hash_record_extended(row, 0)) over every table,
    on both nodes at once (one session each, as the compare has); seconds."""
    query = ' UNION ALL '.join("SELECT bit_xor(hash_record_extended(t, 0)) FROM %s t" % table
                               for table in user_tables(0, dbname))
    started = time.monotonic()
    procs = [subprocess.Popen([sandbox.PG_BIN + '/psql', '-XAtq', *host_args(serverid), '-d', dbname, '-c', query],
                              env=env(), stdout=subprocess.DEVNULL) for serverid in (0, 1)]
    if any(proc.wait() for proc in procs):
        raise SystemExit('the floor query failed')
    return time.monotonic() - started


def ensure_pg_comparator():
    """pg_comparator and its server extension (pgcmp), from the Debian package, in dbname on both nodes."""
    if not os.path.exists('/usr/bin/pg_comparator'):
        subprocess.run(['apt-get', 'install', '-y', '-q', 'postgresql-comparator'], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND='noninteractive'), capture_output=True)


def pg_comparator(dbname):
    """pg_comparator (its fast C checksums, extension pgcmp) over every table with a primary key,
    one table after the other as it works; (seconds, differences it reported)."""
    ensure_pg_comparator()
    for serverid in (0, 1):
        psql(serverid, dbname, 'CREATE EXTENSION IF NOT EXISTS pgcmp')
    differences = 0
    started = time.monotonic()
    for table in user_tables(0, dbname, keyed_only=True):
        name, key = table.split('?')
        urls = ['pgsql://postgres@%s:%s/%s/%s?%s' % (node['host'], node['port'], dbname, name, key)
                for node in (sandbox.NODES[0], sandbox.NODES[1])]
        out = subprocess.run(['pg_comparator', '--stats=txt', *urls], env=env(), capture_output=True, text=True,
                             check=False)
        if out.returncode not in (0, 1):  # 1: differences found
            raise SystemExit('pg_comparator failed on %s: %s' % (name, out.stderr[-500:]))
        differences += sum(1 for line in out.stdout.splitlines() if line.startswith(('UPDATE ', 'INSERT ', 'DELETE ')))
    seconds = time.monotonic() - started
    for serverid in (0, 1):
        psql(serverid, dbname, 'DROP EXTENSION IF EXISTS pgcmp')
    return seconds, differences
