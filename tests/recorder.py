"""Recording for the reliability and lab suites: each case records what it did and
how it ended; at the end of a run the records go to tests/output/reliability/results.json
(git-ignored; FOREST_RESULTS_DIR names another directory) and RELIABILITY.md beside it is
written from them (scripts/reliability_report.py).  `make publish-reliability` copies a run's
sections into docs/.  A suite's conftest imports the fixture and the two hooks from here.

With parallel workers (pytest-xdist) each worker runs cases and the controller writes the
results: the figures a case records travel in its report's user_properties."""
import datetime
import fcntl
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.environ.get('FOREST_RESULTS_DIR') or os.path.join(REPO, 'tests', 'output', 'reliability')
SECTION_OF_FILE = {
    'test_soak.py': 'soak', 'test_faults.py': 'faults', 'test_bad_input.py': 'bad_input',
    'test_split_brain.py': 'split_brain', 'test_mess.py': 'mess', 'test_security.py': 'security', 'test_fuzz.py': 'fuzz',
    'test_first_contact.py': 'lab_first_contact', 'test_playbooks.py': 'lab_playbooks',
    'test_network_faults.py': 'lab_network_faults', 'test_tls.py': 'lab_production',
    'test_upgrade.py': 'lab_playbooks',
    # A name two suites share: the lab's file only (tests/integration/test_exporter.py is no reliability case).
    'lab/test_exporter.py': 'lab_production',
}
_cases = {}      # nodeid -> record
_sections = set()


def soak_recoveries():
    """How many recoveries the soak runs: 4 in make test, FOREST_SOAK_RECOVERIES (24) in make soak."""
    return int(os.environ.get('FOREST_SOAK_RECOVERIES', '4'))


def section_of(nodeid):
    """The report section of a case; None for a case of another suite (with parallel workers the
    controller calls this hook for every case, the suite's conftest notwithstanding)."""
    path = nodeid.split('::')[0]
    section = SECTION_OF_FILE.get('/'.join(path.split('/')[-2:]), SECTION_OF_FILE.get(os.path.basename(path)))
    if section == 'soak' and soak_recoveries() < 20:
        return 'soak_short'
    return section


@pytest.fixture
def record(request):
    """record(what=..., **figures): what the case did and measured, kept with its outcome."""
    recorded = {}
    request.node.user_properties.append(('facts', recorded))

    def add(**facts):
        recorded.update(facts)
    return add


def pytest_runtest_logreport(report):
    if section_of(report.nodeid) is None:
        return
    # A run on another platform (FOREST_RESULTS_VARIANT, e.g. the lab's Debian 13 smoke) keeps its cases beside
    # the default run's instead of replacing them.
    variant = os.environ.get('FOREST_RESULTS_VARIANT')
    case = report.nodeid.split('::')[-1] + (' (%s)' % variant if variant else '')
    entry = _cases.setdefault(report.nodeid, dict(case=case, outcome='not run', facts={}))
    _sections.add(section_of(report.nodeid))
    for name, value in report.user_properties:
        if name == 'facts':
            entry['facts'].update(value)
    if report.when == 'call' or report.outcome != 'passed':
        entry['outcome'] = report.outcome if report.when == 'call' else '%s in %s' % (report.outcome, report.when)
        entry['seconds'] = round(report.duration, 1)
        if report.failed:
            entry['facts']['failure'] = str(report.longrepr).splitlines()[-1][:300]


def pytest_sessionfinish(session):
    if not _sections or hasattr(session.config, 'workerinput'):  # a worker: the controller writes
        return
    results_file = os.path.join(RESULTS_DIR, 'results.json')
    os.makedirs(RESULTS_DIR, exist_ok=True)
    # make test's chains end their runs at any time: one read-update-write at a time, or one loses another's.
    with open(results_file + '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        write_results(results_file)


def expanded(entry):
    """A case that checks many inputs in one run (record(subcases=[dict(case=..., outcome=..., facts=...)])) is a
    row per input in the report, as if each had been a case of its own; the others are one row."""
    subcases = entry['facts'].get('subcases')
    if not subcases:
        return [entry]
    # A case that failed where no input did (its set-up, a check of them all) gives its outcome to every row.
    unexplained = entry['outcome'] != 'passed' and all(sub['outcome'] == 'passed' for sub in subcases)
    why = {'failure': entry['facts'].get('failure')} if unexplained else {}
    return [dict(case=sub['case'], facts=dict(sub.get('facts', {}), **why),
                 outcome=entry['outcome'] if unexplained else sub['outcome']) for sub in subcases]


def write_results(results_file):
    try:
        with open(results_file) as handle:
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
                for case in expanded(entry):
                    kept[case['case']] = dict(case, run_at=when, commit=commit)
        results[section] = dict(run_at=when, commit=commit, cases=[kept[name] for name in sorted(kept)])
        if os.environ.get('FOREST_CPU_LOAD'):  # scripts/under_load.sh: CPU hogs ran beside the suite
            results[section]['cpu_load'] = os.environ['FOREST_CPU_LOAD']
    with open(results_file, 'w') as handle:
        json.dump(results, handle, indent=1, sort_keys=True)
    subprocess.run([sys.executable, os.path.join(REPO, 'scripts', 'reliability_report.py'), results_file,
                    os.path.join(RESULTS_DIR, 'RELIABILITY.md')], check=False)
