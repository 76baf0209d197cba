# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Values written for people in messages: never a Python repr (`[-1]`, `{'0': 1, '1': -1}`).

    shown(-1)                      -> '-1'
    shown([0, 1])                  -> '0, 1'
    shown({'base': 3.2, 'cut': 1}) -> 'base=3.2 cut=1'
    views({'0': 1, '1': -1})       -> '0=valid 1=broken'   (what each node's view says)
    validity(-1)                   -> '-1 (broken)'
    serverids([1])                 -> 'serverid 1'; serverids([0, 1]) -> 'serverids 0 and 1'
    listed(['a', 'b', 'c'])        -> 'a, b and c'

Every message that shows a list, a set, a dict or a tuple goes through one of these (the
filter pgforest.cluster.shown gives `shown` to the roles and playbooks)."""

from __future__ import annotations

# udb_validity's meaning (guide §9), the one table (status nodes carry it as validity_name).
VALIDITY_NAMES = {1: 'valid', 0: 'write-suppressed', -1: 'broken'}


def shown(value):
    """A value as a person reads it: lists and sets as `a, b`, dicts as `key=value key=value`,
    None and empty collections as `none`, booleans as `yes`/`no`, whole floats without `.0`, anything
    else as str()."""
    if value is None:
        return 'none'
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    if isinstance(value, dict):
        return pairs(value)
    if isinstance(value, (set, frozenset)):
        return ', '.join(shown(item) for item in sorted(value, key=_order)) or 'none'
    if isinstance(value, (list, tuple)):
        return ', '.join(shown(item) for item in value) or 'none'
    if isinstance(value, float) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def pairs(mapping, value=None, sep='=', join=' '):
    """`key=value key=value`, in the mapping's order; value(v) words each value (default shown)."""
    word = value or shown
    return join.join('%s%s%s' % (shown(key), sep, word(item)) for key, item in mapping.items()) or 'none'


def listed(values, last='and'):
    """`a`, `a and b`, `a, b and c` (sets sorted); `none` when empty."""
    items = [shown(item) for item in (sorted(values, key=_order) if isinstance(values, (set, frozenset))
                                      else values)]
    if not items:
        return 'none'
    if len(items) == 1:
        return items[0]
    return '%s %s %s' % (', '.join(items[:-1]), last, items[-1])


def validity_name(value):
    """`valid`, `write-suppressed`, `broken`, or `unknown`."""
    try:
        return VALIDITY_NAMES.get(int(value), 'unknown') if value is not None else 'unknown'
    except (TypeError, ValueError):
        return 'unknown'


def validity(value):
    """`-1 (broken)`: the number the management database holds and what it means."""
    return '%s (%s)' % (shown(value), validity_name(value))


def views(seen):
    """What each node's view says of one serverid ({view's serverid: validity}): `0=valid 1=broken`."""
    return pairs(seen, validity_name)


def serverids(values):
    """`serverid 1`, `serverids 0 and 1`."""
    values = sorted(values, key=_order) if isinstance(values, (set, frozenset)) else list(values)
    return '%s %s' % ('serverid' if len(values) == 1 else 'serverids', listed(values))


def _order(item):
    """Sort key for mixed values (a set of ints and strings sorts without a TypeError)."""
    return (not isinstance(item, (int, float)), item if isinstance(item, (int, float)) else str(item))
