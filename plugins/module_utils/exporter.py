# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pgforest-exporter: the pairs' status as Prometheus metrics over HTTP (docs/monitoring.md).

    PYTHONPATH=<collections path> python3 -m ansible_collections.pgforest.cluster.plugins.module_utils.exporter \\
        --inventory FILE [--listen 127.0.0.1:9716] [--group forest] [--connect-timeout 5]

FILE is an inventory (the one the forest_metrics role writes: the hosts of the group with their
connection variables); the pairs are made of it with the playbooks' rules (plugin_utils/estate.py).
Each GET /metrics reads every pair, every user database and both nodes at once (estate_read), over
connections kept between scrapes, and answers the metrics of filter forest_metrics (the one place
for their names) with the exporter's own; GET / is a page of the pairs and their states.

A controller-side program, not a module: ansible-core (inventory), prometheus_client and the
collection's filters are imported when it runs, never when a module loads module_utils.
Bad configuration: one line on stderr, exit code 2, nothing served.
"""

from __future__ import annotations

import argparse
import html
import signal
import socket
import sys
import threading
import time

from .estate_read import KeptConnections, read_estate
from .forest_pg import TIMEOUT_RANGES

DEFAULT_LISTEN = '127.0.0.1:9716'
DEFAULT_GROUP = 'forest'
DEFAULT_CONNECT_TIMEOUT = 5
# How many broken_log rows a read takes: the metrics need only the newest per node, the page none.
BROKEN_LOG_ROWS = 10
# Exit codes: a configuration to correct (systemd's unit does not restart it: RestartPreventExitStatus=2), and
# a start that may work next time (an address not up yet at boot, a port still held: the unit restarts it).
BAD_CONFIG = 2
CANNOT_START = 1
# How long a client may keep a request thread waiting without sending its request.
REQUEST_TIMEOUT = 60


class ConfigError(Exception):
    """A configuration the exporter cannot start with: its message is the one line it prints."""


class StartError(Exception):
    """A start that failed for a reason outside the configuration (the listening socket): one line, exit 1."""


def parse_listen(text):
    """'HOST:PORT' (an IPv6 host in brackets) -> (host, port)."""
    host, sep, port = str(text).rpartition(':')
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError('--listen must be HOST:PORT (such as %s), got %r' % (DEFAULT_LISTEN, text))
    return host.strip('[]'), int(port)


def load_pairs(path, group, connect_timeout):
    """The pairs of the inventory (plugin_utils/estate.py: the inventory read by Ansible, the playbooks' rules,
    every TLS file checked)."""
    from ansible_collections.pgforest.cluster.plugins.plugin_utils.estate import EstateError, inventory_pairs
    try:
        # A statement may take as long as a connection: a scrape never waits on one past its node's deadline.
        pairs = inventory_pairs(path, group, connect_timeout, statement_timeout=connect_timeout * 1000)
    except EstateError as exc:
        raise ConfigError(str(exc))
    return pairs


# The exporter's own metrics, served after forest_metrics' (the dashboard and the alert rules may read both:
# tests/unit/test_monitoring_rules.py holds them to these names).
OWN_METRICS = (
    ('counter', 'pgforest_exporter_scrape_errors_total', 'Scrapes in which a pair could not be read or the '
     'metrics not rendered (the exporter\'s stderr says why).', ()),
    ('gauge', 'pgforest_exporter_scrape_duration_seconds', 'How long the last scrape took to read every pair.', ()),
    ('gauge', 'pgforest_pair_up', 'Whether the exporter read the pair and a node of it answered (1) or not (0).',
     ('pair',)),
    ('gauge', 'pgforest_exporter_connections', 'Connections the exporter keeps to the nodes.', ()),
)


class Exporter(object):
    """The scrapes: every pair read over the kept connections, rendered by filter forest_metrics."""

    def __init__(self, pairs):
        from prometheus_client import CollectorRegistry, Counter, Gauge, disable_created_metrics
        disable_created_metrics()  # a counter's *_created series says nothing here
        self.pairs = pairs
        self.pool = KeptConnections()
        # One read at a time, and a request that comes while one runs takes that read's outcome instead of
        # queueing a read of its own: two Prometheus servers (or a browser on /) while a node hangs would
        # otherwise wait a connect_timeout each, one after the other, past Prometheus's scrape_timeout.
        self.flight = threading.Condition()
        self.reading = False
        self.generation = 0
        self.outcome = (None, None)  # (found, exception) of the last read
        self.registry = CollectorRegistry()
        self.errors, self.duration, self.pair_up, self.connections = [
            (Counter if kind == 'counter' else Gauge)(name, text, list(labels), registry=self.registry)
            for kind, name, text, labels in OWN_METRICS]

    def read(self):
        """[{pair, status, error}] of every pair, now: a read of its own, or the one running when it came."""
        with self.flight:
            if self.reading:
                generation = self.generation
                self.flight.wait_for(lambda: self.generation != generation)
                found, error = self.outcome
                if error is not None:
                    raise error
                return found
            self.reading = True
        found, error = None, None
        try:
            found = self.read_now()
        except BaseException as exc:
            error = exc
            raise
        finally:
            with self.flight:
                self.reading = False
                self.generation += 1
                self.outcome = (found, error)
                self.flight.notify_all()
        return found

    def read_now(self):
        started = time.monotonic()
        found = read_estate(self.pairs, BROKEN_LOG_ROWS, self.pool)
        self.duration.set(round(time.monotonic() - started, 6))
        self.connections.set(self.pool.idle())
        failed = [item for item in found if item['error']]
        if failed:
            self.errors.inc()
            for item in failed:
                log('pair %s could not be read: %s' % (item['pair'], item['error']))
        for item in found:
            status = item['status']
            self.pair_up.labels(item['pair']).set(int(status is not None and any(
                node['reachable'] for database in status['databases'] for node in database['nodes'])))
        return found

    def metrics(self):
        """The text of /metrics: forest_metrics' samples for each pair read, then the exporter's own."""
        from prometheus_client import generate_latest
        from ansible_collections.pgforest.cluster.plugins.filter.forest_metrics import prometheus_metrics
        found = self.read()
        try:
            text = prometheus_metrics([item for item in found if item['status'] is not None])
        except Exception as exc:  # a bug in a status's shape: say so, the exporter's own metrics still tell it
            self.errors.inc()
            log('the metrics could not be rendered: %s: %s' % (type(exc).__name__, exc))
            text = ''
        return text + generate_latest(self.registry).decode('utf-8')

    def page(self):
        """GET /: the pairs and their states, one row per pair and user database."""
        from ansible_collections.pgforest.cluster.plugins.filter.forest_pair import node_note, status_table
        found = self.read()
        rows = []
        for item in found:
            if item['status'] is None:
                rows.append('<tr><td>%s</td><td colspan="4">not read: %s</td></tr>'
                            % (html.escape(str(item['pair'])), html.escape(item['error'])))
                continue
            for database in item['status']['databases']:
                rows.append('<tr><td>%s</td><td>%s</td><td class="%s">%s</td><td>%s</td><td>%s</td></tr>' % tuple(
                    html.escape(str(value)) for value in (
                        item['pair'], database['userdb'], database['cluster_state'], database['cluster_state'],
                        ' '.join('%s=%s%s' % (node['serverid'], node['validity_name'], node_note(node))
                                 for node in database['nodes']),
                        database['recommended_action']['action'])))
        table = status_table([item for item in found if item['status'] is not None], header=True)
        return ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>pgforest exporter</title>'
                '<style>td{padding:0 1em}.healthy{color:green}.degraded,.recovering{color:orange}'
                '.down,.split_brain,.misconfigured,.diverged{color:red}</style></head><body>'
                '<h1>PostgresForest pairs</h1><p><a href="/metrics">/metrics</a></p>'
                '<table><tr><th>pair</th><th>userdb</th><th>state</th><th>nodes</th><th>action</th></tr>\n%s\n'
                '</table>\n<pre>%s</pre></body></html>\n' % ('\n'.join(rows), html.escape('\n'.join(table))))

    def close(self):
        self.pool.close()


def log(line):
    sys.stderr.write('pgforest-exporter: %s\n' % line)
    sys.stderr.flush()


def make_server(exporter, listen):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from prometheus_client import CONTENT_TYPE_LATEST

    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT  # an idle client does not hold a thread for ever

        def do_GET(self):  # noqa: N802 (http.server's name)
            path = self.path.split('?', 1)[0]
            try:
                if path == '/metrics':
                    body, kind = exporter.metrics().encode('utf-8'), CONTENT_TYPE_LATEST
                elif path == '/':
                    body, kind = exporter.page().encode('utf-8'), 'text/html; charset=utf-8'
                else:
                    self.send_error(404, 'only / and /metrics are here')
                    return
            except Exception as exc:  # pylint: disable=broad-exception-caught
                # A read that could not run at all (no thread left, say): one line in the log, a 500 for the
                # scraper (Prometheus then marks the target down), never a traceback.
                log('%s failed: %s: %s' % (path, type(exc).__name__, exc))
                self.send_error(500, 'the read failed; the exporter\'s log says why')
                return
            self.send_response(200)
            self.send_header('Content-Type', kind)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # pylint: disable=redefined-builtin
            pass  # one line per scrape would be noise; errors are logged by the exporter itself

    host, port = listen

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        # An IPv6 address ([::] or [::1] in --listen) needs a socket of its family; the default one is IPv4's.
        address_family = socket.AF_INET6 if ':' in host else socket.AF_INET

        def handle_error(self, request, client_address):
            # A scraper that gave up before the answer (a broken pipe) and the like: one line, not a traceback.
            error = sys.exc_info()[1]
            if not isinstance(error, (BrokenPipeError, ConnectionResetError, TimeoutError)):
                log('a request from %s failed: %s: %s' % (client_address[0], type(error).__name__, error))

    try:
        return Server((host, port), Handler)
    except OSError as exc:
        raise StartError('cannot listen on %s:%s: %s' % (host, port, exc.strerror or exc))


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ConfigError('%s (--help lists the options)' % message)


def parse_args(argv):
    parser = Parser(prog='pgforest-exporter',
                    description='The PostgresForest pairs\' status as Prometheus metrics (docs/monitoring.md).')
    parser.add_argument('--inventory', required=True, help='the inventory file of the pairs (forest_metrics writes it)')
    parser.add_argument('--listen', default=DEFAULT_LISTEN, help='HOST:PORT to serve on (%(default)s)')
    parser.add_argument('--group', default=DEFAULT_GROUP, help='inventory group of the pairs\' hosts (%(default)s)')
    parser.add_argument('--connect-timeout', type=int, default=DEFAULT_CONNECT_TIMEOUT,
                        help='seconds a node may take to accept a connection (%(default)s)')
    parser.add_argument('--check', action='store_true',
                        help='read and check the inventory (its pairs, their TLS files), say how many pairs, and '
                             'exit: 0 when the exporter could start with it (forest_metrics validates with it)')
    options = parser.parse_args(argv)
    most = dict((name, most) for name, _unit, most in TIMEOUT_RANGES)['connect_timeout']
    if not 1 <= options.connect_timeout <= most:
        raise ConfigError('--connect-timeout must be 1 to %d seconds, got %d' % (most, options.connect_timeout))
    return options


def main(argv=None):
    try:
        options = parse_args(sys.argv[1:] if argv is None else argv)
        listen = parse_listen(options.listen)
        pairs = load_pairs(options.inventory, options.group, options.connect_timeout)
        if options.check:
            sys.stdout.write('pgforest-exporter: %s: %d pairs (%s)\n' % (
                options.inventory, len(pairs), ', '.join(pair['pair'] for pair in pairs)))
            return 0
        try:
            import prometheus_client  # noqa: F401 (named here, before anything is served)
        except ImportError:
            raise ConfigError('the Python package prometheus_client is needed: pip install prometheus-client')
        exporter = Exporter(pairs)
        server = make_server(exporter, listen)
    except ConfigError as exc:
        sys.stderr.write('pgforest-exporter: %s\n' % exc)
        return BAD_CONFIG
    except StartError as exc:
        sys.stderr.write('pgforest-exporter: %s\n' % exc)
        return CANNOT_START
    except Exception as exc:  # pylint: disable=broad-exception-caught
        # Whatever else stops the start (Ansible's inventory code with no writable home, say) is one line too,
        # never a traceback: systemd's journal and a DBA at a terminal get the cause, and nothing was served.
        sys.stderr.write('pgforest-exporter: cannot start: %s: %s\n' % (type(exc).__name__, exc))
        return CANNOT_START
    signal.signal(signal.SIGTERM, stop)
    log('serving %d pairs on http://%s:%s/metrics' % (len(pairs), listen[0], listen[1]))
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        exporter.close()
    return 0


def stop(_signum, _frame):
    """SIGTERM (systemctl stop): end serve_forever, close the kept connections, exit 0."""
    raise SystemExit(0)


if __name__ == '__main__':
    raise SystemExit(main())
