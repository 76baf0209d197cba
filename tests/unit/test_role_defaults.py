"""One default per option in YAML too: a role's argument spec says its defaults literally (Ansible
wants them there), and a playbook's short -e names (kind, keep, mode...) say them again as play
vars; both must be the role's defaults/main.yml."""
import glob
import os
import re

import pytest
import yaml

from pgforest_dev import REPO

ROLES = sorted(os.path.basename(path) for path in glob.glob(os.path.join(REPO, 'roles', '*'))
               if os.path.exists(os.path.join(path, 'meta', 'argument_specs.yml')))
PLAIN = re.compile(r'^\{\{ *(\w+) *\}\}$')  # a role variable that is just a play var: "{{ kind }}"


def load(*parts):
    with open(os.path.join(REPO, *parts)) as handle:
        return yaml.safe_load(handle)


def literal_defaults(role):
    """The role's defaults that are values, not templates."""
    found = load('roles', role, 'defaults', 'main.yml') or {}
    return dict((name, value) for name, value in found.items() if not (isinstance(value, str) and '{{' in value))


@pytest.mark.parametrize('role', ROLES)
def test_argument_spec_defaults_are_the_roles_defaults(role):
    defaults = literal_defaults(role)
    specs = load('roles', role, 'meta', 'argument_specs.yml')['argument_specs']
    differing = [(entry, name, option['default'], defaults[name])
                 for entry, spec in specs.items() for name, option in (spec.get('options') or {}).items()
                 if 'default' in option and name in defaults and option['default'] != defaults[name]]
    assert differing == []


@pytest.mark.parametrize('playbook', ['backup.yml', 'restore.yml', 'recover.yml'])
def test_a_playbooks_short_names_default_to_the_roles_defaults(playbook):
    plays = load('playbooks', playbook)
    defaults = {}
    for role in ROLES:
        defaults.update(literal_defaults(role))
    checked, differing = 0, []
    for play in plays:
        given = play.get('vars') or {}
        for name, value in given.items():
            plain = PLAIN.match(value) if isinstance(value, str) else None
            if plain and plain.group(1) in given and name in defaults:
                checked += 1
                if given[plain.group(1)] != defaults[name]:
                    differing.append((name, given[plain.group(1)], defaults[name]))
    assert checked and differing == []
