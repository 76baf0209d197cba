# shellcheck shell=bash disable=SC2034
# The lab's names and addresses, shared by lab/lab.sh and lab/exec (bash).
# Everything lives in namespaces the lab creates, so private addresses never
# meet this machine's own network.
LAB_NS=${FOREST_LAB_NS:-pgforest-lab}
# A second lab may run beside the first, with a namespace of its own (FOREST_LAB_NS; its state directory is
# /var/lib/<namespace> unless FOREST_LAB_STATE says): make test runs the Debian 13 smoke in pgforest-lab13 beside
# the Debian 12 suite. Its lock is named by its namespace, and its nodes' apt caches (which apt locks for a whole
# install) by what its namespace adds to the first's (empty for the first).
LAB_INSTANCE=${LAB_NS#pgforest-lab}
# The image is cached machine-wide so fresh clones (CI) reuse it; the nodes'
# disks and keys are per run and removed by `lab/lab.sh down`.
LAB_CACHE=${FOREST_LAB_CACHE:-/var/cache/pgforest-lab}
LAB_STATE=${FOREST_LAB_STATE:-/var/lib/$LAB_NS}  # a second lab's own state by default
LAB_BRIDGE_ADDR=10.77.0.1
LAB_ARCHIVE_HOST=deb.debian.org
declare -A LAB_NODES=([node0]=10.77.0.11 [node1]=10.77.0.12)
declare -A LAB_APPS=([appa]=10.77.0.21 [appb]=10.77.0.22)
# The Debian releases the lab runs (make lab-up DEBIAN=13) and their suites; one image each, cached
# side by side.
declare -A LAB_SUITES=([12]=bookworm [13]=trixie)
LAB_DEBIAN_DEFAULT=12
# Where every machine sees the virtualenv of the monitoring host's Ansible (built per distribution
# from wheels for the machines' own Python, lab/wheels.sh).
LAB_VENV=/opt/pgforest-lab/venv
# The checkout again at a fixed path outside /tmp, for what runs with a private /tmp (the exporter's service).
LAB_CHECKOUT=/opt/pgforest-lab/checkout
