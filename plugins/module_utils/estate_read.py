# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every pair of an estate read at once: status.yml's one read from the controller
(forest_estate_status) and each scrape of the exporter.

A pair is {pair, userdbs, params}: its name, its user databases, and the connection options of
its serverid 0 with its serverid 1 as peer_host / peer_port (plugin_utils/estate.py makes them out
of an inventory).  Each pair's read is cluster_status.read_databases, the one that forest_status
runs, so the states are the collection's merge rules; every pair, every database and both nodes are
read at once, each node within its connect_timeout and the read margin.

KeptConnections: the connections a long-running reader keeps between reads, one per node and
management database, so a scrape costs queries, not logins (a password exchange and a TLS
handshake each).
"""

from __future__ import annotations

import functools
import threading

from .cluster_status import pair_of_databases, read_databases
from .fan_out import fan_out
from .forest_pg import ForestPgError
from .status_text import pair_summary_lines


class KeptConnections(object):
    """One idle connection per (host, port, database), taken out while a read uses it and given
    back after.  A read that finds none (first read, or the last one still hangs on a stopped
    server) opens one.  A connection found dead by the read (the server restarted, or was stopped)
    is closed and the read done once more on a new one, so a restart costs no scrape and leaks no
    session; a connection given back while another already waits is closed."""

    def __init__(self):
        self._lock = threading.Lock()
        self._idle = {}
        self.opened = 0  # how many connections were opened, for the exporter's own metrics and tests

    def read(self, node, dbname, use, unconnected):
        """use(conn) over this node's kept connection to dbname (or a new one); unconnected(exc)
        when none can be opened."""
        key = (node.host, node.port, dbname)
        with self._lock:
            conn = self._idle.pop(key, None)
        if conn is not None:
            result = use(conn)
            if not _dead(conn):
                self._give_back(key, conn)
                return result
            _close(conn)  # killed since the last read: read again over a new one, at once
        try:
            conn = node.connect(dbname, kept=True)
        except ForestPgError as exc:  # the node's own error, kept in its view
            return unconnected(exc)
        with self._lock:
            self.opened += 1
        result = use(conn)
        if _dead(conn):
            _close(conn)
        else:
            self._give_back(key, conn)
        return result

    def _give_back(self, key, conn):
        with self._lock:
            extra = conn if key in self._idle else None
            if extra is None:
                self._idle[key] = conn
        if extra is not None:
            _close(extra)

    def idle(self):
        with self._lock:
            return len(self._idle)

    def close(self):
        with self._lock:
            conns, self._idle = list(self._idle.values()), {}
        for conn in conns:
            _close(conn)


def _dead(conn):
    return bool(getattr(conn, 'closed', False) or getattr(conn, 'broken', False))


def _close(conn):
    try:
        conn.close()
    except Exception:  # closing a dead connection must not hide the read's outcome
        pass


def read_pair_status(pair, broken_log_limit, pool):
    """One pair's status over its user databases, with the summary lines forest_status gives."""
    status = pair_of_databases(read_databases(pair['params'], pair['userdbs'], broken_log_limit, pool))
    status['summary'] = pair_summary_lines(status)
    return status


def read_estate(pairs, broken_log_limit=0, pool=None):
    """[{pair, status, error}] in the order of `pairs`, every pair read at once.  `error` is None,
    or the words of a read that raised (a bug: every answer a node can give is in its view); that
    pair then has no status and the others stand."""
    outcomes = fan_out(dict((index, functools.partial(read_pair_status, pair, broken_log_limit, pool))
                            for index, pair in enumerate(pairs)))
    found = []
    for index, pair in enumerate(pairs):
        outcome = outcomes[index]
        error = None if outcome.error is None else '%s: %s' % (type(outcome.error).__name__, outcome.error)
        found.append(dict(pair=pair['pair'], status=outcome.value if error is None else None, error=error))
    return found
