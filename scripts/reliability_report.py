"""Write a reliability report from recorded results; publish a run's results into docs/.

    reliability_report.py RESULTS DOC   write DOC from RESULTS (the recorder does this after each run,
                                        into tests/output/reliability/)
    reliability_report.py --publish     merge the sections of tests/output/reliability/results.json
                                        into docs/reliability/results.json, rewrite docs/RELIABILITY.md
                                        (make publish-reliability)

Every figure in the document comes from the recorded runs; nothing here is typed by hand."""
import json
import os
import statistics
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, 'docs', 'reliability', 'results.json')
DOC = os.path.join(REPO, 'docs', 'RELIABILITY.md')
RUN_RESULTS = os.path.join(REPO, 'tests', 'output', 'reliability', 'results.json')

SECTIONS = [
    ('soak', 'Repeated online recoveries under load (`make soak`)',
     'The reference driver (dev/pgforest_dev/forest_driver.py) writes throughout; one node breaks, forest_recover '
     'mode=online brings it back, the other node breaks next. After each recovery: every acknowledged write '
     'exactly once on both nodes, forest_dbsync compare equal, sequences aligned, cluster healthy.'),
    ('soak_short', 'Online recoveries under load, short run (`make test`)',
     'The same as the soak, one recovery per kind of breakage.'),
    ('faults', 'Faults injected at each step (`make test`)',
     'A fault hits a running step; afterwards forest_status must name the state, the valid node keeps every '
     'row it had, and a re-run (or phase=cancel, then a re-run) completes with the pair healthy and equal.'),
    ('mess', 'Real-world mess: batch jobs, maintenance, drivers writing in either order (`make test`)',
     'The reference driver writes throughout. A 45-s batch transaction and a stream of 5-s transactions on the '
     'source during an online recovery, VACUUM and ANALYZE in a loop during another, and online compares with '
     'three drivers (one writing serverid 1 first): every freeze begun within notice + 1 s, the driver\'s longest '
     'gap within notice + 1.5 s, lost and duplicated counted after each case, no false difference.'),
    ('bad_input', 'Bad input (`make test`)',
     'Each case must fail with a message that says what to do, and change nothing: both management '
     'databases and a checksum of both user databases are the same before and after.'),
    ('fuzz', 'Random options to every module (`make test`)',
     'hypothesis draws options for each module (hostile text, out-of-range and wrong-typed values; the nodes '
     'are addresses where nothing listens): tried = inputs, tracebacks must be 0, a refusal never changed=true.'),
    ('split_brain', 'Split brain (`make test`)',
     'Both nodes valid or each marking the other broken, with different writes on each.'),
    ('security', 'Secrets and injection (`make test`)',
     'A known password through every module and playbook at -vvv; provisioned pg_hba; hostile identifiers.'),
    ('lab_first_contact', 'Real hosts: first contact (`make lab-test`, in `make test`)',
     'Two systemd-nspawn machines reset to a bare Debian image, provisioned over SSH with become '
     '(lab/inventory.yml); see docs/lab.md.'),
    ('lab_playbooks', 'Real hosts: every playbook (`make lab-test`)',
     'config, dbsync, recover online (driver on an application host) and offline, a power cycle, '
     'backup and restore, all over SSH.'),
    ('lab_network_faults', 'Real hosts: network faults (`make lab-test`)',
     'nftables drops in the lab bridge and a pulled cable, with the reference driver writing from application '
     'hosts; every acknowledged write checked afterwards.'),
    ('lab_production', 'TLS and the metrics (`make lab-test`, and the sandbox\'s TLS cases in `make test`)',
     'tests/lab/test_tls.py and test_exporter.py on the two machines (the lab runs with forest_tls, every other '
     'lab case too): plain TCP refused, sessions checked in pg_stat_ssl, the exporter and the metrics timer on the '
     'monitoring host (node0); tests/integration/test_tls.py on the loopback sandbox: TLS on and off, renewal, a '
     'client certificate.'),
]


def cell(value):
    text = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
    return text.replace('|', '\\|').replace('\n', ' ')


def under_load(section):
    """How the run was loaded: `make test-loaded` (scripts/under_load.sh) runs the suites with CPU hogs beside."""
    if not section.get('cpu_load'):
        return ''
    return ', with CPU hogs beside the suite (`%s`, `make test-loaded`)' % section['cpu_load']


def case_table(cases, section):
    lines = ['| case | outcome | s | what happened | run at, commit |', '|---|---|---|---|---|']
    for case in cases:
        facts = dict((k, v) for k, v in case['facts'].items() if k != 'recoveries')
        lines.append('| %s | %s | %s | %s | %s %s |' % (
            cell(case['case']), case['outcome'], case.get('seconds', ''),
            '<br>'.join('%s: %s' % (k, cell(v)) for k, v in sorted(facts.items())),
            case.get('run_at', section['run_at']), case.get('commit', section['commit'])))
    return lines


def soak_lines(cases):
    recoveries = [r for case in cases for r in case['facts'].get('recoveries', [])]
    if not recoveries:
        return []
    windows = [r['freeze_window'] for r in recoveries if r.get('freeze_window') is not None]
    ok = [r for r in recoveries if r.get('ok')]
    lines = ['', '- recoveries run: **%d** (%d passed every check)' % (len(recoveries), len(ok)),
             '- acknowledged writes checked on both nodes: **%d**; lost: **%d**; duplicated: **%d**' % (
                 sum(r['acked'] for r in recoveries), sum(r['lost'] for r in recoveries),
                 sum(r['duplicated'] for r in recoveries)),
             '- kinds of breakage: %s' % ', '.join('%s ×%d' % (kind, sum(1 for r in recoveries if r['kind'] == kind))
                                                   for kind in sorted(set(r['kind'] for r in recoveries)))]
    if windows:
        lines.append('- write freeze (udb_validity 0 until 1 again): median **%.2f s**, max **%.2f s**, min %.2f s'
                     % (statistics.median(windows), max(windows), min(windows)))
    lines += ['', '| # | broke | how | writes acked | lost | dup | freeze s | recovery s | compare | sequences |',
              '|---|---|---|---|---|---|---|---|---|---|']
    for number, r in enumerate(recoveries, 1):
        lines.append('| %d | serverid %d | %s | %d | %d | %d | %s | %.1f | %s | %s |' % (
            number, r['target'], r['kind'], r['acked'], r['lost'], r['duplicated'], r.get('freeze_window'),
            r['seconds'], 'equal' if r['equal'] else 'DIFFERENT', 'aligned' if r['sequences_aligned'] else 'NOT'))
    return lines


def write_report(results_file, doc):
    with open(results_file) as handle:
        results = json.load(handle)
    out = ['# Reliability and security', '',
           'Generated by `scripts/reliability_report.py` from the results that the suite in `tests/reliability/` '
           '(and the lab suite in `tests/lab/`) records at the end of each run into `tests/output/reliability/` '
           '(`make test` runs it with a short soak, `make soak` with 24 recoveries); `make publish-reliability` '
           'copies a run\'s sections into `docs/reliability/results.json` and rewrites this page. '
           'Do not edit by hand.', '',
           'A section run by `make test-loaded` (the same sandbox suites with `stress-ng --cpu 2` beside them, a busy '
           'machine) says so in its "CPU load beside" column and line. The lost and duplicated counts are measured '
           'after each run, by looking up every write the reference driver acknowledged on the nodes '
           '(`forest_driver.write_counts`), never written into a test.', '']
    totals = [(name, results[name]) for name, _t, _d in SECTIONS if name in results]
    out += ['| section | cases | passed | last run (UTC) | commit | CPU load beside |', '|---|---|---|---|---|---|']
    for name, section in totals:
        passed = sum(1 for case in section['cases'] if case['outcome'] == 'passed')
        out.append('| %s | %d | %d | %s | %s | %s |' % (name, len(section['cases']), passed, section['run_at'],
                                                        section['commit'], section.get('cpu_load') or 'none'))
    for name, title, description in SECTIONS:
        if name not in results:
            continue
        section = results[name]
        out += ['', '## ' + title, '', description, '',
                'Run at %s on commit %s%s.' % (section['run_at'], section['commit'], under_load(section))]
        if name.startswith('soak'):
            out += soak_lines(section['cases'])
        out += [''] + case_table(section['cases'], section)
    with open(doc, 'w') as handle:
        handle.write('\n'.join(out) + '\n')


def publish():
    """The sections of the last run replace the same sections in docs/; the others stay."""
    with open(RUN_RESULTS) as handle:
        run = json.load(handle)
    with open(RESULTS) as handle:
        published = json.load(handle)
    published.update(run)
    with open(RESULTS, 'w') as handle:
        json.dump(published, handle, indent=1, sort_keys=True)
    write_report(RESULTS, DOC)
    print('published sections %s into %s and %s' % (', '.join(sorted(run)), RESULTS, DOC))


def main(argv):
    if argv == ['--publish']:
        publish()
        return 0
    if len(argv) == 2:
        write_report(argv[0], argv[1])
        return 0
    print(__doc__.split('\n\n')[1], file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
