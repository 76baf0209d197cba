#!/usr/bin/env bash
# Stop the sandbox servers and remove the sandbox (data, sockets, logs, secrets):
# the directory .sandbox points to (scripts/sandbox-dir.sh) and the link.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -e .sandbox ] || { rm -f .sandbox; echo "sandbox-down: no sandbox"; exit 0; }
top=$(readlink -f .sandbox)
for data in "$top"/*/data; do
    [ -f "$data/PG_VERSION" ] || continue
    bindir=/usr/lib/postgresql/$(cat "$data/PG_VERSION")/bin
    # A node left SIGSTOPped by a test would never shut down.
    if [ -f "$data/postmaster.pid" ]; then
        kill -CONT "$(head -1 "$data/postmaster.pid")" 2>/dev/null || true
    fi
    runuser -u postgres -- "$bindir/pg_ctl" stop -D "$data" -m fast -w -t 30 >/dev/null 2>&1 \
        || runuser -u postgres -- "$bindir/pg_ctl" stop -D "$data" -m immediate -w >/dev/null 2>&1 || true
    echo "sandbox-down: stopped $(dirname "$data")"
done
rm -rf "$top"
rm -f .sandbox
echo "sandbox-down: removed $top and .sandbox"
