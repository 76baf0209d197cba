"""module_runner.run_job: every way a module's work can end becomes exit_json or a
fail_json a DBA can read; the job is closed in every case."""
import psycopg
import pytest

from ansible_collections.pgforest.cluster.plugins.module_utils.errors import ForestError
from ansible_collections.pgforest.cluster.plugins.module_utils.forest_pg import ForestPgError, connection_problems
from ansible_collections.pgforest.cluster.plugins.module_utils.module_runner import run_job


class Ended(Exception):
    """What exit_json/fail_json raise here (SystemExit in a real module)."""


class FakeModule(object):
    def __init__(self):
        self.ended = None

    def exit_json(self, **result):
        self.ended = ('exit', result)
        raise Ended()

    def fail_json(self, **result):
        self.ended = ('fail', result)
        raise Ended()


class Job(object):
    def __init__(self):
        self.closed = False

    def failure_result(self):
        return dict(progress=['step one'])

    def close(self):
        self.closed = True


def ended(work):
    module, job = FakeModule(), Job()

    def wrapped(slot):
        slot.job = job
        return work()
    with pytest.raises(Ended):
        run_job(module, wrapped)
    assert job.closed
    return module.ended


def test_a_result_is_exit_json():
    assert ended(lambda: dict(changed=False, x=1)) == ('exit', dict(changed=False, x=1))


def test_a_refusal_is_its_message_with_the_partial_result():
    def refuse():
        raise ForestError('cannot do that: do this instead')
    kind, result = ended(refuse)
    assert kind == 'fail' and result == dict(msg='cannot do that: do this instead', progress=['step one'])


def test_a_connection_error_names_the_node_and_the_way_out():
    def lost():
        raise ForestPgError('serverid 1 (10.0.0.2:5432/userdb)', 'connect', 'Connection refused')
    kind, result = ended(lost)
    assert kind == 'fail' and result['msg'].startswith('serverid 1 (10.0.0.2:5432/userdb): connect failed')
    assert 'no server listens there' in result['msg']


@pytest.mark.parametrize('exc, words', [
    (psycopg.OperationalError('server closed the connection unexpectedly'),
     ['a connection failed', 'server closed the connection', 'Check that both servers run']),
    (PermissionError(13, 'Permission denied', '/backups/x'), ['Permission denied', 'check the path']),
    (KeyError('udb_url'), ['internal error in pgforest.cluster (KeyError', 'this is a bug']),
])
def test_anything_else_is_a_clear_failure_not_a_traceback(exc, words):
    def crash():
        raise exc
    kind, result = ended(crash)
    assert kind == 'fail' and result['progress'] == ['step one']
    for word in words:
        assert word in result['msg'], result['msg']
    assert 'Traceback' in result['exception']


@pytest.mark.parametrize('params, message', [
    (dict(connect_timeout=0, statement_timeout=30000), 'connect_timeout must be 1 to 86400 seconds (got 0)'),
    (dict(connect_timeout=2 ** 63, statement_timeout=30000), 'connect_timeout must be 1 to 86400 seconds'),
    (dict(connect_timeout=3, statement_timeout=-1), 'statement_timeout must be 1 to 2147483647 milliseconds (got -1)'),
    (dict(login_port=0), 'login_port must be a TCP port, 1 to 65535 (got 0)'),
    (dict(peer_port=65536), 'peer_port must be a TCP port'),
    (dict(login_host=''), 'login_host must be a non-empty name'),
])
def test_connection_options_out_of_range_are_named(params, message):
    problem = connection_problems(params)
    assert message in problem and problem.endswith('Nothing was changed')


def test_connection_options_in_range_pass():
    assert connection_problems(dict(connect_timeout=1, statement_timeout=1, login_port=5432, peer_port=None,
                                    login_host='db1', peer_host=None, login_user='postgres')) is None
