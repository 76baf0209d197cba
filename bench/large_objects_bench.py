"""Large objects: forest_dbsync against what a DBA has without it, measured in the same run.

Creates `--count` large objects of `--size` bytes each in `benchdb` on both
sandbox nodes (the same oids and contents), then makes `--drift` of them differ
on serverid 1 (content changed, one removed, one extra), and times:

  compare   pg_dump --blobs --data-only of both nodes at once, hashed          vs  forest_dbsync compare
  repair    drop + pg_dump | psql of the whole database                          vs  forest_dbsync mode=sync

Ratios are against the first method measured in this run (lower is better).

    .venv/bin/python bench/large_objects_bench.py [--count 2000] [--size 65536] [--drift 0.001]
"""
import argparse
import hashlib
import subprocess
import threading

from pgforest_dev import bench as common

DB = common.DB
FIRST_OID = 900000
LARGE_OBJECTS = 'pg_catalog.pg_largeobject'


def setup(count, size):
    for serverid in (0, 1):
        common.recreate(serverid)
        common.psql(serverid, DB, "SELECT count(lo_from_bytea(%d + g, decode(repeat(md5(g::text), %d), 'hex'))) "
                                  "FROM generate_series(0, %d) g" % (FIRST_OID, max(1, size // 16), count - 1))
    for name in ('forest0', 'forest1'):
        result = common.sandbox.module('forest_mngdb', host=name, userdb=DB,
                                       servers=['127.0.0.11:5432', '127.0.0.12:5432'])
        if result.get('failed'):
            raise SystemExit(result['msg'])


def drift(count, fraction):
    """Change the content of every Nth object on serverid 1, remove one, add one; returns how many differ."""
    every = max(1, int(round(1 / fraction)))
    changed = int(common.psql(1, DB, "SELECT count(lo_put(oid, 0, '\\x00ff'::bytea)) FROM pg_largeobject_metadata "
                                     "WHERE (oid::int8 - %d) %% %d = 1" % (FIRST_OID, every)))
    common.psql(1, DB, 'SELECT lo_unlink(%d)' % (FIRST_OID + count - 1))
    common.psql(1, DB, "SELECT lo_from_bytea(%d, 'extra')" % (FIRST_OID + count))
    return changed + 2


def dump_hashes():
    """pg_dump --blobs --data-only of both nodes at once, each hashed; True when equal."""
    digests = {}

    def dump(serverid):
        # The database holds only the large objects (setup creates no table).
        proc = subprocess.Popen([common.sandbox.PG_BIN + '/pg_dump', *common.host_args(serverid), '--data-only', '--blobs', DB],
                                env=common.env(), stdout=subprocess.PIPE)
        digest = hashlib.sha256()
        for chunk in iter(lambda: proc.stdout.read(1 << 20), b''):
            digest.update(chunk)
        digests[serverid] = digest.hexdigest() if proc.wait() == 0 else 'pg_dump failed on serverid %d' % serverid
    threads = [threading.Thread(target=dump, args=(serverid,)) for serverid in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = [digest for digest in digests.values() if digest.startswith('pg_dump failed')]
    if failed:
        raise SystemExit('; '.join(failed))
    return digests[0] == digests[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--count', type=int, default=2000, help='large objects on each node')
    parser.add_argument('--size', type=int, default=65536, help='bytes per large object')
    parser.add_argument('--drift', type=float, default=0.001, help='fraction of objects changed on serverid 1')
    args = parser.parse_args()
    if args.count < 2 or args.size < 16 or not 0 < args.drift <= 1:
        raise SystemExit('--count must be 2 or more, --size 16 or more, --drift above 0 and at most 1')

    print('creating %d large objects of %d bytes on both nodes ...' % (args.count, args.size), flush=True)
    setup(args.count, args.size)
    drifted = drift(args.count, args.drift)
    print('%d objects differ on serverid 1 (content changed, one removed, one extra)\n' % drifted)

    lines = []
    dump_time, dump_equal = common.timed(dump_hashes)
    cmp_result, cmp_wall = common.dbsync(include=[LARGE_OBJECTS])
    entry = cmp_result['tables'][0]
    found = entry['missing'] + entry['extra'] + entry['changed']
    lines.append(('compare', 'pg_dump -b both, hashed', dump_time, 'says %s' % ('equal' if dump_equal else 'different'),
                  'forest_dbsync compare', cmp_result['summary']['seconds'], cmp_wall,
                  'found %d differing objects%s' % (found, ' (all)' if found == drifted else '')))

    repair_time, repair_bytes = common.timed(common.dump_restore)
    drift(args.count, args.drift)
    sync_result, sync_wall = common.dbsync(include=[LARGE_OBJECTS], mode='sync', source=0)
    after, _wall = common.dbsync(include=[LARGE_OBJECTS])
    lines.append(('repair', 'drop + pg_dump | psql', repair_time, '%.1f MB' % (repair_bytes / 1e6),
                  'forest_dbsync sync', sync_result['summary']['seconds'], sync_wall,
                  '%.2f MB, %d objects; re-compare %s' % (sync_result['summary']['bytes_copied'] / 1e6,
                                                          sync_result['summary']['rows_copied'],
                                                          'equal' if after['equal'] else 'NOT EQUAL')))

    common.print_table(lines, 'baseline')
    print('\nratio = forest_dbsync module seconds / baseline seconds (lower is better)')
    common.drop_databases()


if __name__ == '__main__':
    main()
