# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every long job of the collection shares (compare and repair, recovery, backup and
restore): progress lines for the result and -v output, seconds per phase, the pair's status,
connections to either node through one contract, and closing them whatever happens."""

from __future__ import annotations

import time

from .status_read import read_pair
from .status_rules import merge
from .forest_pg import Node, close_all
from .mngdb import mngdb_name
from .shapes import PairStatus, StatusNode


class Timer(object):
    """Seconds spent per phase (added up when a phase runs more than once), for the result."""

    def __init__(self):
        self.phases = {}

    def __call__(self, phase):
        timer = self

        class _Phase(object):
            def __enter__(self):
                self.started = time.monotonic()

            def __exit__(self, *exc):
                timer.phases[phase] = round(timer.phases.get(phase, 0) + time.monotonic() - self.started, 3)
        return _Phase()


class Job(object):
    """params: the module's options (the connection options and userdb are read here; a job
    reads its own); log(line): -v output, as module.log."""

    def __init__(self, params, check_mode=False, log=None):
        self.p = params
        self.check_mode = check_mode
        self.log_line = log
        self.userdb = params['userdb']
        self.mngdb = mngdb_name(self.userdb)
        self.started = time.monotonic()
        self.timer = Timer()
        self.progress = []
        self.conns = []

    @property
    def phases(self):
        return self.timer.phases

    def say(self, text):
        line = '%7.2fs %s' % (time.monotonic() - self.started, text)
        self.progress.append(line)
        if self.log_line:
            self.log_line(line)

    def timed(self, name, function, *args):
        """function(*args), its seconds added to phases[name]."""
        with self.timer(name):
            return function(*args)

    def read_status(self) -> PairStatus:
        """The merged status of the pair as it is now (status_read, status_rules)."""
        return merge(list(read_pair(self.p, self.mngdb).values()))

    def node(self, node_dict: StatusNode) -> Node:
        """The Node of a status node (same login and timeouts as the module's own)."""
        return Node.from_params(self.p).sibling(node_dict['host'], node_dict['port'])

    def connect(self, node_dict: StatusNode, dbname: str, bulk: bool = False):
        """(Node, connection) to dbname on a status node; closed by close().  bulk: a copy or
        hash that may run long (forest_pg.Node.session_options)."""
        node = self.node(node_dict)
        conn = node.connect(dbname, bulk=bulk)
        self.conns.append(conn)
        return node, conn

    def failure_result(self):
        """What a failed run reports: the steps done and their seconds."""
        return dict(progress=self.progress, phases=self.phases)

    def close(self):
        close_all(self.conns)
