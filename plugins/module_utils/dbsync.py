# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The names online_recovery.py still reaches as `dbsync.<name>`, from where they live now.

The compare/repair engine is in sync_catalog, sync_hash, sync_copy, sync_sequences,
sync_large_objects and lock_waits; nothing else imports this file.  It goes once
online_recovery.py imports those itself (and `sql`, `ident` from forest_pg)."""

from __future__ import annotations

from .forest_pg import ident, sql
from .sync_catalog import table_name, unlogged_tables
from .sync_copy import copy_relation
from .sync_sequences import read_sequences, set_sequence

__all__ = ['copy_relation', 'ident', 'read_sequences', 'set_sequence', 'sql', 'table_name', 'unlogged_tables']
