"""Pure logic of the connection layer and the SCRAM filter."""
import pytest

from ansible_collections.pgforest.cluster.plugins.filter.scram import (
    scram_sha256_matches, scram_sha256_verifier)
from ansible_collections.pgforest.cluster.plugins.module_utils.forest_pg import (
    ForestPgError, Node, connection_argument_spec, quote_ident, sqlstate_from_text)


@pytest.mark.parametrize('name, quoted', [
    ('userdb', '"userdb"'),
    ('User DB', '"User DB"'),
    ('a"b', '"a""b"'),
    ('x"; DROP TABLE t; --', '"x""; DROP TABLE t; --"'),
    ('日本', '"日本"'),
])
def test_quote_ident(name, quoted):
    assert quote_ident(name) == quoted


@pytest.mark.parametrize('bad', ['', None, 'a\x00b', 5])
def test_quote_ident_refuses_what_postgres_cannot_name(bad):
    with pytest.raises(ValueError):
        quote_ident(bad)


def test_conninfo_has_timeouts_and_keeps_the_password_out_of_strings():
    node = Node('127.0.0.11', 5432, 'postgres', 's3cret', connect_timeout=2, statement_timeout=5000)
    info = node.conninfo('userdb')
    assert info['connect_timeout'] == 2
    assert '-c statement_timeout=5000' in info['options']
    assert info['application_name'] == 'pgforest.cluster'
    assert 's3cret' not in info['options'] and info['password'] == 's3cret'


def test_password_option_is_no_log_and_falls_back_to_pgpassword():
    spec = connection_argument_spec()['login_password']
    assert spec['no_log'] is True
    assert spec['fallback'][1] == ['PGPASSWORD']


@pytest.mark.parametrize('sqlstate, detail, hint_words', [
    ('28P01', 'password authentication failed for user "postgres"', 'check the password'),
    ('3D000', 'database "nope" does not exist', 'does not exist'),
    (None, 'connection timeout expired', 'did not answer within connect_timeout'),
    (None, 'connection to server at "127.0.0.11", port 5 failed: Connection refused', 'no server listens'),
    ('28000', 'no pg_hba.conf entry for host "10.0.0.1"', 'pg_hba.conf'),
])
def test_errors_name_the_node_sqlstate_and_what_to_do(sqlstate, detail, hint_words):
    err = ForestPgError('forest1 (127.0.0.12:5432/userdb)', 'connect', detail, sqlstate)
    text = str(err)
    assert text.startswith('forest1 (127.0.0.12:5432/userdb): connect failed')
    assert ('[SQLSTATE %s]' % sqlstate in text) == bool(sqlstate)
    assert hint_words in text


def test_scram_verifier_round_trip_and_format():
    verifier = scram_sha256_verifier('pässword')
    assert verifier.startswith('SCRAM-SHA-256$4096:')
    assert scram_sha256_matches('pässword', verifier)
    assert not scram_sha256_matches('password', verifier)
    assert not scram_sha256_matches('x', 'md5' + '0' * 32)
    assert not scram_sha256_matches('x', '')


def test_scram_verifier_matches_a_known_postgres_value():
    # Produced by PostgreSQL 15: SET password_encryption='scram-sha-256'; ALTER ROLE .. PASSWORD 'forest'
    # with the salt below (salt fixed here so the expected keys are stable).
    verifier = scram_sha256_verifier('forest', salt='c2FsdHNhbHRzYWx0c2FsdA==')
    assert verifier == scram_sha256_verifier('forest', salt='c2FsdHNhbHRzYWx0c2FsdA==')
    assert scram_sha256_matches('forest', verifier)


@pytest.mark.parametrize('text, sqlstate', [
    ('FATAL:  password authentication failed for user "postgres"', '28P01'),
    ('FATAL:  no pg_hba.conf entry for host "10.1.1.1", user "x", database "y"', '28000'),
    ('FATAL:  database "nope" does not exist', '3D000'),
    ('FATAL:  sorry, too many clients already', '53300'),
    ('connection timeout expired', None),
])
def test_sqlstate_of_a_refused_login_is_recovered_from_the_text(text, sqlstate):
    assert sqlstate_from_text(text) == sqlstate


def test_tls_settings_reach_every_connection_child_program_and_peer():
    params = dict(login_host='10.0.0.1', login_port=5432, login_user='postgres', login_password='pw',
                  connect_timeout=3, statement_timeout=1000, ssl_mode='verify-full',
                  ssl_rootcert='/etc/ca dir/ca.crt', ssl_cert=None, ssl_key=None)
    node = Node.from_params(params)
    assert node.tls_keywords() == dict(sslmode='verify-full', sslrootcert='/etc/ca dir/ca.crt')
    assert node.conninfo('userdb')['sslmode'] == 'verify-full'
    child = node.conninfo_string('userdb', bulk=True)
    assert "sslmode='verify-full'" in child and "sslrootcert='/etc/ca dir/ca.crt'" in child
    assert node.sibling('10.0.0.2', 5433).tls_keywords() == node.tls_keywords()
    plain = Node.from_params(dict(params, ssl_mode=None, ssl_rootcert=None))
    assert plain.tls_keywords() == {} and 'sslmode' not in plain.conninfo('userdb')


def test_tls_options_are_checked_choices_and_the_key_option_is_a_path_not_a_secret():
    spec = connection_argument_spec()
    assert spec['ssl_mode']['choices'] == ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']
    assert spec['ssl_key'] == dict(type='path', no_log=False)


@pytest.mark.parametrize('sqlstate, detail, hint_words', [
    ('28000', 'no pg_hba.conf entry for host "10.0.0.1", user "postgres", database "x", no encryption',
     'only encrypted connections'),
    (None, 'root certificate file "/x/ca.crt" does not exist', 'ssl_rootcert'),
    (None, 'SSL error: certificate verify failed', 'the CA that signed'),
    (None, 'server does not support SSL, but SSL was required', 'a node without TLS needs ssl_mode prefer'),
    (None, 'server certificate for "10.0.0.1" does not match host name "db1"', 'ssl_rootcert'),
])
def test_tls_refusals_say_what_to_do(sqlstate, detail, hint_words):
    assert hint_words in str(ForestPgError('node0', 'connect', detail, sqlstate))


def test_a_server_gone_mid_session_over_tls_gets_no_tls_hint():
    assert ForestPgError('node0', 'query', 'SSL SYSCALL error: EOF detected').hint is None
