"""The lab's scripts refuse bad input before they touch anything (make lab-up DEBIAN=..., lab/wheels.sh);
the lab itself runs in make lab-test."""
import os
import subprocess

from pgforest_dev import REPO


def run(tmp_path, *argv):
    env = dict(os.environ, FOREST_LAB_STATE=str(tmp_path / 'state'), FOREST_LAB_CACHE=str(tmp_path / 'cache'),
               FOREST_LAB_NS='pgforest-lab-unit-test')
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=30, check=False)


def test_an_unknown_debian_release_is_refused_and_nothing_is_made(tmp_path):
    for command in ('up', 'image'):
        proc = run(tmp_path, 'bash', 'lab/lab.sh', command, '14')
        assert proc.returncode != 0
        assert proc.stderr.strip() == ("lab: the lab runs Debian 12 or 13, not '14': make lab-up DEBIAN=12 "
                                       "(the default) or DEBIAN=13"), proc.stderr
    assert os.listdir(str(tmp_path)) == []


def test_a_recorded_release_is_what_the_other_commands_use(tmp_path):
    (tmp_path / 'state').mkdir()
    (tmp_path / 'state' / 'debian').write_text('13\n')
    proc = run(tmp_path, 'bash', 'lab/lab.sh', 'status')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == 'debian 13 trixie'
    (tmp_path / 'state' / 'debian').write_text('11\n')  # a state this lab.sh did not write
    proc = run(tmp_path, 'bash', 'lab/lab.sh', 'status')
    assert proc.returncode != 0 and "not '11'" in proc.stderr, proc.stderr


def test_wheels_refuses_a_python_version_it_cannot_pass_to_pip(tmp_path):
    dest = tmp_path / 'wheels'
    for argv in (('3', str(dest), 'jmespath'), ('3.13', str(dest))):
        proc = run(tmp_path, 'bash', 'lab/wheels.sh', *argv)
        assert proc.returncode == 2, proc.stderr
        assert 'lab/wheels.sh' in proc.stderr, proc.stderr
    assert not dest.exists() and not (tmp_path / 'wheels.tmp').exists()
