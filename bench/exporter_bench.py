"""pgforest-exporter and the controller-side status.yml over many pairs, against today's per-leader status.yml.

In a network namespace of its own (every loopback address free), as bench/status_pairs_bench.py:
  1. one pair provisioned by the role (playbooks/provision.yml), then, the fast path, its two stopped data
     directories copied for every other pair (pgforest_dev.pairs: pair<k> on 127.0.<k+1>.1/2), each copy
     listening on its own address with tiny settings (shared_buffers 128kB: 2N servers on one machine), and
     each pair's server_info set to its own addresses (the copies keep the identities the pair recorded);
  2. the exporter as a real process (module_utils/exporter.py) on the pairs' inventory as the forest_metrics
     role writes it: its first scrape (connections opened), then --scrapes more, each timed, with the
     exporter's CPU-seconds per scrape (/proc/<pid>/stat) and its memory (VmRSS, VmHWM);
  3. playbooks/status.yml over every pair (one controller-side read) and the baseline, today's per-leader
     playbook (bench/status_per_leader.yml: one forest_status task on every pair's leader), -f 2N;
  4. one hung node among the pairs: its postmaster SIGSTOPped (the kept connection's backend still
     answers), then its whole server (every process of it): a scrape returns within connect_timeout + 1 s.

    .venv/bin/python bench/exporter_bench.py [--pairs 100] [--scrapes 10] [--rounds 1] [--connect-timeout 3]

Goals (issue 29): 100 pairs scraped in <= 1 s and <= 0.5 CPU-seconds; status.yml over 100 pairs <= 10 s.
"""
import argparse
import concurrent.futures
import hashlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

from pgforest_dev.bench_namespace import run_inside_own_namespace

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TOP = '/var/lib/pgforest-sandbox'
TAG = hashlib.sha256(os.path.realpath(REPO).encode()).hexdigest()[:8]
NAMESPACE = 'pgf-%s-exporter' % TAG
SANDBOX_DIR = os.path.join(TOP, '%s-exporter-bench' % TAG)
BASELINE = os.path.join(HERE, 'status_per_leader.yml')
EXPORTER = 'ansible_collections.pgforest.cluster.plugins.module_utils.exporter'
# The copies are many on one machine: the least memory a server runs with, nothing in the background.
TINY = """
# exporter_bench: many servers on one machine
shared_buffers = '128kB'
max_connections = 20
max_wal_senders = 2
max_replication_slots = 2
autovacuum = off
"""
TICKS = os.sysconf('SC_CLK_TCK')


def make_pairs(pairs, count, inventory):
    """Pair 0 by the role; the others copies of its stopped data directories (the fast path)."""
    started = time.monotonic()
    one = pairs.write_inventory(1, os.path.join(SANDBOX_DIR, 'one.yml'), ('userdb',))
    provisioned = pairs.playbook('provision.yml', one, timeout=1800)
    if provisioned.returncode != 0:
        raise SystemExit('provision failed:\n' + provisioned.stdout[-3000:])
    print('pair0 provisioned by the role in %.0f s' % (time.monotonic() - started), flush=True)
    started = time.monotonic()
    for serverid in (0, 1):
        pairs.pg_ctl(0, serverid, 'stop', '-m', 'fast', '-w')
        with open(os.path.join(pairs.data_dir(0, serverid), 'forest.conf'), 'a') as handle:
            handle.write(TINY)

    def copy(pair, serverid):
        source, base = pairs.base_dir(0, serverid), pairs.base_dir(pair, serverid)
        subprocess.run(['cp', '-a', source, base], check=True)
        for name in ('postmaster.pid',):
            if os.path.exists(os.path.join(base, 'data', name)):
                os.remove(os.path.join(base, 'data', name))
        conf = os.path.join(base, 'data', 'forest.conf')
        with open(conf) as handle:
            text = handle.read()
        text = text.replace("'%s'" % pairs.address(0, serverid), "'%s'" % pairs.address(pair, serverid))
        text = text.replace(source + '/', base + '/')
        with open(conf, 'w') as handle:
            handle.write(text)

    def start(pair, serverid):
        log = os.path.join(pairs.base_dir(pair, serverid), 'postgresql.log')
        pairs.pg_ctl(pair, serverid, 'start', '-w', '-t', '300', '-l', log)

    servers = [(pair, serverid) for pair in range(count) for serverid in (0, 1)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda args: copy(*args), [server for server in servers if server[0] > 0]))
        list(pool.map(lambda args: start(*args), servers))

    def own_addresses(pair):
        for serverid in (0, 1):
            for sid in (0, 1):
                pairs.query(pair, serverid, 'UPDATE server_info SET udb_url = %s WHERE serverid = %s',
                            ['%s:5432/userdb' % pairs.address(pair, sid), sid], dbname='userdb_pghainfo')

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(own_addresses, range(1, count)))
    pairs.write_inventory(count, inventory, ('userdb',))
    print('%d more pairs copied and started in %.0f s (%d servers)' % (count - 1, time.monotonic() - started,
                                                                       2 * count), flush=True)


def exporter_inventory(pairs, count, path):
    """The pairs as the forest_metrics role writes them for the exporter."""
    import yaml
    from pgforest_dev import sandbox
    children = {}
    for pair in range(count):
        hosts = {}
        for serverid in (0, 1):
            hosts[pairs.host(pair, serverid)] = dict(
                forest_serverid=serverid, forest_pg_host=pairs.address(pair, serverid), forest_pg_port=5432,
                forest_peer_host=pairs.address(pair, 1 - serverid), forest_pg_user='postgres',
                forest_pg_password=sandbox.password(), forest_userdb='userdb')
        children['pair%d' % pair] = dict(vars=dict(forest_pair='pair%d' % pair), hosts=hosts)
    with open(path, 'w') as handle:
        yaml.safe_dump(dict(forest=dict(children=children)), handle)
    os.chmod(path, 0o600)
    return path


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as handle:
        fields = handle.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def memory_mb(pid):
    found = {}
    with open('/proc/%d/status' % pid) as handle:
        for line in handle:
            if line.startswith(('VmRSS:', 'VmHWM:')):
                found[line.split(':')[0]] = int(line.split()[1]) / 1024.0
    return found


def scrape(url):
    started = time.monotonic()
    with urllib.request.urlopen(url + '/metrics', timeout=120) as answer:
        text = answer.read().decode('utf-8')
    return time.monotonic() - started, text


def reachable(text, pair, serverid):
    line = 'pgforest_node_reachable{pair="pair%d",serverid="%d",userdb="userdb"}' % (pair, serverid)
    return [row.split()[-1] for row in text.splitlines() if row.startswith(line)]


def server_pids(pairs, pair, serverid):
    with open(os.path.join(pairs.data_dir(pair, serverid), 'postmaster.pid')) as handle:
        postmaster = int(handle.readline())
    children = subprocess.run(['pgrep', '-P', str(postmaster)], capture_output=True, text=True, check=False)
    return postmaster, [int(pid) for pid in children.stdout.split()]


def bench_exporter(pairs, count, scrapes, connect_timeout):
    path = exporter_inventory(pairs, count, os.path.join(SANDBOX_DIR, 'exporter.yml'))
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, 'collections'))
    log = open(os.path.join(SANDBOX_DIR, 'exporter.log'), 'w+')
    process = subprocess.Popen([sys.executable, '-m', EXPORTER, '--inventory', path, '--listen',
                                '127.0.0.1:%d' % port, '--connect-timeout', str(connect_timeout)],
                               env=env, stdout=subprocess.DEVNULL, stderr=log)
    url = 'http://127.0.0.1:%d' % port
    figures = {}
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise SystemExit('the exporter ended: ' + log.read())
            try:
                with urllib.request.urlopen(url + '/nothing', timeout=5):
                    pass
            except urllib.error.HTTPError:
                break  # it answers (404)
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit('the exporter does not answer')
                time.sleep(0.1)
        before = cpu_seconds(process.pid)
        figures['first'], text = scrape(url)
        figures['first_cpu'] = cpu_seconds(process.pid) - before
        unhealthy = [row for row in text.splitlines() if row.startswith('pgforest_database_healthy') and
                     not row.endswith(' 1')]
        if unhealthy or text.count('pgforest_database_healthy{') != count:
            raise SystemExit('not every pair is healthy at the first scrape: %s' % unhealthy[:5])
        walls, cpus = [], []
        for _scrape in range(scrapes):
            before = cpu_seconds(process.pid)
            wall, text = scrape(url)
            cpus.append(cpu_seconds(process.pid) - before)
            walls.append(wall)
        figures.update(wall=statistics.median(walls), wall_max=max(walls), cpu=statistics.mean(cpus),
                       **memory_mb(process.pid))
        # a hung node: first its postmaster only, then its whole server
        hung_pair = count // 2
        postmaster, children = server_pids(pairs, hung_pair, 1)
        try:
            os.kill(postmaster, signal.SIGSTOP)
            figures['hung_postmaster'], text = scrape(url)
            figures['hung_postmaster_reachable'] = reachable(text, hung_pair, 1)
            for pid in children:
                os.kill(pid, signal.SIGSTOP)
            figures['hung_server'], text = scrape(url)
            figures['hung_server_reachable'] = reachable(text, hung_pair, 1)
            figures['hung_server_again'], text = scrape(url)
        finally:
            for pid in [postmaster] + children:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        figures['after_hung'], text = scrape(url)
        figures['after_hung_reachable'] = reachable(text, hung_pair, 1)
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()
    return figures


def timed_playbook(pairs, playbook, inventory, *args):
    from pgforest_dev import sandbox
    cmd = [os.path.join(REPO, '.venv', 'bin', 'ansible-playbook'), '-i', inventory, playbook,
           '-e', 'fail_unless_healthy=true'] + list(args)
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, env=sandbox.ansible_env(), cwd=REPO, timeout=3600,
                          check=False)
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit('%s failed:\n%s' % (playbook, done.stdout[-3000:]))
    return seconds


def bench(count, scrapes, rounds, connect_timeout, baseline):
    from pgforest_dev import pairs
    inventory = os.path.join(SANDBOX_DIR, 'inventory.yml')
    try:
        make_pairs(pairs, count, inventory)
        exporter = bench_exporter(pairs, count, scrapes, connect_timeout)
        new = [timed_playbook(pairs, os.path.join(REPO, 'playbooks', 'status.yml'), inventory)
               for _round in range(rounds)]
        old = [timed_playbook(pairs, BASELINE, inventory, '-f', str(2 * count)) for _round in range(rounds)] \
            if baseline else []
    finally:
        pairs.down(count)
    new_s = statistics.median(new)
    print('\n%d pairs (%d servers, 1 user database each), this machine: %d cores'
          % (count, 2 * count, os.cpu_count()))
    print('%-58s %10s %12s' % ('case', 'seconds', 'vs baseline'))
    old_s = statistics.median(old) if old else None

    def row(name, seconds):
        ratio = '%11.3fx' % (seconds / old_s) if old_s else '%12s' % '-'
        print('%-58s %10.3f %s' % (name, seconds, ratio))
    if old_s:
        row('baseline: per-leader status.yml, -f %d (median of %d)' % (2 * count, rounds), old_s)
    row('status.yml, one controller-side read (median of %d)' % rounds, new_s)
    row('exporter, first scrape (opens the connections)', exporter['first'])
    row('exporter, scrape (median of %d)' % scrapes, exporter['wall'])
    row('exporter, slowest scrape', exporter['wall_max'])
    print('exporter CPU-seconds per scrape: %.3f (first scrape %.3f); memory: VmRSS %.0f MB, peak VmHWM %.0f MB'
          % (exporter['cpu'], exporter['first_cpu'], exporter['VmRSS'], exporter['VmHWM']))
    print('hung node (connect_timeout %d s, goal <= %d s): postmaster SIGSTOPped %.3f s (node reachable=%s); whole '
          'server SIGSTOPped %.3f s (reachable=%s), next scrape %.3f s; resumed %.3f s (reachable=%s)' % (
              connect_timeout, connect_timeout + 1, exporter['hung_postmaster'],
              ','.join(exporter['hung_postmaster_reachable']), exporter['hung_server'],
              ','.join(exporter['hung_server_reachable']), exporter['hung_server_again'], exporter['after_hung'],
              ','.join(exporter['after_hung_reachable'])))
    goals = [('scrape <= 1 s', exporter['wall'] <= 1.0), ('<= 0.5 CPU-s per scrape', exporter['cpu'] <= 0.5),
             ('status.yml <= 10 s', new_s <= 10.0),
             ('hung scrape <= connect_timeout + 1 s', max(exporter['hung_server'], exporter['hung_server_again'])
              <= connect_timeout + 1)]
    print('goals: ' + '; '.join('%s %s' % (name, 'met' if met else 'MISSED') for name, met in goals))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--pairs', type=int, default=100)
    parser.add_argument('--scrapes', type=int, default=10)
    parser.add_argument('--rounds', type=int, default=1, help='runs of each playbook (median)')
    parser.add_argument('--connect-timeout', type=int, default=3)
    parser.add_argument('--no-baseline', action='store_true', help='leave today\'s per-leader playbook out')
    options = parser.parse_args()
    if not 1 <= options.pairs <= 200 or options.scrapes < 1 or options.rounds < 1 or options.connect_timeout < 1:
        parser.error('--pairs is 1 to 200; --scrapes, --rounds and --connect-timeout at least 1')
    if not os.environ.get('FOREST_BENCH_INSIDE'):
        return run_inside_own_namespace(__file__, NAMESPACE, SANDBOX_DIR, sys.argv[1:])
    bench(options.pairs, options.scrapes, options.rounds, options.connect_timeout, not options.no_baseline)
    return 0


if __name__ == '__main__':
    sys.exit(main())
