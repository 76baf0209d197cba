#!/usr/bin/env bash
# Stop the servers of one sandbox directory and remove it (data, sockets, logs, secrets).
# Used by sandbox-down.sh for the checkout's sandbox and by worker_sandboxes.py for the workers'.
set -euo pipefail
top=${1:?sandbox directory}
[ -d "$top" ] || exit 0
for data in "$top"/*/data; do
    [ -f "$data/PG_VERSION" ] || continue
    bindir=/usr/lib/postgresql/$(cat "$data/PG_VERSION")/bin
    # A node left SIGSTOPped by a test would never shut down.
    if [ -f "$data/postmaster.pid" ]; then
        kill -CONT "$(head -1 "$data/postmaster.pid")" 2>/dev/null || true
    fi
    runuser -u postgres -- "$bindir/pg_ctl" stop -D "$data" -m fast -w -t 30 >/dev/null 2>&1 \
        || runuser -u postgres -- "$bindir/pg_ctl" stop -D "$data" -m immediate -w >/dev/null 2>&1 || true
    echo "sandbox-stop: stopped $(dirname "$data")"
done
rm -rf "$top"
