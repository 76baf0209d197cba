#!/usr/bin/env bash
# Stop and remove this checkout's sandboxes: the one .sandbox points to (scripts/sandbox-dir.sh)
# and the parallel test workers' (scripts/worker_sandboxes.py), with their network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -e .sandbox ]; then
    top=$(readlink -f .sandbox)
    bash scripts/sandbox-stop.sh "$top"
    echo "sandbox-down: removed $top and .sandbox"
fi
rm -f .sandbox
python3 scripts/worker_sandboxes.py down
