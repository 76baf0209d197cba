"""A PostgreSQL server beside the node that holds data, or that somebody made (issue 28), is kept, named in a
warning, and its data untouched. (The node's major and one server per node on a fresh host:
test_first_contact.py.)"""
import lab


def test_a_server_with_data_beside_the_node_is_kept_and_named(pair, record):
    """node1 gets two clusters beside the node: `main` (the name the packages give) holding a user database,
    and `spare`, empty but made by somebody. Both are kept, named in warnings, and their data untouched.
    (A never used `main` is removed: test_first_contact.py.)"""
    major = int(lab.query(1, 'SHOW server_version_num', dbname='postgres')[0][0]) // 10000
    made = []
    try:
        for name, port in (('main', 5498), ('spare', 5499)):
            lab.ssh(1, 'pg_createcluster %d %s --port %d --start >/dev/null' % (major, name, port), timeout=120)
            made.append(name)
        lab.ssh(1, 'runuser -u postgres -- psql --cluster %d/main -XAtqc "CREATE DATABASE shop"' % major)
        lab.ssh(1, 'runuser -u postgres -- psql --cluster %d/main -d shop -XAtqc '
                   '"CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2)"' % major)

        run = lab.playbook('provision.yml')
        assert run.returncode == 0, run.stdout[-4000:]
        text = ' '.join((run.stdout + run.stderr).split())  # Ansible's warnings go to stderr, maybe wrapped
        assert ('%d/main (PostgreSQL %d, cluster main, port 5498, data directory /var/lib/postgresql/%d/main) is a '
                'PostgreSQL server beside the forest node, left as it is: it holds user databases (shop)'
                % (major, major, major)) in text, run.stderr[-3000:]
        assert 'pg_dropcluster --stop %d main' % major in text
        assert ('%d/spare (PostgreSQL %d, cluster spare, port 5499, data directory /var/lib/postgresql/%d/spare) is a '
                'PostgreSQL server beside the forest node, left as it is: the OS packages did not make it'
                % (major, major, major)) in text, run.stderr[-3000:]
        assert lab.clusters(1) == [(str(major), 'main'), (str(major), 'spare')]
        assert lab.ssh(1, 'runuser -u postgres -- psql --cluster %d/main -d shop -XAtqc "SELECT count(*) FROM orders"'
                       % major).stdout.strip() == '2'

        again = lab.playbook('provision.yml')
        assert again.returncode == 0, again.stdout[-4000:]
        assert all(counts['changed'] == 0 for counts in lab.recap(again.stdout).values()), again.stdout[-3000:]
        assert lab.clusters(1) == [(str(major), 'main'), (str(major), 'spare')]
        record(what='node1 with %d/main (a user database) and %d/spare (empty, made by somebody) beside the node; '
                    'provision.yml twice' % (major, major),
               kept=['%d/main' % major, '%d/spare' % major],
               second_run_changed=sum(counts['changed'] for counts in lab.recap(again.stdout).values()))
    finally:
        for name in made:
            lab.ssh(1, 'pg_dropcluster --stop %d %s 2>/dev/null || true' % (major, name), check=False)
