# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pair's status over its user databases (docs/inventory.md): each database's status read at
once, and the pair's, which is its worst database's."""

from __future__ import annotations

import functools

from .fan_out import all_of
from .mngdb import mngdb_name
from .shapes import PairOfDatabases
from .status_read import read_pair
from .shapes import STATES
from .status_rules import merge

RECOVERY_ACTIONS = ('online_recovery', 'offline_recovery')


def severity(state):
    """How bad a state is (shapes.STATES, least bad first); an unknown one is the worst."""
    return STATES.index(state) if state in STATES else len(STATES)


def read_status(params, userdb, broken_log_limit=0, pool=None):
    """The merged status of one user database of the pair (pool: kept connections, status_read)."""
    return merge(list(read_pair(dict(params, userdb=userdb), mngdb_name(userdb), broken_log_limit, pool).values()))


def read_databases(params, userdbs, broken_log_limit=0, pool=None):
    """{userdb: merged status} of each user database of the pair, read at once (each read keeps its
    own deadline, so N databases cost about one).  A read that raises (every answer a node can give
    is already in its view, so it is a bug) fails the whole status with its own error."""
    return all_of(dict((userdb, functools.partial(read_status, params, userdb, broken_log_limit, pool))
                       for userdb in userdbs))


def pair_of_databases(statuses) -> PairOfDatabases:
    """The pair's status over several user databases: the worst database's status (its
    `userdb` named; the first of equals, a recoverable one before others), every database's in `databases`, the unhealthy ones in `unhealthy_userdbs`."""
    names = list(statuses)
    # Among equally bad databases, one whose action is a recovery (its broken node is marked -1) speaks
    # for the pair, so the recommended action is one a recovery can start from.
    worst = max(names, key=lambda name: (severity(statuses[name]['cluster_state']),
                                         statuses[name]['recommended_action']['action'] in RECOVERY_ACTIONS,
                                         -names.index(name)))
    status = dict(statuses[worst])
    status.update(
        userdb=worst,
        healthy=all(found['healthy'] for found in statuses.values()),
        unhealthy_userdbs=[name for name in names if not statuses[name]['healthy']],
        databases=[dict(statuses[name], userdb=name) for name in names])
    if len(names) > 1 and not status['healthy']:
        status['recommended_action'] = dict(status['recommended_action'], reason='%s: %s' % (
            worst, status['recommended_action']['reason']))
    return status
