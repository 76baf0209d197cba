"""forest_tls's private CA (roles/forest_node/files/make_private_ca.py): four provisions at once make
one CA, whose key matches its certificate, private to the controller's user."""
import os
import stat
import subprocess
import sys

from pgforest_dev import REPO

SCRIPT = os.path.join(REPO, 'roles', 'forest_node', 'files', 'make_private_ca.py')


def public_key(*argv):
    return subprocess.run(['openssl'] + list(argv), capture_output=True, text=True, check=True).stdout


def test_runs_at_once_make_one_ca(tmp_path):
    ca_dir = str(tmp_path / 'ca dir ü')
    runs = [subprocess.Popen([sys.executable, SCRIPT, ca_dir], stdout=subprocess.PIPE, text=True) for _n in range(4)]
    said = sorted(run.communicate()[0].strip() for run in runs)
    assert said == ['exists', 'exists', 'exists', 'made']
    key, cert = os.path.join(ca_dir, 'ca.key'), os.path.join(ca_dir, 'ca.crt')
    assert public_key('pkey', '-in', key, '-pubout') == public_key('x509', '-in', cert, '-noout', '-pubkey')
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600 and stat.S_IMODE(os.stat(cert).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(ca_dir).st_mode) == 0o700
    assert sorted(os.listdir(ca_dir)) == ['.lock', 'ca.crt', 'ca.key']
    again = subprocess.run([sys.executable, SCRIPT, ca_dir], capture_output=True, text=True, check=True)
    assert again.stdout.strip() == 'exists'


def test_a_directory_it_cannot_write_is_named(tmp_path):
    blocker = tmp_path / 'a file'
    blocker.write_text('')
    done = subprocess.run([sys.executable, SCRIPT, str(blocker / 'ca')], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and 'could not make the private CA in' in done.stderr
    assert 'Traceback' not in done.stderr
