# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place the modules' code starts a child program (pg_ctl, initdb, psql, pg_dump,
pg_restore, pg_basebackup).

Ansible wants modules to use AnsibleModule.run_command, and ansible-test 2.21's pylint says so
for every subprocess call in module_utils (ansible-bad-function).  run_command runs one program to
its end and returns its output; what the collection does with its children does not fit in that:
two children joined by a pipe with Python moving the blocks, the writer's end of data given only
after the reader succeeded (child_pipe), four pg_restore at once (backup_logical), pg_basebackup
followed line by line and killed with its process group (base_copy), and server commands bounded
by a timeout (local_server).  So every child is started here, and this file's one Popen is the only call 2.21's check
reports; it carries the check's exception inline (docs/inventory.md, "Supported combinations")."""

from __future__ import annotations

import subprocess


def start(argv, **options):
    """subprocess.Popen(argv, **options): a running child, for callers that talk to it or wait for
    it themselves."""
    # The one exception to ansible-test 2.21's ansible-bad-function (run_command), for the reasons
    # above; every other start of a child goes through here.
    return subprocess.Popen(argv, **options)  # pylint: disable=ansible-bad-function


def run(argv, env=None, timeout=None):
    """argv run to its end, its stdout and stderr captured as text: a subprocess.CompletedProcess,
    whatever its exit status (the caller says what a failure means).  A child that outlives
    `timeout` seconds is killed and subprocess.TimeoutExpired raised, as subprocess.run does;
    a program that cannot be started raises OSError."""
    with start(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as child:
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise
    return subprocess.CompletedProcess(argv, child.returncode, out, err)
