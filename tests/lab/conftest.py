"""The multi-host suite on the lab (make lab-test): records each case like the
reliability suite (tests/recorder.py), and provides a provisioned, healthy pair."""
import os

import pytest

import lab
from recorder import pytest_runtest_logreport, pytest_sessionfinish, record  # noqa: F401  pylint: disable=unused-import


def pytest_configure(config):
    # The report keeps a run on the other release beside the default one's (tests/recorder.py).
    if lab.DEBIAN != lab.DEFAULT_DEBIAN:
        os.environ.setdefault('FOREST_RESULTS_VARIANT', 'Debian ' + lab.DEBIAN)
    # make lab-test runs the whole suite on Debian 12 and these on 13 (docs/lab.md).
    config.addinivalue_line('markers', 'smoke: the cases make lab-test also runs on the other Debian release '
                                       '(provision, status, online recovery under the driver, backup/restore)')
    if not lab.in_lab():
        raise pytest.UsageError('the lab suite runs inside the lab: make lab-test (or lab/exec .venv/bin/pytest '
                                'tests/lab after make lab-up)')


def pytest_collection_modifyitems(items):
    """The first contact first: it resets both nodes to bare hosts and provisions them (PostgreSQL installed by
    apt in each machine), and the cases after it reuse that pair; run later, it would throw away a pair the
    fixture below had already provisioned from bare hosts, and the suite would install PostgreSQL twice more."""
    items.sort(key=lambda item: item.path.name != 'test_first_contact.py')


@pytest.fixture
def pair():
    """Both nodes provisioned (once per run), up, valid, without the drivers' tables; nftables healed."""
    lab.heal()
    for serverid in lab.NODES:
        lab.link('up', serverid)
    if not lab.PAIR_PROVISIONED:
        proc = lab.playbook('provision.yml')
        assert proc.returncode == 0, proc.stdout[-3000:]
        lab.PAIR_PROVISIONED.append(True)
    for serverid in lab.NODES:
        lab.ssh(serverid, 'systemctl start pgforest-node%d' % serverid)
    for view in lab.NODES:
        with lab.connect(view, lab.MNGDB) as conn:
            conn.execute('UPDATE server_info SET udb_validity = 1')
    for serverid in lab.NODES:
        with lab.connect(serverid, lab.USERDB) as conn:
            conn.execute('DROP TABLE IF EXISTS forest_load_appa, forest_load_appa_items, '
                         'forest_load_appb, forest_load_appb_items')
    lab.set_read_duration(1)
    yield
    lab.heal()
    for serverid in lab.NODES:
        lab.link('up', serverid)


@pytest.fixture
def restore_lab():
    """For a case that rebuilds nodes on another release (lab/lab.sh rebuild): afterwards both nodes are bare
    hosts of the lab's own release again, as after make lab-up, and the next case provisions them."""
    yield
    for serverid in lab.NODES:
        lab.lab('rebuild', lab.NODES[serverid]['name'], lab.DEBIAN, timeout=600)
    del lab.PAIR_PROVISIONED[:]
