#!/usr/bin/env bash
# Stop and remove this checkout's sandboxes: the one .sandbox points to (scripts/sandbox-dir.sh)
# and, unless --sandbox-only, the parallel test workers' (scripts/worker_sandboxes.py), with their
# network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -e .sandbox ]; then
    top=$(readlink -f .sandbox)
    bash scripts/sandbox-stop.sh "$top"
    echo "sandbox-down: removed $top and .sandbox"
fi
rm -f .sandbox
# --sandbox-only: the workers may be running the sandbox suites beside it (make test runs molecule, whose
# sandbox this is, beside them).
[ "${1:-}" = --sandbox-only ] && exit 0
# The venv's Python: worker_sandboxes.py imports the collection's module_utils and dev/ (scripts/bootstrap.sh).
python=.venv/bin/python
[ -x "$python" ] || python=python3
"$python" scripts/worker_sandboxes.py down
# make timing-loaded's own set (make test runs it beside the sandbox suites).
FOREST_WORKER_SET=timing "$python" scripts/worker_sandboxes.py down
