# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # The node's server on the host the task runs on (module_utils/local_server.py).
    DOCUMENTATION = r'''
options:
  data_dir:
    description:
      - The node's data directory on this host.
      - O(data_dir), O(os_user), O(service_manager) and O(service_name) not given are taken from the inventory of the
        host the module runs on (its C(forest_node_*) variables over the layout rule, filter
        C(pgforest.cluster.node_server)), as the connection options are.
    type: path
  pg_bindir:
    description: Directory of the PostgreSQL programs; default C(/usr/lib/postgresql/<major>/bin).
    type: path
  os_user:
    description: OS user that owns the data directory and runs the server (C(postgres) unless the inventory says).
    type: str
    default: postgres
  log_file:
    description: Server log for C(pg_ctl start); default C(postgresql.log) beside the data directory.
    type: path
  service_manager:
    description: How the node's server is stopped and started, as the forest_node role set it up.
    type: str
    choices: [pg_ctl, systemd]
    default: pg_ctl
  service_name:
    description: The systemd unit of the node, with O(service_manager=systemd).
    type: str
  start_timeout:
    description: Seconds to wait for the node's server to start or stop.
    type: int
    default: 60
'''
