"""Every module's main() under random options (hypothesis): never an unhandled
exception, never changed=true on a refusal.  Runs in this process against
addresses where no server listens, so every path ends in argument checks or a
connection refusal, and nothing on the sandbox can change."""
import contextlib
import importlib
import io
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible.module_utils import basic

MODULES = ['forest_status', 'forest_mngdb', 'forest_dbsync', 'forest_recover', 'forest_backup', 'forest_restore']
# Nothing listens there (the sandbox uses 127.0.0.11 and .12).
NOWHERE = '127.0.0.1'
EXAMPLES = 150
HOSTILE_TEXT = st.one_of(
    st.text(max_size=70),
    st.sampled_from(['', ' ', 'a"b', "it's", 'x.y', 'Sales Ünïcode', 'u' * 64, 'ü' * 40, '\x00', '-1',
                     '"; DROP TABLE x; --', '../../etc/passwd', '%s %d {0}', 'None', 'latest']))
NUMBERS = st.one_of(st.integers(-3, 3), st.sampled_from([-(2 ** 31), 2 ** 31, 2 ** 63, 65536, 70000]))
FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), NUMBERS)


def value_for(name, spec):
    if name in ('login_host', 'peer_host'):
        return st.just(NOWHERE)
    if name in ('login_port', 'peer_port'):
        return st.sampled_from([1, 2, 0, -1, 65536, 'x'])
    if spec.get('choices'):
        return st.one_of(st.sampled_from(list(spec['choices'])), st.sampled_from(['bogus', 7, '']))
    by_type = {
        'str': HOSTILE_TEXT, 'path': st.one_of(HOSTILE_TEXT, st.sampled_from(['/nonexistent/x', '/tmp', '/'])),
        'int': st.one_of(NUMBERS, HOSTILE_TEXT), 'float': st.one_of(FLOATS, HOSTILE_TEXT),
        'bool': st.one_of(st.booleans(), st.sampled_from(['maybe', 2])),
        'list': st.one_of(st.lists(HOSTILE_TEXT, max_size=3), HOSTILE_TEXT),
        'dict': st.one_of(st.dictionaries(HOSTILE_TEXT, st.one_of(HOSTILE_TEXT, NUMBERS), max_size=3), HOSTILE_TEXT),
    }
    return by_type[spec.get('type', 'str')]


def argument_spec(module_name):
    """The module's options, read from its own argument spec by running it with --help-like arguments."""
    module = importlib.import_module('ansible_collections.pgforest.cluster.plugins.modules.' + module_name)
    captured = {}

    class Stop(Exception):
        pass

    def capture(*_args, **kwargs):
        captured.update(kwargs.get('argument_spec', {}))
        raise Stop()
    original = basic.AnsibleModule.__init__
    basic.AnsibleModule.__init__ = capture
    try:
        module.main()
    except Stop:
        pass
    finally:
        basic.AnsibleModule.__init__ = original
    return module, captured


@st.composite
def options(draw, spec):
    """The login options (at NOWHERE) and up to three others, each with a random value: few
    enough that many inputs pass the checks and reach the connection and the job's own paths."""
    names = draw(st.lists(st.sampled_from(sorted(set(spec) - {'login_host', 'login_port'})), max_size=3,
                          unique=True))
    args = dict(login_host=NOWHERE, login_port=draw(st.sampled_from([1, 1, 1, 2, 0, 65536, 'x'])),
                userdb=draw(st.sampled_from(['userdb', 'userdb', 'Sales Ünïcode', 'a"b'])))
    args.update((name, draw(value_for(name, spec[name]))) for name in names)
    return args


def run_main(module, args, check_mode):
    """main() with args; (result dict, None) or (None, the exception that escaped)."""
    basic._ANSIBLE_ARGS = json.dumps({'ANSIBLE_MODULE_ARGS': dict(args, _ansible_check_mode=check_mode)}).encode()
    basic._ANSIBLE_PROFILE = 'legacy'
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            module.main()
    except SystemExit:
        return json.loads(out.getvalue()), None
    except BaseException as exc:  # pylint: disable=broad-except
        return None, exc
    return None, AssertionError('main() returned without exit_json or fail_json')


TALLY = {}


@pytest.mark.parametrize('module_name', MODULES)
def test_random_options_never_crash_and_refusals_change_nothing(module_name, record):
    module, spec = argument_spec(module_name)
    assert 'userdb' in spec and 'login_host' in spec  # the spec was read
    tally = TALLY.setdefault(module_name, dict(tried=0, refused=0, answered=0, tracebacks=0, internal_errors=0))

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(args=options(spec), check_mode=st.booleans())
    def attempt(args, check_mode):
        tally['tried'] += 1
        result, escaped = run_main(module, args, check_mode)
        if escaped is not None:
            tally['tracebacks'] += 1
            raise AssertionError('%s escaped main() with %r' % (type(escaped).__name__, args)) from escaped
        if not result.get('failed'):
            tally['answered'] += 1
        else:
            tally['refused'] += 1
            assert result.get('changed') in (None, False), (args, result)
            if 'internal error' in result['msg']:
                tally['internal_errors'] += 1
            assert 'internal error' not in result['msg'], (args, result['msg'])
            assert "{'" not in result['msg'], (args, result['msg'])  # no Python dict repr
    try:
        attempt()
    finally:
        record(**tally)
    assert tally['tried'] >= EXAMPLES
