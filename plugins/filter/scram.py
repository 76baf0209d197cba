# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SCRAM-SHA-256 verifiers, computed on the controller.

The forest_node role sets a password by sending its verifier (what pg_authid
stores), so the clear text never reaches the server, its logs or a process
list, and checks an existing verifier without logging in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import unicodedata

from ansible.errors import AnsibleFilterError

ITERATIONS = 4096  # PostgreSQL's default scram_iterations


def _salted(password, salt, iterations):
    # SASLprep's main step; libpq applies it on login too.
    normalized = unicodedata.normalize('NFKC', password)
    return hashlib.pbkdf2_hmac('sha256', normalized.encode('utf-8'), salt, iterations)


def _keys(password, salt, iterations):
    salted = _salted(password, salt, iterations)
    client_key = hmac.new(salted, b'Client Key', hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b'Server Key', hashlib.sha256).digest()
    return stored_key, server_key


def _b64(data):
    return base64.b64encode(data).decode('ascii')


def scram_sha256_verifier(password, salt=None, iterations=ITERATIONS):
    """The SCRAM-SHA-256 verifier of password (random salt unless given, base64)."""
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError('scram_sha256_verifier needs a non-empty password string')
    raw_salt = base64.b64decode(salt) if salt else os.urandom(16)
    stored_key, server_key = _keys(password, raw_salt, int(iterations))
    return 'SCRAM-SHA-256$%d:%s$%s:%s' % (int(iterations), _b64(raw_salt),
                                          _b64(stored_key), _b64(server_key))


def scram_sha256_matches(password, verifier):
    """True when verifier (from pg_authid.rolpassword) was made from password."""
    if not isinstance(verifier, str) or not verifier.startswith('SCRAM-SHA-256$'):
        return False  # no password, or an md5 one: set a SCRAM verifier
    try:
        head, keys = verifier[len('SCRAM-SHA-256$'):].split('$', 1)
        iterations, salt = head.split(':', 1)
        stored_key, server_key = keys.split(':', 1)
        expected = _keys(password, base64.b64decode(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return (hmac.compare_digest(expected[0], base64.b64decode(stored_key))
            and hmac.compare_digest(expected[1], base64.b64decode(server_key)))


class FilterModule(object):
    def filters(self):
        return {
            'scram_sha256_verifier': scram_sha256_verifier,
            'scram_sha256_matches': scram_sha256_matches,
        }
