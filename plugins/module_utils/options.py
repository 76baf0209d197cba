# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A job's typed options (a NamedTuple: SyncOptions, RecoveryOptions, BackupOptions, MngdbOptions)
built from a module's params: the one way every module hands its options to module_utils."""

from __future__ import annotations


def options_from(cls, params, **overrides):
    """cls built from the params it has a field for, then `overrides`.  A None param (an option the
    DBA left out, with no default in the argument spec) leaves the field's own default in place; a
    field with no default takes the None."""
    given = dict((name, params[name]) for name in cls._fields
                 if name in params and (params[name] is not None or name not in cls._field_defaults))
    given.update(overrides)
    return cls(**given)
