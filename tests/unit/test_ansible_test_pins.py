"""scripts/ansible_test_pins.py: the pip version and the sanity tests' pins that ansible-test installs,
read from an ansible-core wheel (what py313_controller.sh fetches beforehand) or from the installed
ansible-test (what sanity.sh names its get-pip stand-in after)."""
import os
import subprocess
import sys
import zipfile

from pgforest_dev import REPO

SCRIPT = os.path.join(REPO, 'scripts', 'ansible_test_pins.py')
SOURCE = 'ansible_test/_internal/python_requirements.py'


def pins(*args):
    return subprocess.run([sys.executable, SCRIPT] + list(args), capture_output=True, text=True, check=False)


def wheel(tmp_path, files):
    path = tmp_path / 'ansible_core-9.9.9-py3-none-any.whl'
    with zipfile.ZipFile(path, 'w') as handle:
        for name, text in files.items():
            handle.writestr(name, text)
    return str(path)


def test_the_pip_version_comes_from_the_wheel(tmp_path):
    source = "def get_venv_packages(python):\n    default_packages = dict(\n        pip='25.2',\n    )\n"
    path = wheel(tmp_path, {SOURCE: source})
    done = pins('pip-version', path)
    assert (done.returncode, done.stdout) == (0, '25.2\n')


def test_a_release_that_pins_pip_otherwise_is_refused_with_what_to_update(tmp_path):
    for source in ("packages = {'pip': '25.2'}\n", "pip='24.2',\npip='25.2',\n"):
        done = pins('pip-version', wheel(tmp_path, {SOURCE: source}))
        assert done.returncode == 1 and done.stdout == ''
        assert 'update PIP_PIN in scripts/ansible_test_pins.py' in done.stderr


def test_the_installed_ansible_test_gives_its_own_pip_version():
    # this venv's ansible-core: the version its ansible-test pins is some X.Y
    done = pins('pip-version')
    assert done.returncode == 0 and done.stdout.strip().replace('.', '').isdigit()


def test_every_sanity_tests_pins_and_nothing_else_are_written(tmp_path):
    path = wheel(tmp_path, {
        'ansible_test/_data/requirements/sanity.pylint.txt': 'pylint==4.0.5\n',
        'ansible_test/_data/requirements/sanity.yamllint.txt': 'yamllint==1.38.0\n',
        'ansible_test/_data/requirements/sanity.pylint.in': 'pylint\n',
        'ansible_test/_data/requirements/units.txt': 'pytest\n',
    })
    target = tmp_path / 'pins'
    done = pins('sanity-requirements', path, str(target))
    assert done.returncode == 0
    assert done.stdout.split() == [str(target / 'sanity.pylint.txt'), str(target / 'sanity.yamllint.txt')]
    assert sorted(os.listdir(target)) == ['sanity.pylint.txt', 'sanity.yamllint.txt']
    assert (target / 'sanity.pylint.txt').read_text() == 'pylint==4.0.5\n'


def test_a_wheel_without_sanity_requirements_is_refused(tmp_path):
    done = pins('sanity-requirements', wheel(tmp_path, {'other/file.txt': ''}), str(tmp_path / 'pins'))
    assert done.returncode == 1 and 'no ansible_test/_data/requirements/sanity.*.txt' in done.stderr
