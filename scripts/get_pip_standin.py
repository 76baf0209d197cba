"""Stand-in for ansible-test's get-pip bootstrap script, whose download host is
not reachable here: bootstrap pip with ensurepip, then install what was asked."""
import os
import subprocess
import sys

subprocess.check_call([sys.executable, '-m', 'ensurepip', '--upgrade'], stdout=subprocess.DEVNULL)
env = dict(os.environ)
env.pop('PIP_CONFIG_FILE', None)  # ensurepip's /dev/null would hide this machine's pip settings
args = [arg for arg in sys.argv[1:] if arg not in ('--no-setuptools', '--no-wheel', 'install')]
subprocess.check_call([sys.executable, '-m', 'pip', 'install'] + args, env=env)
