# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Large objects: compared by a digest of their pages, owner and permissions, and copied page by page.

They live outside every table (pg_largeobject, pg_largeobject_metadata), so they
are compared and repaired as one more entry of the report, under the name LARGE_OBJECTS."""

from __future__ import annotations

from .forest_pg import run, sql

LARGE_OBJECTS = ('pg_catalog', 'pg_largeobject')
# Per large object: owner, permissions and a digest of its pages (page number and
# content), read page by page so a large object of any size needs little memory.
LARGE_OBJECTS_SQL = """
SELECT m.oid::int8 AS oid, pg_get_userbyid(m.lomowner) AS owner, m.lomacl::text AS acl,
       coalesce(p.pages, 0) AS pages, coalesce(p.size, 0) AS size, p.digest
FROM pg_largeobject_metadata m
LEFT JOIN (SELECT loid, count(*) AS pages, sum(length(data))::int8 AS size,
                  md5(string_agg(pageno::text || ':' || md5(data), ',' ORDER BY pageno)) AS digest
           FROM pg_largeobject GROUP BY loid) AS p ON p.loid = m.oid
ORDER BY 1
"""
# Pages written per statement when copying a large object (about 1 MB at the default page size).
LARGE_OBJECT_BATCH = 512


def large_objects(conn):
    """{oid: (owner, acl, pages, size, digest)} of every large object of the database."""
    rows = run(conn, LARGE_OBJECTS_SQL, action='read large objects', tuples=True)
    return dict((row[0], tuple(row[1:])) for row in rows)


def describe_large_object_change(source, target):
    """What differs between two entries of large_objects(): 'content', 'owner', 'permissions'."""
    parts = []
    if source[2:] != target[2:]:
        parts.append('content')
    if source[0] != target[0]:
        parts.append('owner %s on source, %s on target' % (source[0], target[0]))
    if source[1] != target[1]:
        parts.append('permissions %s on source, %s on target' % (source[1] or 'default', target[1] or 'default'))
    return ', '.join(parts)


def unlink_large_objects(target, oids):
    if oids:
        run(target, 'SELECT count(lo_unlink(oid)) FROM unnest(%s::int8[]::oid[]) AS oid', [list(oids)],
            action='remove large objects')


def copy_large_objects(source, target, oids, catalog):
    """Create each large object on the target with the source's oid, pages, owner
    and permissions (the target must not have it).  Pages are written where they
    are on the source, so a sparse object keeps its holes.  Returns bytes copied."""
    page_size = int(run(source, "SELECT current_setting('block_size')::int / 4 AS size")[0]['size'])  # LOBLKSIZE
    moved = 0
    for oid in oids:
        run(target, 'SELECT lo_create(%s::int8::oid)', [oid], action='create large object %d' % oid)
        last = -1
        while True:
            pages = run(source, 'SELECT pageno, data FROM pg_largeobject WHERE loid = %s::int8::oid AND pageno > %s '
                                'ORDER BY pageno LIMIT %s', [oid, last, LARGE_OBJECT_BATCH],
                        action='read large object %d' % oid, tuples=True)
            if not pages:
                break
            run(target, 'SELECT count(lo_put(%s::int8::oid, p.pageno::int8 * %s, p.data)) '
                        'FROM unnest(%s::int4[], %s::bytea[]) AS p(pageno, data)',
                [oid, page_size, [page[0] for page in pages], [page[1] for page in pages]],
                action='write large object %d' % oid)
            moved += sum(len(page[1]) for page in pages)
            last = pages[-1][0]
        owner, acl = catalog[oid][0], catalog[oid][1]
        run(target, sql.SQL('ALTER LARGE OBJECT {} OWNER TO {}').format(sql.Literal(oid), sql.Identifier(owner)),
            action='set the owner of large object %d' % oid)
        # Permissions exactly as on the source (GRANTs would have to replay each grantor).
        run(target, 'UPDATE pg_largeobject_metadata SET lomacl = %s::aclitem[] WHERE oid = %s::int8::oid', [acl, oid],
            action='set the permissions of large object %d' % oid)
    return moved
