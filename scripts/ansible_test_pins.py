"""What `ansible-test sanity --venv` installs with pip, read from ansible-test itself, so that a machine
without the package index can hold those packages beforehand (scripts/py313_controller.sh fetches them as
wheels) and sanity.sh can name its get-pip stand-in the way ansible-test looks for it.

    ansible_test_pins.py pip-version [WHEEL]
        the pip version ansible-test bootstraps into each of its virtualenvs (from the ansible-core WHEEL,
        else from the ansible-test this Python imports)
    ansible_test_pins.py sanity-requirements WHEEL DIR
        write the pinned requirements of every sanity test (sanity.*.txt) from the WHEEL into DIR and print
        their paths, one a line

ansible-test keeps the pip version in a dict literal (get_venv_packages: `pip='24.2',`); a release that
keeps it elsewhere makes this fail, saying so, rather than let a sanity run fetch pip from the internet.
"""
import os
import re
import sys
import zipfile

PIP_SOURCE = 'ansible_test/_internal/python_requirements.py'
REQUIREMENTS = re.compile(r'^ansible_test/_data/requirements/(sanity\.[^/]+\.txt)$')
PIP_PIN = re.compile(r"^\s*pip='([0-9][0-9.]*)',\s*$", re.MULTILINE)


def fail(message):
    sys.stderr.write('ansible_test_pins: %s\n' % message)
    sys.exit(1)


def pip_version(source, where):
    found = set(PIP_PIN.findall(source))
    if len(found) != 1:
        fail("found %s pip versions in %s (expected one `pip='X.Y',` line): ansible-test changed how it pins "
             "pip; update PIP_PIN in scripts/ansible_test_pins.py" % (len(found) or 'no', where))
    return found.pop()


def installed_source():
    try:
        import ansible_test
    except ImportError:
        fail('%s cannot import ansible_test: run this with the Python of the virtualenv that has ansible-core'
             % sys.executable)
    path = os.path.join(os.path.dirname(ansible_test.__file__), os.path.relpath(PIP_SOURCE, 'ansible_test'))
    with open(path, encoding='utf-8') as handle:
        return handle.read(), path


def main(argv):
    if argv[:1] == ['pip-version'] and len(argv) <= 2:
        if len(argv) == 2:
            with zipfile.ZipFile(argv[1]) as wheel:
                source, where = wheel.read(PIP_SOURCE).decode('utf-8'), '%s:%s' % (argv[1], PIP_SOURCE)
        else:
            source, where = installed_source()
        print(pip_version(source, where))
    elif len(argv) == 3 and argv[0] == 'sanity-requirements':
        wheel_path, target = argv[1], argv[2]
        os.makedirs(target, exist_ok=True)
        written = []
        with zipfile.ZipFile(wheel_path) as wheel:
            for name in sorted(wheel.namelist()):
                match = REQUIREMENTS.match(name)
                if match:
                    path = os.path.join(target, match.group(1))
                    with open(path, 'wb') as handle:
                        handle.write(wheel.read(name))
                    written.append(path)
        if not written:
            fail('%s holds no ansible_test/_data/requirements/sanity.*.txt: not an ansible-core wheel, or '
                 'ansible-test moved its requirements' % wheel_path)
        print('\n'.join(written))
    else:
        fail('usage: ansible_test_pins.py pip-version [WHEEL] | sanity-requirements WHEEL DIR')


if __name__ == '__main__':
    main(sys.argv[1:])
