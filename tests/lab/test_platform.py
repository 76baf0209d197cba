"""A PostgreSQL server beside the node that holds data (issue 28) is kept, named in a warning, and its data
untouched; a never used one beside it is removed. (The node's major and one server per node on a fresh host:
test_first_contact.py.)"""
import lab


def test_a_server_with_data_beside_the_node_is_kept_and_named(pair, record):
    """node1 gets three clusters beside the node: `main` (the packages' name), never used, is removed;
    `spare`, empty but made by somebody, and `shop`, with a user database, are kept, named in warnings, and
    their data untouched."""
    major = int(lab.query(1, 'SHOW server_version_num', dbname='postgres')[0][0]) // 10000
    made = []
    try:
        for name, port in (('main', 5497), ('spare', 5498), ('shop', 5499)):
            lab.ssh(1, 'pg_createcluster %d %s --port %d --start >/dev/null' % (major, name, port), timeout=120)
            made.append(name)
        lab.ssh(1, 'runuser -u postgres -- psql --cluster %d/shop -XAtqc "CREATE DATABASE shop"' % major)
        lab.ssh(1, 'runuser -u postgres -- psql --cluster %d/shop -d shop -XAtqc '
                   '"CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2)"' % major)

        run = lab.playbook('provision.yml')
        assert run.returncode == 0, run.stdout[-4000:]
        text = ' '.join((run.stdout + run.stderr).split())  # Ansible's warnings go to stderr, maybe wrapped
        assert ('%d/shop (PostgreSQL %d, cluster shop, port 5499, data directory /var/lib/postgresql/%d/shop) is a '
                'PostgreSQL server beside the forest node, left as it is: it holds user databases (shop)'
                % (major, major, major)) in text, run.stdout[-3000:]
        assert 'pg_dropcluster --stop %d shop' % major in text
        assert ('%d/spare (PostgreSQL %d, cluster spare, port 5498, data directory /var/lib/postgresql/%d/spare) is a '
                'PostgreSQL server beside the forest node, left as it is: the OS packages did not make it'
                % (major, major, major)) in text, run.stderr[-3000:]
        assert lab.clusters(1) == [(str(major), 'shop'), (str(major), 'spare')]
        assert lab.ssh(1, 'runuser -u postgres -- psql --cluster %d/shop -d shop -XAtqc "SELECT count(*) FROM orders"'
                       % major).stdout.strip() == '2'

        again = lab.playbook('provision.yml')
        assert again.returncode == 0, again.stdout[-4000:]
        assert all(counts['changed'] == 0 for counts in lab.recap(again.stdout).values()), again.stdout[-3000:]
        assert lab.clusters(1) == [(str(major), 'shop'), (str(major), 'spare')]
        record(what='node1 with %d/main (never used), %d/spare (empty, made by somebody) and %d/shop (a user '
                    'database) beside the node; provision.yml twice' % (major, major, major),
               removed=['%d/main' % major], kept=['%d/shop' % major, '%d/spare' % major],
               second_run_changed=sum(counts['changed'] for counts in lab.recap(again.stdout).values()))
    finally:
        for name in made:
            lab.ssh(1, 'pg_dropcluster --stop %d %s 2>/dev/null || true' % (major, name), check=False)
