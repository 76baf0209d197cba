# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The argument specs the modules share: those that act on the pair, and those that also drive
the server on their own host."""

from __future__ import annotations

from .forest_pg import connection_argument_spec
from .local_server import local_server_argument_spec


def pair_argument_spec():
    """Options of the modules that act on the pair (doc fragment pgforest.cluster.pair)."""
    spec = connection_argument_spec()
    spec.update(userdb=dict(type='str', required=True), peer_host=dict(type='str'), peer_port=dict(type='int'))
    return spec


def node_host_argument_spec():
    """Options of the modules that run on a node's host and drive its server (doc fragments
    pgforest.cluster.pair and pgforest.cluster.local_server)."""
    spec = pair_argument_spec()
    spec.update(local_server_argument_spec())
    return spec
