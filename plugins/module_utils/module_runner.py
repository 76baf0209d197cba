# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every pgforest.cluster module's main() does around its own work: the
checks before anything runs, and one mapping of every failure to fail_json.

    module = forest_module(argument_spec, required_if=...)
    run_job(module, work)        # work(slot) -> the result dict

A refusal or failure (errors.ForestError) becomes fail_json with its message
and the job's partial result (slot.job.failure_result()); a lost connection
(psycopg.Error) or a file-system error (OSError) gets a message naming it; any
other exception is a bug and says so, with its traceback in `exception`
(shown with -vvv).  The job's connections are closed in every case."""

from __future__ import annotations

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from .errors import ForestError
from .forest_pg import (
    PSYCOPG_IMPORT_ERROR, connection_problems, psycopg)
from .mngdb import MngdbError, mngdb_name


def forest_module(argument_spec, **kwargs):
    """The AnsibleModule, after the checks every module shares: psycopg importable,
    connection options in range, a user database name its management database can follow."""
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True, **kwargs)
    if PSYCOPG_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib('psycopg (version 3)'), exception=PSYCOPG_IMPORT_ERROR)
    problem = connection_problems(module.params)
    if problem:
        module.fail_json(msg=problem)
    if module.params.get('userdb') is not None:
        try:
            mngdb_name(module.params['userdb'])
        except MngdbError as exc:
            module.fail_json(msg='%s. Nothing was changed' % exc)
    return module


class JobSlot(object):
    """Where work() puts the job it builds, so a failure can report its partial
    result and every exit closes its connections."""

    def __init__(self):
        self.job = None

    def failure_fields(self):
        report = getattr(self.job, 'failure_result', None)
        if report is None:
            return {}
        try:
            return report()
        except Exception:  # a broken partial result must not hide the failure being reported
            return {}

    def close(self):
        close = getattr(self.job, 'close', None)
        if close is not None:
            close()


def run_job(module, work):
    """exit_json(**work(slot)), or fail_json with a message a DBA can act on."""
    slot = JobSlot()
    try:
        try:
            result = work(slot)
        except ForestError as exc:
            module.fail_json(msg=str(exc), **slot.failure_fields())
        except Exception as exc:  # pylint: disable=broad-except
            module.fail_json(msg=unexpected_failure_message(exc), exception=traceback.format_exc(),
                             **slot.failure_fields())
    finally:
        slot.close()
    module.exit_json(**result)


def unexpected_failure_message(exc):
    if psycopg is not None and isinstance(exc, psycopg.Error):
        detail = str(exc).strip() or type(exc).__name__
        return ('a connection failed or a statement was refused: %s. Check that both servers run and answer, '
                'then run the module again; what it did before is in progress' % detail)
    if isinstance(exc, OSError):
        return ('%s: check the path, its permissions and free space, then run the module again'
                % (str(exc) or type(exc).__name__))
    return ('internal error in pgforest.cluster (%s: %s): this is a bug, please report it with the output of -vvv. '
            'What the module did before it is in progress' % (type(exc).__name__, exc))
