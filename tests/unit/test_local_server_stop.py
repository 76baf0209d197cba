"""LocalServer.stop (plugins/module_utils/local_server.py) when a shutdown is already under way.

Ctrl-C during a recovery's `pg_ctl stop` kills pg_ctl, not the shutdown it asked for; the rollback then
stops the server again.  If the postmaster ends between that stop's `pg_ctl status` and its `pg_ctl stop`,
the latter fails with "PID file ... does not exist": seen 1 run in 6 of test_poll_interval's SIGINT case,
whose rollback then left the node stopped.  That window lasts milliseconds on a real server, so here a
stand-in pg_ctl plays the sequence: running at the status, gone at the stop."""
import os
import pwd
import stat

import pytest

from ansible_collections.pgforest.cluster.plugins.module_utils import local_server

PG_CTL = """#!/bin/sh
# status: running while the pid file is there; stop: the server ends on its own meanwhile%s
case "$1" in
status) [ -e "%s" ] && exit 0; exit 3 ;;
stop) %s
      echo 'pg_ctl: PID file "%s" does not exist' >&2; echo 'Is server running?' >&2; exit 1 ;;
esac
exit 2
"""


def server_with_stand_in(tmp_path, ends_meanwhile):
    data_dir = tmp_path / 'data'
    data_dir.mkdir()
    (data_dir / 'PG_VERSION').write_text('15\n')
    pid_file = data_dir / 'postmaster.pid'
    pid_file.write_text('%d\n' % os.getpid())
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    script = bindir / 'pg_ctl'
    script.write_text(PG_CTL % ('' if ends_meanwhile else ' (not here: it keeps running)', pid_file,
                                'rm -f "%s"' % pid_file if ends_meanwhile else ':', pid_file))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return local_server.LocalServer(str(data_dir), str(bindir), pwd.getpwuid(os.getuid()).pw_name,
                                    str(tmp_path / 'log'), 'pg_ctl', None, 5)


def test_a_server_whose_shutdown_ends_during_the_stop_counts_as_stopped(tmp_path):
    server = server_with_stand_in(tmp_path, ends_meanwhile=True)
    assert server.running()
    assert server.stop() is True
    assert not server.running()


def test_a_stop_that_fails_while_the_server_still_runs_is_still_an_error(tmp_path):
    server = server_with_stand_in(tmp_path, ends_meanwhile=False)
    with pytest.raises(local_server.LocalServerError, match='cannot stop the server of .*PID file'):
        server.stop()
    assert server.running()
