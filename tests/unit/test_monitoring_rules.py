"""The alert rules and the Grafana dashboard the collection ships (roles/forest_metrics/files/): promtool checks
the rules and runs their unit tests (tests/unit/prometheus/pgforest.rules.test.yml); every dashboard expression
parses as PromQL; and every metric the rules and the dashboard read is one the exporter and the textfile timer
serve, so a renamed metric cannot leave an alert that never fires."""
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from ansible_collections.pgforest.cluster.plugins.filter.forest_metrics import METRICS, STATES
from ansible_collections.pgforest.cluster.plugins.module_utils.exporter import OWN_METRICS
from pgforest_dev import REPO

FILES = os.path.join(REPO, 'roles', 'forest_metrics', 'files')
RULES = os.path.join(FILES, 'prometheus', 'pgforest.rules.yml')
DASHBOARD = os.path.join(FILES, 'grafana', 'pgforest.json')
RULE_TESTS = os.path.join(REPO, 'tests', 'unit', 'prometheus', 'pgforest.rules.test.yml')
# What the exporter serves beyond the metrics file's names.
EXPORTER_OWN = tuple(name for _kind, name, _help, _labels in OWN_METRICS)
SERVED = frozenset([name for name, _help in METRICS] + list(EXPORTER_OWN))

# PromQL words that are not metric names: operators, modifiers and aggregation clauses.
KEYWORDS = frozenset('and or unless by without on ignoring group_left group_right offset bool inf nan'.split())
# Grafana's variables, as a query sent to Prometheus has them.
GRAFANA_VARIABLES = (('$__rate_interval', '5m'), ('$__interval', '1m'), ('$__range', '1h'), ('$pair', '.*'))


def promtool(*args):
    tool = shutil.which('promtool')
    assert tool, 'promtool is missing: install the Debian package prometheus (scripts/bootstrap.sh does)'
    return subprocess.run([tool] + list(args), capture_output=True, text=True, check=False)


def metric_names(expr):
    """The metric names a PromQL expression reads: identifiers that are not functions (followed by a
    parenthesis), keywords, label names (inside braces, or the list after by/without/on/ignoring/group_*),
    nor parts of strings, durations or numbers."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # strings
    text = re.sub(r'\{[^}]*\}', ' ', text)  # label matchers
    text = re.sub(r'\[[^\]]*\]', ' ', text)  # ranges and subqueries
    text = re.sub(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)', ' ', text)  # label lists
    text = re.sub(r'\b\d[\w.]*', ' ', text)  # numbers, durations (5m), exponents (1e9)
    names = set()
    for match in re.finditer(r'[A-Za-z_:][\w:]*', text):
        if text[match.end():].lstrip().startswith('('):
            continue  # a function or an aggregation
        if match.group(0) not in KEYWORDS:
            names.add(match.group(0))
    return names


def rule_expressions():
    with open(RULES) as handle:
        groups = yaml.safe_load(handle)['groups']
    return [(rule.get('alert') or rule.get('record'), rule['expr']) for group in groups for rule in group['rules']]


def dashboard_expressions():
    """(where, PromQL) of every panel target and every query variable (label_values(metric, label) reads
    metric), with Grafana's variables as Prometheus gets them."""
    with open(DASHBOARD) as handle:
        board = json.load(handle)
    found = []
    panels = list(board['panels'])
    while panels:
        panel = panels.pop(0)
        panels += panel.get('panels') or []
        for target in panel.get('targets') or []:
            found.append(('panel %r' % panel['title'], target['expr']))
    for variable in board['templating']['list']:
        if variable['type'] == 'query':
            query = variable['query']['query'] if isinstance(variable['query'], dict) else variable['query']
            label_values = re.match(r'^label_values\((.*),\s*\w+\)$', query)
            found.append(('variable %s' % variable['name'], label_values.group(1) if label_values else query))
    out = []
    for where, expr in found:
        for variable, value in GRAFANA_VARIABLES:
            expr = expr.replace(variable, value)
        out.append((where, expr))
    return out


def test_promtool_checks_the_rules():
    done = promtool('check', 'rules', RULES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_rules_unit_tests_pass():
    done = promtool('test', 'rules', RULE_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_rule_has_a_case_that_makes_it_fire():
    with open(RULE_TESTS) as handle:
        cases = yaml.safe_load(handle)['tests']
    fired = set(test['alertname'] for case in cases for test in case.get('alert_rule_test') or [] if test['exp_alerts'])
    assert sorted(set(name for name, _expr in rule_expressions()) - fired) == []


def test_every_dashboard_expression_is_promql(tmp_path):
    """promtool parses each expression as the expression of a recording rule."""
    expressions = dashboard_expressions()
    assert len(expressions) > 10
    records = [dict(record='dashboard:expr_%d' % number, expr=expr) for number, (_where, expr) in enumerate(expressions)]
    rules = dict(groups=[dict(name='dashboard', rules=records)])
    path = tmp_path / 'dashboard.rules.yml'
    path.write_text(yaml.safe_dump(rules))
    done = promtool('check', 'rules', str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_reads_its_datasource_from_a_variable():
    """Imported or provisioned, the panels follow the Prometheus the DBA picks."""
    with open(DASHBOARD) as handle:
        text = handle.read()
    assert '${DS_' not in text
    board = json.loads(text)
    assert [one['name'] for one in board['templating']['list'] if one['type'] == 'datasource'] == ['datasource']
    for panel in board['panels']:
        if panel['type'] != 'row':
            assert panel['datasource'] == {'type': 'prometheus', 'uid': '${datasource}'}, panel['title']


@pytest.mark.parametrize('source', ['rules', 'dashboard'])
def test_every_metric_used_is_one_the_exporter_serves(source):
    expressions = rule_expressions() if source == 'rules' else dashboard_expressions()
    unknown = sorted((where, name) for where, expr in expressions for name in metric_names(expr) - SERVED)
    assert unknown == []
    used = set(name for _where, expr in expressions for name in metric_names(expr))
    assert len(used) >= 8, used  # the extraction found the metrics, not nothing


@pytest.mark.parametrize('expr, names', [
    ('min by (pair, userdb, serverid) (pgforest_node_validity) == -1', {'pgforest_node_validity'}),
    ('pgforest_database_state{state="split_brain", pair=~"a|b"} == 1', {'pgforest_database_state'}),
    ('deriv(pgforest_replication_slot_lag_bytes[10m]) > 0 and pgforest_replication_slot_lag_bytes > 1e9',
     {'pgforest_replication_slot_lag_bytes'}),
    ('pgforest_database_healthy == 0 unless on (pair, userdb) (pgforest_database_state{state=~"down"} == 1)',
     {'pgforest_database_healthy', 'pgforest_database_state'}),
    ('time() - pgforest_status_time_seconds > 300 or absent(pgforest_statu_time_seconds)',
     {'pgforest_status_time_seconds', 'pgforest_statu_time_seconds'}),
    ('rate(node_load1[5m]) * on (instance) group_left (nodename) node_uname_info',
     {'node_load1', 'node_uname_info'}),
])
def test_metric_names_finds_every_metric_an_expression_reads(expr, names):
    """Also the misspelt and foreign ones, which the test above then refuses."""
    assert metric_names(expr) == names
    assert (metric_names(expr) - SERVED) == names - SERVED


def panel_expression(title):
    with open(DASHBOARD) as handle:
        board = json.load(handle)
    exprs = [target['expr'] for panel in board['panels'] if panel.get('title') == title for target in panel['targets']]
    assert len(exprs) == 1, (title, exprs)
    expr = exprs[0]
    for variable, value in GRAFANA_VARIABLES:
        expr = expr.replace(variable, value)
    return expr, board


def test_the_state_timeline_gives_each_state_the_value_its_mapping_names(tmp_path):
    """Prometheus evaluates the panel's expression (promtool's promql_expr_test) on one database in each state:
    each gets the number the panel's value mapping shows as that state's name."""
    expr, board = panel_expression('Pair states over time')
    panel = [one for one in board['panels'] if one.get('title') == 'Pair states over time'][0]
    mapping = dict((int(value), option['text'])
                   for value, option in panel['fieldConfig']['defaults']['mappings'][0]['options'].items())
    series = []
    for number, state in enumerate(STATES):
        for other in STATES:  # every state's series, as the exporter gives them: 1 for the database's, 0 else
            series.append(dict(series='pgforest_database_state{pair="p%d",userdb="app",state="%s"}' % (number, other),
                               values='%d' % (other == state)))
    expected = [dict(labels='{pair="p%d",userdb="app"}' % number, value=number) for number in range(len(STATES))]
    assert [mapping[number] for number in range(len(STATES))] == list(STATES)
    cases = dict(rule_files=[], evaluation_interval='1m', tests=[dict(
        interval='1m', input_series=series,
        promql_expr_test=[dict(expr=expr, eval_time='0m', exp_samples=expected)])])
    path = tmp_path / 'states.test.yml'
    path.write_text(yaml.safe_dump(cases))
    done = promtool('test', 'rules', str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_validity_per_node_shows_the_worst_view(tmp_path):
    expr, _board = panel_expression('Validity per node')
    series = [dict(series='pgforest_node_validity{pair="p",userdb="app",serverid="1",view="%s"}' % view, values=value)
              for view, value in (('0', '-1'), ('1', '1'))]
    cases = dict(rule_files=[], evaluation_interval='1m', tests=[dict(
        interval='1m', input_series=series, promql_expr_test=[dict(
            expr=expr, eval_time='0m', exp_samples=[dict(labels='{pair="p",userdb="app",serverid="1"}', value=-1)])])])
    path = tmp_path / 'validity.test.yml'
    path.write_text(yaml.safe_dump(cases))
    done = promtool('test', 'rules', str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboards_panels_have_their_own_ids_and_places():
    """Grafana keeps a panel by its id, and lays out panels that overlap on top of each other."""
    with open(DASHBOARD) as handle:
        panels = json.load(handle)['panels']
    assert len(set(panel['id'] for panel in panels)) == len(panels)
    cells = {}
    for panel in panels:
        place = panel['gridPos']
        assert place['x'] + place['w'] <= 24, panel['title']
        for x in range(place['x'], place['x'] + place['w']):
            for y in range(place['y'], place['y'] + place['h']):
                assert (x, y) not in cells, (panel['title'], cells.get((x, y)))
                cells[(x, y)] = panel['title']
