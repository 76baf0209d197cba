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
'''
