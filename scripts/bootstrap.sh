#!/usr/bin/env bash
# Create the project's virtualenv and install what the collection and its tests
# need.  PostgreSQL itself is installed by the forest_node role when missing.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}

if ! "$python" -m venv --help >/dev/null 2>&1 || ! "$python" -c 'import ensurepip' 2>/dev/null; then
    echo "bootstrap: $python cannot create virtualenvs; installing python3-venv" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
fi
# forest_tls's private CA (the forest_node role) and the TLS tests issue certificates with openssl.
if ! command -v openssl >/dev/null; then
    echo "bootstrap: installing openssl" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl
fi
# make test-loaded (LOAD=N) runs the sandbox suites with CPU hogs beside them (scripts/under_load.sh).
if ! command -v stress-ng >/dev/null; then
    echo "bootstrap: installing stress-ng" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq stress-ng
fi
# The alert rules' tests (tests/unit/test_monitoring_rules.py) run promtool, which Debian ships in prometheus
# (without its recommends: the server is not wanted, only the tool).
if ! command -v promtool >/dev/null; then
    echo "bootstrap: installing promtool (Debian package prometheus)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus
    # The package starts its server (port 9090) where systemd runs: it was not here before, stop it again.
    if [ -d /run/systemd/system ]; then systemctl disable --now prometheus.service >/dev/null 2>&1 || true; fi
fi
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt
# The helpers the tests, benchmarks and demo share (dev/pgforest_dev) are importable from the
# venv's Python, wherever the script that imports them lives.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$(pwd -P)/dev" > "$site/pgforest-dev.pth"
echo "bootstrap: $("$venv/bin/ansible" --version | head -1), $("$venv/bin/python" -c 'import psycopg; print("psycopg", psycopg.__version__)')"
