# -*- coding: utf-8 -*-
# Copyright: pgforest.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs the forest_backup module with connection options from the host's forest_* variables,
and the node's server (data_dir, os_user, service_manager, service_name) from its forest_node_* ones."""

from __future__ import annotations

from ansible_collections.pgforest.cluster.plugins.plugin_utils.inventory_defaults import InventoryDefaultsAction


class ActionModule(InventoryDefaultsAction):
    takes_local_server = True
