"""`make demo`: the collection's main job on the two-node sandbox.

healthy status -> the reference driver writing to both nodes -> node 1 stopped
(immediate) and marked broken by the driver -> degraded status -> recover.yml
online while the driver keeps writing -> healthy status, the write freeze, and
the proof that no acknowledged write was lost or applied twice.
"""
import os
import subprocess
import sys
import time

from pgforest_dev import sandbox
from pgforest_dev.forest_driver import ForestDriver, lost_or_duplicated

BROKEN = 1
NOTICE_SECONDS = 1  # mngdb_read_duration for the demo: how fast drivers notice a change


def step(text):
    print('\n\033[1m==> %s\033[0m' % text, flush=True)


def playbook(name, *args):
    """Run a playbook with its output shown; stop the demo if it fails."""
    cmd = [os.path.join(sandbox.BIN, 'ansible-playbook'), '-i', sandbox.INVENTORY,
           os.path.join(sandbox.REPO, 'playbooks', name)] + list(args)
    print('$ ' + ' '.join(['ansible-playbook', 'playbooks/' + name] + list(args)), flush=True)
    done = subprocess.run(cmd, env=sandbox.ansible_env(), cwd=sandbox.REPO, check=False)
    if done.returncode != 0:
        sys.exit('demo stopped: %s failed (exit %d)' % (name, done.returncode))


def wait_until(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            sys.exit('demo stopped: %s did not happen within %ss' % (what, seconds))
        time.sleep(0.1)


def main():
    step('The pair, healthy; drivers notice changes within %ss (global_config on both nodes)' % NOTICE_SECONDS)
    playbook('config.yml', '-e', 'key=mngdb_read_duration', '-e', 'value=%d' % NOTICE_SECONDS)
    playbook('status.yml', '-e', 'fail_unless_healthy=true')

    step('The reference driver writes every transaction to both nodes (2 tables, serial keys)')
    nodes = dict((sid, (node['host'], node['port'])) for sid, node in sandbox.NODES.items())
    driver = ForestDriver(nodes, sandbox.USERDB, sandbox.password(), read_duration=NOTICE_SECONDS).start()
    try:
        time.sleep(2)
        print('%d writes acknowledged so far' % len(driver.acked))

        step('Fault: serverid %d stops (pg_ctl stop -m immediate); the driver marks it broken (-1)' % BROKEN)
        sandbox.pg_ctl(BROKEN, 'stop', '-m', 'immediate')
        wait_until(lambda: driver.validity.get(BROKEN) == -1, 10, 'the driver marking serverid %d' % BROKEN)
        print('driver: serverid %d is -1; it keeps writing to serverid %d alone' % (BROKEN, 1 - BROKEN))
        time.sleep(1)
        playbook('status.yml')

        step('Online recovery of serverid %d while the driver keeps writing' % BROKEN)
        before = len(driver.acked)
        playbook('recover.yml')
        during = len(driver.acked) - before
        time.sleep(2)  # the driver writes to both nodes again
    finally:
        driver.stop()

    step('After the recovery: each node with its own settings (lock_timeout differs), both equal')
    playbook('demo.yml', '-e', 'fail_unless_healthy=true')
    playbook('dbsync.yml')
    problems = lost_or_duplicated(driver, lambda sid: sandbox.connect(sid, sandbox.USERDB)) + driver.errors
    print('driver: %d writes acknowledged, %d of them while the recovery ran; checked on both nodes: %s'
          % (len(driver.acked), during, '; '.join(problems) or 'none lost, none applied twice'))
    if problems:
        sys.exit('demo failed: acknowledged writes are missing or doubled')


if __name__ == '__main__':
    main()
