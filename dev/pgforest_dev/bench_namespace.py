"""A bench's own network namespace (bench/status_pairs_bench.py, bench/exporter_bench.py), where every loopback
address is free for its pairs.  Imports nothing of the sandbox: pgforest_dev.sandbox reads FOREST_SANDBOX_DIR
when it is imported, which only the run inside sets."""
import os
import shutil
import subprocess
import sys


def run_inside_own_namespace(script, namespace, sandbox_dir, argv):
    """Run script (a bench) again with argv inside network namespace `namespace`, made here with its loopback
    up, so every loopback address is free for its pairs, and with sandbox_dir as its sandbox; both removed
    afterwards.  The run inside sees FOREST_BENCH_INSIDE=1.  Returns its exit code."""
    if not os.path.exists('/run/netns/' + namespace):
        subprocess.run(['ip', 'netns', 'add', namespace], check=True)
    subprocess.run(['ip', '-n', namespace, 'link', 'set', 'lo', 'up'], check=True)
    os.makedirs(sandbox_dir, exist_ok=True)
    os.chmod(os.path.dirname(sandbox_dir), 0o755)
    os.chmod(sandbox_dir, 0o755)  # the postgres OS user reaches the servers' directories through it
    try:
        return subprocess.run(['nsenter', '--net=/run/netns/' + namespace, 'env', 'FOREST_SANDBOX_DIR=' + sandbox_dir,
                               'FOREST_BENCH_INSIDE=1', sys.executable, os.path.abspath(script)] + argv,
                              check=False).returncode
    finally:
        subprocess.run(['ip', 'netns', 'delete', namespace], check=False)
        shutil.rmtree(sandbox_dir, ignore_errors=True)
