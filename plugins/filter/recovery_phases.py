# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The online recovery's phases as the forest_recovery role needs them, read from the one table
(module_utils/online_phases.py PHASES) instead of written again in YAML."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

# The phase table alone: importing online_recovery here would load psycopg and the whole recovery.
from ansible_collections.pgforest.cluster.plugins.module_utils.online_phases import PHASE_CHOICES, PHASES


def starts_recovery(phase):
    """Whether phase=<phase> starts a new recovery (so a healthy pair means nothing to do), rather
    than continuing or cancelling one already under way."""
    if phase not in PHASE_CHOICES:
        raise AnsibleFilterError('phase must be one of %s, got %r' % (', '.join(PHASE_CHOICES), phase))
    return phase == 'all' or any(step.name == phase and step.needs is None for step in PHASES)


def completes_recovery(phase):
    """Whether phase=<phase> ends with the target valid, so the pair must be healthy afterwards: all, the
    phase that promotes the target (the cut sets its validity to 1) and those after it; not the first
    steps nor cancel, which leave the target broken by design."""
    if phase not in PHASE_CHOICES:
        raise AnsibleFilterError('phase must be one of %s, got %r' % (', '.join(PHASE_CHOICES), phase))
    names = [step.name for step in PHASES]
    promoting = [step.name for step in PHASES if step.leaves == 'promoted']
    return phase == 'all' or bool(promoting) and phase in names[names.index(promoting[0]):]


class FilterModule(object):
    def filters(self):
        return {'recovery_phase_starts': starts_recovery, 'recovery_phase_completes': completes_recovery}
