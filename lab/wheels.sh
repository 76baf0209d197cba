#!/usr/bin/env bash
# Wheels for a Python the lab's machines have and this host may not (Debian 13's 3.13), fetched here
# where the package index is reachable, for an offline `pip install --no-index --find-links DEST` on
# a machine that has none.  Binary wheels only, for CPython PYVER on x86_64 Linux; pip itself is
# among them, so a machine without pip (no python3-pip, no ensurepip) installs with
# `python3 DEST/pip-*.whl/pip install ...`.
#   lab/wheels.sh PYVER DEST REQUIREMENT...
#   e.g. lab/wheels.sh 3.13 /var/cache/pgforest-lab/wheels-py313 'ansible-core==2.21.*' 'psycopg[binary]>=3.1,<4'
# DEST is complete (DEST/.complete) or absent: a download that fails leaves nothing half-filled behind.
set -euo pipefail
usage="usage: lab/wheels.sh PYVER DEST REQUIREMENT... (PYVER like 3.13)"
pyver=${1:?$usage}
dest=${2:?$usage}
shift 2
[ $# -gt 0 ] || { echo "$usage" >&2; exit 2; }
[[ $pyver =~ ^3\.[0-9]+$ ]] || { echo "lab/wheels.sh: PYVER must look like 3.13 (got '$pyver')" >&2; exit 2; }
[ -f "$dest/.complete" ] && exit 0
here=$(cd "$(dirname "$0")" && pwd)
pip=${PIP:-$here/../.venv/bin/pip}
rm -rf "$dest.tmp"
mkdir -p "$dest.tmp"
"$pip" download --quiet --disable-pip-version-check --dest "$dest.tmp" \
    --python-version "$pyver" --implementation cp --platform manylinux_2_34_x86_64 \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --only-binary=:all: pip "$@"
printf '%s\n' "$@" >"$dest.tmp/.requirements"
touch "$dest.tmp/.complete"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
