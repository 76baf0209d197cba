# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    DOCUMENTATION = r'''
options:
  userdb:
    description:
      - User database of the pair; its management database is C(<userdb>_pghainfo).
      - In a play it defaults to the host's C(forest_userdb) inventory variable.
    type: str
    required: true
  peer_host:
    description:
      - Address of the other node. Defaults to the other entry of this node's C(server_info)
        (and in a play to the host's C(forest_peer_host)), so that the peer is known even when
        this node does not answer.
    type: str
  peer_port:
    description: Port of the other node (default O(login_port)).
    type: int
'''
