"""Recording for the reliability and lab suites: each case records what it did and
how it ended; at the end of a run the records go to docs/reliability/results.json
and docs/RELIABILITY.md is written from them (scripts/reliability_report.py).
A suite's conftest imports the fixture and the two hooks from here."""
import datetime
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, 'docs', 'reliability', 'results.json')
SECTION_OF_FILE = {
    'test_soak.py': 'soak', 'test_faults.py': 'faults', 'test_bad_input.py': 'bad_input',
    'test_split_brain.py': 'split_brain', 'test_security.py': 'security', 'test_fuzz.py': 'fuzz',
    'test_first_contact.py': 'lab_first_contact', 'test_playbooks.py': 'lab_playbooks',
    'test_network_faults.py': 'lab_network_faults',
}
_cases = {}      # nodeid -> record
_sections = set()


def soak_recoveries():
    """How many recoveries the soak runs: 4 in make test, FOREST_SOAK_RECOVERIES (24) in make soak."""
    return int(os.environ.get('FOREST_SOAK_RECOVERIES', '4'))


def section_of(nodeid):
    section = SECTION_OF_FILE[os.path.basename(nodeid.split('::')[0])]
    if section == 'soak' and soak_recoveries() < 20:
        return 'soak_short'
    return section


@pytest.fixture
def record(request):
    """record(what=..., **figures): what the case did and measured, kept with its outcome."""
    entry = _cases.setdefault(request.node.nodeid, dict(case=request.node.name, outcome='not run', facts={}))

    def add(**facts):
        entry['facts'].update(facts)
    return add


def pytest_runtest_logreport(report):
    entry = _cases.setdefault(report.nodeid, dict(case=report.nodeid.split('::')[-1], outcome='not run', facts={}))
    _sections.add(section_of(report.nodeid))
    if report.when == 'call' or report.outcome != 'passed':
        entry['outcome'] = report.outcome if report.when == 'call' else '%s in %s' % (report.outcome, report.when)
        entry['seconds'] = round(report.duration, 1)
        if report.failed:
            entry['facts']['failure'] = str(report.longrepr).splitlines()[-1][:300]


def pytest_sessionfinish(session):
    if not _sections:
        return
    try:
        with open(RESULTS) as handle:
            results = json.load(handle)
    except (OSError, ValueError):
        results = {}
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                            cwd=REPO, check=False).stdout.strip()
    edited = subprocess.run(['git', 'status', '--porcelain', '--', 'plugins', 'roles', 'playbooks', 'tests'],
                            capture_output=True, text=True, cwd=REPO, check=False).stdout.strip()
    commit += ' (with uncommitted changes)' if edited else ''
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')
    for section in _sections:  # a partial run (-k) updates its cases and keeps the others
        kept = dict((case['case'], case) for case in results.get(section, {}).get('cases', []))
        for nodeid, entry in _cases.items():
            if section_of(nodeid) == section and entry['outcome'] != 'not run':
                kept[entry['case']] = dict(entry, run_at=when, commit=commit)
        results[section] = dict(run_at=when, commit=commit, cases=[kept[name] for name in sorted(kept)])
    with open(RESULTS, 'w') as handle:
        json.dump(results, handle, indent=1, sort_keys=True)
    subprocess.run([sys.executable, os.path.join(REPO, 'scripts', 'reliability_report.py')], check=False)
