"""docs/architecture.md's layer table is the import graph pydeps draws from the checkout, and
every import goes to a lower layer."""
import json
import os
import re
import subprocess
import sys

from pgforest_dev import REPO

DOC = os.path.join(REPO, 'docs', 'architecture.md')
ROW = re.compile(r'^\| (\d+) \| `(\w+)\.py` \| .* \| ([\w, —]+) \|$')


def documented():
    """{file: (layer, {imports})} from the table."""
    table = {}
    with open(DOC) as handle:
        for line in handle:
            match = ROW.match(line.strip())
            if match:
                imports = set() if match.group(3).strip() == '—' else set(
                    name.strip() for name in match.group(3).split(','))
                table[match.group(2)] = (int(match.group(1)), imports)
    return table


def drawn():
    """{file: {imports}} inside module_utils, as pydeps sees them (no collection path needed)."""
    pydeps = os.path.join(os.path.dirname(sys.executable), 'pydeps')
    out = subprocess.run([pydeps, 'module_utils', '--show-deps', '--no-output', '--no-config'],
                         cwd=os.path.join(REPO, 'plugins'), capture_output=True, text=True, check=True).stdout
    graph = {}
    for name, facts in json.loads(out).items():
        if name.startswith('module_utils.'):
            graph[name.split('.', 1)[1]] = set(imported.split('.', 1)[1] for imported in facts.get('imports', [])
                                               if imported.startswith('module_utils.'))
    return graph


def test_every_module_utils_file_is_in_the_table_with_its_imports():
    table, graph = documented(), drawn()
    files = set(name[:-3] for name in os.listdir(os.path.join(REPO, 'plugins', 'module_utils')) if name.endswith('.py'))
    assert set(table) == files == set(graph)
    assert dict((name, imports) for name, (_layer, imports) in table.items()) == graph


def test_imports_go_down_the_layers_only():
    table = documented()
    upward = [(name, imported) for name, (layer, imports) in table.items() for imported in imports
              if table[imported][0] >= layer]
    assert upward == []
