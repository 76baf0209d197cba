# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The table of an online recovery's phases, and nothing else: the forest_recover module, the
orchestrator (online_recovery.py) and the forest_recovery role's filter (plugins/filter/recovery_phases.py)
read it.  No imports on purpose: the filter loads this file without psycopg or the recovery's code."""

from __future__ import annotations

from typing import NamedTuple, Optional


class Phase(NamedTuple):
    """One step of an online recovery, as the state file, the module and the role know it."""
    name: str
    needs: Optional[str]    # the stage the state file must be at (None: no recovery in progress)
    leaves: str             # the stage it leaves in the state file
    rolls_back: bool        # a failure undoes the whole recovery (before the cut is committed)


# The one table of the online recovery's steps, in order.  phase=all runs them all; phase=cancel
# undoes a recovery whose cut has not happened.  forest_recover's choices and the forest_recovery
# role's (tests/unit/test_online_recovery_logic.py checks the role) come from here.
PHASES = (
    Phase('base', needs=None, leaves='standby', rolls_back=True),
    Phase('cut', needs='standby', leaves='promoted', rolls_back=True),
    Phase('cleanup', needs='promoted', leaves='done', rolls_back=False),
)
PHASE_CHOICES = ('all',) + tuple(phase.name for phase in PHASES) + ('cancel',)
# Stages of the state file besides the phases' own: a base copy under way, a cancel half done.
STARTED, CANCEL_PENDING, CANCELLED = 'base', 'cancel_pending', 'cancelled'


def phase_named(name):
    return [phase for phase in PHASES if phase.name == name][0]


def next_phase(stage):
    """What continues a recovery left at `stage`: the phase that needs it, else cancel."""
    return ([phase.name for phase in PHASES if phase.needs == stage] or ['cancel'])[0]
