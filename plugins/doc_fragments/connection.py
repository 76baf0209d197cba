# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  login_host:
    description:
      - Address of the node this task talks to.
      - In a play it defaults to the host's C(forest_pg_host) inventory variable.
    type: str
    default: localhost
    aliases: [host]
  login_port:
    description: Port of that node (default from C(forest_pg_port)).
    type: int
    default: 5432
    aliases: [port]
  login_user:
    description: Superuser to log in as, on both nodes (default from C(forest_pg_user)).
    type: str
    default: postgres
    aliases: [user]
  login_password:
    description:
      - Its password (default from C(forest_pg_password), else the E(PGPASSWORD) environment variable).
      - Never logged or returned.
    type: str
    aliases: [password]
  connect_timeout:
    description: Seconds to wait for a node to accept a connection (libpq C(connect_timeout), at least 2 in effect).
    type: int
    default: 3
  statement_timeout:
    description: Milliseconds any statement (and lock wait) of the module may take on a node.
    type: int
    default: 30000
  ssl_mode:
    description:
      - libpq C(sslmode) of every connection to either node, of the client programs the module runs (psql,
        pg_dump, pg_basebackup) and of a recovered node's C(primary_conninfo) while it streams.
      - Unset, libpq's default, C(prefer) (encrypted when the server offers it, unverified).
      - In a play it defaults to the host's C(forest_pg_ssl_mode); when C(forest_tls) is true, to C(verify-full)
        (the node's certificate signed by the pair's CA and naming the address connected to).
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ssl_rootcert:
    description:
      - File on the host the module runs on with the CA certificate(s) the nodes' certificates must chain to
        (libpq C(sslrootcert)); the PostgreSQL OS user must be able to read it (a recovered standby uses it).
      - In a play it defaults to C(forest_pg_ssl_rootcert); when C(forest_tls) is true, to the CA certificate the
        C(pgforest.cluster.forest_node) role installs on the node (C(<node base dir>/tls/ca.crt)).
    type: path
  ssl_cert:
    description:
      - Client certificate file (libpq C(sslcert)), for nodes whose C(pg_hba.conf) asks for one
        (default from C(forest_pg_ssl_cert)).
    type: path
  ssl_key:
    description:
      - Its private key file (libpq C(sslkey)); libpq accepts it owned by the user it runs as with mode 0600, or
        owned by root with mode 0640 (make its group the PostgreSQL OS user's, since pg_basebackup and the
        standby run as that user). Default from C(forest_pg_ssl_key).
    type: path
'''
