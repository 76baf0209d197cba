#!/usr/bin/env bash
# Create the project's virtualenv and install what the collection and its tests
# need.  PostgreSQL itself is installed by the forest_node role when missing.
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}

# The Debian packages the project's own tools need, installed in one apt run before anything else starts:
# make test runs three chains side by side, and one of them finding a tool missing (or apt's lock held by
# another) would fail it on a fresh machine.
packages=()
"$python" -m venv --help >/dev/null 2>&1 && "$python" -c 'import ensurepip' 2>/dev/null || packages+=(python3-venv)
# forest_tls's private CA (the forest_node role) and the TLS tests issue certificates with openssl.
command -v openssl >/dev/null || packages+=(openssl)
# make test-loaded (LOAD=N) runs the sandbox suites with CPU hogs beside them (scripts/under_load.sh).
command -v stress-ng >/dev/null || packages+=(stress-ng)
# The alert rules' tests (tests/unit/test_monitoring_rules.py) run promtool, which Debian ships in prometheus
# (installed without its recommends: the server is not wanted, only the tool).
promtool=no
command -v promtool >/dev/null || { packages+=(prometheus); promtool=yes; }
# The lab (lab/lab.sh) and the Debian 13 controller (scripts/py313_controller.sh): root filesystems, machines,
# their network.  libnss-mymachines is kept out: it would edit this machine's nsswitch.conf.
for tool in mmdebstrap:mmdebstrap systemd-nspawn:systemd-container socat:socat nft:nftables ssh-keygen:openssh-client; do
    command -v "${tool%%:*}" >/dev/null || packages+=("${tool#*:}")
done
if [ ${#packages[@]} -gt 0 ]; then
    echo "bootstrap: installing ${packages[*]}" >&2
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
        "${packages[@]}" >/dev/null
    # prometheus starts its server (port 9090) where systemd runs: it was not here before, stop it again.
    if [ "$promtool" = yes ] && [ -d /run/systemd/system ]; then
        systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    fi
fi
# --clear: a venv left from another Python (an older default of PYTHON) is made again from this one.
"$python" -m venv --clear "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r requirements.txt
# The helpers the tests, benchmarks and demo share (dev/pgforest_dev) are importable from the
# venv's Python, wherever the script that imports them lives.
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$(pwd -P)/dev" > "$site/pgforest-dev.pth"
echo "bootstrap: $("$venv/bin/ansible" --version | head -1), $("$venv/bin/python" -c 'import psycopg; print("psycopg", psycopg.__version__)')"
