# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one base of every error the collection reports to a DBA."""

from __future__ import annotations


class ForestError(Exception):
    """A refusal or a failure whose message says what happened and what to do.

    The modules' runner (module_runner.run_job) turns it into fail_json; any other
    exception there is a bug, reported as such."""


class RecoveryError(ForestError):
    """A recovery's refusal or failure (recovery.py and the online recovery's parts, which sit below it)."""


class MngdbError(ForestError):
    """Bad input or a management database that cannot be acted on."""
