#!/usr/bin/env bash
# Give this checkout its sandbox directory where the postgres OS user can reach
# it, whatever the checkout's own path (a clone under /root is not searchable
# by postgres): /var/lib/pgforest-sandbox/<hash of the checkout's path>, with
# .sandbox in the checkout a link to it.  Idempotent; sandbox-down removes both.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .sandbox ] && [ ! -L .sandbox ]; then
    echo "sandbox-dir: .sandbox is a directory of an older layout; run 'make sandbox-down' to move to the new one" >&2
    exit 0
fi
top=/var/lib/pgforest-sandbox
# Sandboxes of checkouts that were deleted without sandbox-down (a CI clone, say)
# would stay on disk for good: remove those whose servers no longer run.
for other in "$top"/*/; do
    if [ ! -f "$other/checkout" ] || [ -d "$(cat "$other/checkout")" ]; then continue; fi
    running=no
    for pidfile in "$other"/*/data/postmaster.pid; do
        [ -f "$pidfile" ] && kill -0 "$(head -1 "$pidfile")" 2>/dev/null && running=yes
    done
    if [ "$running" = no ]; then
        rm -rf "$other"
        echo "sandbox-dir: removed $other (the checkout it belonged to is gone)"
    fi
done
dir=$top/$(pwd -P | sha256sum | cut -c1-12)
mkdir -p "$dir"
chmod 755 /var/lib/pgforest-sandbox "$dir"
[ "$(readlink .sandbox 2>/dev/null)" = "$dir" ] || ln -sfn "$dir" .sandbox
# What checkout it belongs to, for whoever finds it.
pwd -P > "$dir/checkout"
