#!/usr/bin/env bash
# ansible-test sanity needs the collection at .../ansible_collections/pgforest/cluster:
# copy the tracked files there (not the collections/ symlink) and run it, with the ansible-test and
# Python of SANITY_VENV (default: the checkout's .venv; scripts/py313_controller.sh names its own).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
venv=${SANITY_VENV:-$repo/.venv}
if ! command -v shellcheck >/dev/null && command -v apt-get >/dev/null; then
    echo "sanity: installing shellcheck (Debian package) for the shellcheck test" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck >/dev/null
fi
# ansible-test bootstraps pip in each of its virtualenvs with a get-pip script it downloads, from a host
# not reachable here: put the stand-in where this ansible-test looks for the pip version it pins.
pip_version=$("$venv/bin/python" scripts/ansible_test_pins.py pip-version)
pip_cache=~/.ansible/test/cache/get_pip_${pip_version//./_}.py
mkdir -p "$(dirname "$pip_cache")"
cp scripts/get_pip_standin.py "$pip_cache"
python_version=$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')

work=$(mktemp -d /tmp/pgforest-sanity.XXXXXX)
trap 'rm -rf "$work"' EXIT
tree=$work/ansible_collections/pgforest/cluster
mkdir -p "$tree"
git ls-files -z --cached --others --exclude-standard | grep -zv '^collections/' \
    | (cd "$repo" && xargs -0 cp --parents -t "$tree")
cd "$tree"
git init -q && git add -A >/dev/null
"$venv/bin/ansible-test" sanity --venv --python "$python_version" --color no "$@"
