#!/usr/bin/env bash
# ansible-test sanity needs the collection at .../ansible_collections/pgforest/cluster:
# copy the tracked files there (not the collections/ symlink) and run it.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
venv=$repo/.venv
if ! command -v shellcheck >/dev/null && command -v apt-get >/dev/null; then
    echo "sanity: installing shellcheck (Debian package) for the shellcheck test" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
fi
pip_cache=~/.ansible/test/cache/get_pip_24_2.py
mkdir -p "$(dirname "$pip_cache")"
cp scripts/get_pip_standin.py "$pip_cache"

work=$(mktemp -d /tmp/pgforest-sanity.XXXXXX)
trap 'rm -rf "$work"' EXIT
tree=$work/ansible_collections/pgforest/cluster
mkdir -p "$tree"
git ls-files -z --cached --others --exclude-standard | grep -zv '^collections/' \
    | (cd "$repo" && xargs -0 cp --parents -t "$tree")
cd "$tree"
git init -q && git add -A >/dev/null
"$venv/bin/ansible-test" sanity --venv --python 3.11 --color no "$@"
