#!/usr/bin/env bash
# The two-machine lab (docs/lab.md): systemd-nspawn machines node0/node1 on a
# private bridge inside a network namespace of their own, two application hosts
# on the same bridge, and a relay to the Debian archive.  As root:
#   lab/lab.sh up [12|13]          build or reuse that Debian release's image, start everything
#                                  (idempotent; 12 when not named; make lab-up DEBIAN=13)
#   lab/lab.sh down                stop everything, remove the nodes' disks (the images stay cached)
#   lab/lab.sh status              what runs, and which Debian release
#   lab/lab.sh poweroff NODE       clean power-off of one machine (its disk stays)
#   lab/lab.sh boot NODE           start one machine again and wait for SSH
#   lab/lab.sh reset NODE          power off, throw its disk away, boot it bare from the image again
#   lab/lab.sh rebuild NODE 12|13  the same from that release's image: a host rebuilt on another Debian (the
#                                  upgrade between majors, docs/forest_node.md); same address, key setup
#   lab/lab.sh link down|up NODE   pull or plug the machine's cable
#   lab/lab.sh image [12|13]       build or reuse that release's image and venv, print the image's path
# The release that is up is recorded in $LAB_STATE/debian: every other command, lab/exec and
# lab/inventory.yml read it there. A node rebuilt on the other release records it in $LAB_STATE/debian-NODE
# (a mixed lab: node_debian); it keeps it across poweroff, boot and reset until the lab goes down.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lab/settings.sh
. "$here/settings.sh"

log() { printf 'lab: %s\n' "$*" >&2; }
die() { printf 'lab: %s\n' "$*" >&2; exit 1; }

repo=$(cd "$here/.." && pwd)

recorded_debian() { cat "$LAB_STATE/debian" 2>/dev/null || true; }
# The release of one node: its own (lab/lab.sh rebuild), else the lab's.
node_debian() { cat "$LAB_STATE/debian-$1" 2>/dev/null || echo "$DEBIAN"; }
node_suite() { echo "${LAB_SUITES[$(node_debian "$1")]}"; }

check_debian() {  # a release the lab knows, or a usage error
    if [ -z "${1:-}" ] || [ -z "${LAB_SUITES[$1]:-}" ]; then
        die "the lab runs Debian $(printf '%s\n' "${!LAB_SUITES[@]}" | sort -n | sed -z 's/\n$//; s/\n/ or /g'), not '${1:-}': make lab-up DEBIAN=12 (the default) or DEBIAN=13"
    fi
}

# Each release's image is keyed by its recipe (image.sh and the suite), so both stay cached side by side.
image_key() { { cat "$here/image.sh"; echo "$1"; } | sha256sum | cut -c1-16; }
image_dir() { echo "$LAB_CACHE/base-$1-$(image_key "$1")"; }

# Downloaded .debs are kept per suite: the image builds' (lab/image.sh copies them in and out) and each
# node's own apt cache, bound into the machine (one per node and lab: apt locks its cache directory for the
# whole install, and both nodes install at once, maybe beside a second lab's).
debs_dir() { echo "$LAB_CACHE/debs-$1${2:+-$2${LAB_INSTANCE:+-$LAB_INSTANCE}}"; }

# The monitoring host's Ansible: requirements.txt's runtime section, for the image's own Python.
runtime_requirements() {  # the requirement lines after "# Runtime", up to the next comment
    awk '/^# Runtime/ { on = 1; next } on && /^#/ && seen { exit } on && /^[^#[:space:]]/ { print; seen = 1 }' \
        "$repo/requirements.txt"
}
image_python() { local py; py=$(readlink "$(image_dir "$1")/usr/bin/python3"); echo "${py#python}"; }
venv_key() { { cat "$here/wheels.sh"; image_python "$1"; runtime_requirements; } | sha256sum | cut -c1-16; }
venv_dir() { echo "$LAB_CACHE/venv-$1-$(venv_key "$1")"; }

# True when a running lab's disks lie on this directory (an overlay's lower directory).
in_use() { grep -qF "lowerdir=$1," /proc/mounts || grep -qF "lowerdir=$1 " /proc/mounts; }
# True when a running machine has this venv bound (node_binds): its mount lives in the machine's own mount
# namespace, out of /proc/mounts, so the machines' command lines say it.
venv_in_use() { grep -qsaF -- "--bind-ro=$1:" /proc/[0-9]*/cmdline; }

need_tools() {
    local missing=()
    for tool in mmdebstrap systemd-nspawn socat nft ssh-keygen; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing the lab's tools (missing: ${missing[*]})"
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        # libnss-mymachines is kept out: it would edit this machine's nsswitch.conf.
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
            mmdebstrap systemd-container socat nftables openssh-client >/dev/null
    fi
}

build_lock() {
    mkdir -p "$LAB_CACHE"
    exec 9>"$LAB_CACHE/.build.lock"
    flock 9
}

build_image() {
    local suite=$1 img; img=$(image_dir "$1")
    [ -f "$img/.complete" ] && return 0
    build_lock
    if [ ! -f "$img/.complete" ]; then
        log "building the Debian $suite base image $(basename "$img") with mmdebstrap (20 s to 5 min: the network)"
        local start=$SECONDS
        rm -rf "$img.tmp"
        bash "$here/image.sh" "$suite" "$img.tmp" "$(debs_dir "$suite")"
        touch "$img.tmp/.complete"
        mv "$img.tmp" "$img"
        echo "$((SECONDS - start))" > "$img/.build-seconds"
        log "image built in $((SECONDS - start)) s"
        # Images of older recipes are not needed any more, unless a running lab's disks lie on them; the
        # current image of every release stays, so switching between them rebuilds nothing.
        local old keep=" " one
        for one in "${LAB_SUITES[@]}"; do keep+="$(image_dir "$one") "; done
        for old in "$LAB_CACHE"/base-*; do
            [ -d "$old" ] || continue
            case $keep in *" $old "*) continue ;; esac
            in_use "$old" || rm -rf "$old"
        done
    fi
    flock -u 9
}

# The monitoring host runs ansible-playbook from its metrics timer with the machine's own Python (3.13 on
# Debian 13, which cannot run this host's 3.11 venv): a venv built inside the image from wheels fetched
# here (lab/wheels.sh; the machines reach no package index), cached per release and recipe, and bound
# read-only into every machine at $LAB_VENV.
build_venv() {
    local suite=$1 venv; venv=$(venv_dir "$1")
    [ -f "$venv/.complete" ] && return 0
    build_lock
    if [ ! -f "$venv/.complete" ]; then
        local start=$SECONDS pyver wheels reqs
        pyver=$(image_python "$suite")
        wheels="$LAB_CACHE/wheels-py${pyver/./}-$(venv_key "$suite")"
        mapfile -t reqs < <(runtime_requirements)
        log "fetching wheels for Python $pyver (${reqs[*]}) and building the monitoring host's venv"
        bash "$here/wheels.sh" "$pyver" "$wheels" "${reqs[@]}"
        rm -rf "$venv.tmp"
        mkdir -p "$venv.tmp"
        # Inside the image, read-only (a tmpfs on /opt holds the mount points), so the venv's paths are the
        # machines' ones. The image has no pip: pip runs from its own wheel.
        # shellcheck disable=SC2016
        systemd-nspawn --quiet --register=no --keep-unit --read-only --tmpfs=/opt \
            --directory="$(image_dir "$suite")" --bind="$venv.tmp:$LAB_VENV" --bind-ro="$wheels:/opt/pgforest-lab/wheels" \
            /bin/sh -ec 'venv=$1; shift
                python3 -m venv --without-pip "$venv"
                "$venv/bin/python" "$(echo /opt/pgforest-lab/wheels/pip-*.whl)/pip" install --quiet --no-index \
                    --no-cache-dir --disable-pip-version-check --find-links /opt/pgforest-lab/wheels "$@"
                "$venv/bin/python" -c "import ansible, psycopg"' sh "$LAB_VENV" "${reqs[@]}" \
            >"$LAB_CACHE/venv-build.log" 2>&1 || die "building the venv failed: see $LAB_CACHE/venv-build.log"
        touch "$venv.tmp/.complete"
        mv "$venv.tmp" "$venv"
        log "venv built in $((SECONDS - start)) s"
        # This release's venvs of other recipes go, unless a running machine has one bound (the recipe changed
        # while the lab is up: its machines keep theirs until they are rebuilt or the lab goes down), and the
        # wheels of other recipes for this Python.
        local old
        for old in "$LAB_CACHE/venv-$suite-"* "$LAB_CACHE/wheels-py${pyver/./}-"*; do
            [ "$old" = "$venv" ] || [ "$old" = "$wheels" ] || venv_in_use "$old" || rm -rf "$old"
        done
    fi
    flock -u 9
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_bg() {  # pidfile logfile cmd...
    local pidfile=$1 logfile=$2; shift 2
    # The machines outlive this script: they must not inherit its lock (fd 8, fd 9).
    setsid "$@" >"$logfile" 2>&1 </dev/null 8>&- 9>&- &
    echo $! >"$pidfile"
}

network_up() {
    [ -e "/run/netns/$LAB_NS" ] || ip netns add "$LAB_NS"
    ip -n "$LAB_NS" link set lo up
    if ! ip -n "$LAB_NS" link show br0 >/dev/null 2>&1; then
        ip -n "$LAB_NS" link add br0 type bridge
        ip -n "$LAB_NS" addr add "$LAB_BRIDGE_ADDR/24" dev br0
    fi
    ip -n "$LAB_NS" link set br0 up
    local app
    for app in "${!LAB_APPS[@]}"; do
        local ns="$LAB_NS-$app"
        [ -e "/run/netns/$ns" ] || ip netns add "$ns"
        if ! ip -n "$LAB_NS" link show "va-$app" >/dev/null 2>&1; then
            ip -n "$LAB_NS" link add "va-$app" type veth peer name eth0 netns "$ns"
            ip -n "$ns" addr add "${LAB_APPS[$app]}/24" dev eth0
        fi
        ip -n "$LAB_NS" link set "va-$app" master br0 up
        ip -n "$ns" link set lo up
        ip -n "$ns" link set eth0 up
    done
    # The relay: nodes' apt -> 10.77.0.1:3142 (lab namespace) -> unix socket -> archive (default namespace).
    mkdir -p "$LAB_STATE"
    if ! alive "$LAB_STATE/relay-out.pid"; then
        rm -f "$LAB_STATE/relay.sock"
        start_bg "$LAB_STATE/relay-out.pid" "$LAB_STATE/relay-out.log" \
            socat "UNIX-LISTEN:$LAB_STATE/relay.sock,fork,mode=600" "TCP:$LAB_ARCHIVE_HOST:80"
    fi
    if ! alive "$LAB_STATE/relay-in.pid"; then
        start_bg "$LAB_STATE/relay-in.pid" "$LAB_STATE/relay-in.log" \
            nsenter "--net=/run/netns/$LAB_NS" \
            socat "TCP-LISTEN:3142,bind=$LAB_BRIDGE_ADDR,fork,reuseaddr" "UNIX-CONNECT:$LAB_STATE/relay.sock"
    fi
}

controller_key() {
    mkdir -p "$LAB_STATE/ssh"
    chmod 700 "$LAB_STATE/ssh"
    [ -f "$LAB_STATE/ssh/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C pgforest-lab-controller -f "$LAB_STATE/ssh/id_ed25519"
    touch "$LAB_STATE/ssh/known_hosts"
}

prepare_node() {  # name address: its disk (an overlay over the image) and its identity
    local name=$1 addr=$2 dir="$LAB_STATE/$1" img; img=$(image_dir "$(node_suite "$1")")
    if [ -f "$dir/image" ] && [ "$(cat "$dir/image")" != "$img" ]; then
        log "$name was made from another image: its disk is recreated"
        umount "$dir/root" 2>/dev/null || true
        rm -rf "$dir"
    fi
    mkdir -p "$dir/upper" "$dir/work" "$dir/root"
    echo "$img" >"$dir/image"
    mountpoint -q "$dir/root" || mount -t overlay overlay \
        -o "lowerdir=$img,upperdir=$dir/upper,workdir=$dir/work" "$dir/root"
    [ -f "$dir/.identity" ] && return 0
    local root="$dir/root"
    echo "$name" >"$root/etc/hostname"
    {
        echo "127.0.0.1 localhost"
        echo "127.0.1.1 $name"
        local other
        for other in "${!LAB_NODES[@]}"; do echo "${LAB_NODES[$other]} $other"; done
    } >"$root/etc/hosts"
    mkdir -p "$root/etc/systemd/network"
    # No link-local address and no router advertisements: otherwise
    # systemd-networkd-wait-online never finishes, nor what waits for network-online.target.
    cat >"$root/etc/systemd/network/10-host0.network" <<NETWORK
[Match]
Name=host0

[Network]
Address=$addr/24
LinkLocalAddressing=no
IPv6AcceptRA=no
NETWORK
    ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$root/etc/ssh/ssh_host_ed25519_key"
    install -d -m 700 -o 1000 -g 1000 "$root/home/deploy/.ssh"
    install -m 600 -o 1000 -g 1000 "$LAB_STATE/ssh/id_ed25519.pub" "$root/home/deploy/.ssh/authorized_keys"
    sed -i "/^$addr /d" "$LAB_STATE/ssh/known_hosts"
    echo "$addr $(cut -d' ' -f1,2 "$root/etc/ssh/ssh_host_ed25519_key.pub")" >>"$LAB_STATE/ssh/known_hosts"
    touch "$dir/.identity"
}

# What every machine sees of this host: the checkout at the same path (the monitoring host's timer runs
# its playbooks and collections, as a DBA's management host would have them) and at LAB_CHECKOUT (where
# the exporter's service reads the collection: a checkout under /tmp is hidden by its private /tmp), the venv it runs them
# with (build_venv), and this node's apt cache of the release (debs_dir), which outlives the machine.
node_binds() {
    local name=$1 suite debs; suite=$(node_suite "$1"); debs=$(debs_dir "$suite" "$name")
    mkdir -p "$debs"
    printf -- '--bind-ro=%s\n--bind-ro=%s:%s\n--bind-ro=%s:%s\n--bind=%s:/var/cache/apt/archives\n' \
        "$repo" "$repo" "$LAB_CHECKOUT" "$(venv_dir "$suite")" "$LAB_VENV" "$debs"
}

boot_node() {
    local name=$1 dir="$LAB_STATE/$1" binds
    alive "$dir/nspawn.pid" && return 0
    prepare_node "$name" "${LAB_NODES[$name]}"
    mapfile -t binds < <(node_binds "$name")
    start_bg "$dir/nspawn.pid" "$dir/console.log" \
        nsenter "--net=/run/netns/$LAB_NS" systemd-nspawn --quiet --boot --directory="$dir/root" \
        --machine="$name" --register=no --keep-unit --console=read-only \
        --network-bridge=br0 --capability=CAP_NET_ADMIN "${binds[@]}"
}

lab_ssh() {  # address command...
    local addr=$1; shift
    ip netns exec "$LAB_NS" ssh -i "$LAB_STATE/ssh/id_ed25519" -o UserKnownHostsFile="$LAB_STATE/ssh/known_hosts" \
        -o BatchMode=yes -o ConnectTimeout=2 "deploy@$addr" "$@"
}

console_tail() {  # the machine's last console lines, on stderr: a `make lab-down` after the failure removes the file
    log "last lines of $1's console:"
    tail -n 25 "$LAB_STATE/$1/console.log" >&2 2>/dev/null || true
}

wait_ssh() {
    local name=$1 deadline=$((SECONDS + 120))
    until lab_ssh "${LAB_NODES[$name]}" true 2>/dev/null; do
        alive "$LAB_STATE/$name/nspawn.pid" || { console_tail "$name"; die "$name did not boot: see $LAB_STATE/$name/console.log"; }
        [ $SECONDS -lt $deadline ] || { console_tail "$name"; die "$name does not answer SSH after 120 s: see $LAB_STATE/$name/console.log"; }
        sleep 0.5
    done
}

poweroff_node() {
    local name=$1 dir="$LAB_STATE/$1"
    alive "$dir/nspawn.pid" || return 0
    local nspawn init; nspawn=$(cat "$dir/nspawn.pid")
    # nsenter execs nspawn, so the pid is nspawn's; the machine's PID 1 is its child.
    init=$(pgrep -P "$nspawn" | head -1 || true)
    if [ -n "$init" ]; then kill -s RTMIN+4 "$init" 2>/dev/null || true; fi
    local deadline=$((SECONDS + 30))
    while kill -0 "$nspawn" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if kill -0 "$nspawn" 2>/dev/null; then
        log "$name did not power off in 30 s: killing it"
        kill -KILL "$nspawn" 2>/dev/null || true
        sleep 1
    fi
    rm -f "$dir/nspawn.pid"
}

lab_up() {
    local start=$SECONDS recorded; recorded=$(recorded_debian)
    if [ -n "$recorded" ] && [ "$recorded" != "$DEBIAN" ]; then
        die "the lab runs Debian $recorded: make lab-down first, then make lab-up DEBIAN=$DEBIAN"
    fi
    need_tools
    # Both releases' images and venvs, while this host's network is at hand: a test rebuilds a node on the
    # other release from inside the lab's namespace (tests/lab/test_upgrade.py), which reaches no package
    # index, so what it needs must be built already.  Each is cached by its recipe: seconds when it is.
    local suite
    for suite in "$SUITE" $(printf '%s\n' "${LAB_SUITES[@]}" | grep -vx "$SUITE"); do
        build_image "$suite"
        build_venv "$suite"
    done
    network_up
    echo "$DEBIAN" >"$LAB_STATE/debian"
    controller_key
    local name
    for name in "${!LAB_NODES[@]}"; do boot_node "$name"; done
    for name in "${!LAB_NODES[@]}"; do
        # Once in make test (2026-12-07, the second lab booting beside the first's suite on a loaded machine) a
        # node ran but did not answer SSH for 120 s; it did not recur in 31 boots beside that suite and under CPU
        # hogs. Its console is printed, and it is booted once more before the lab is given up.
        if ! (wait_ssh "$name"); then
            log "$name: powering it off and booting it once more"
            poweroff_node "$name"; boot_node "$name"; wait_ssh "$name"
        fi
    done
    log "Debian $DEBIAN ($SUITE) up in $((SECONDS - start)) s: node0 ${LAB_NODES[node0]}, node1 ${LAB_NODES[node1]}, app hosts ${LAB_APPS[*]}"
}

lab_down() {
    local name
    for name in "${!LAB_NODES[@]}"; do poweroff_node "$name"; done
    # Each relay is its own process group (setsid): its forked per-connection children go with it.
    for pidfile in "$LAB_STATE"/relay-*.pid; do
        if [ -f "$pidfile" ]; then kill -- "-$(cat "$pidfile")" 2>/dev/null || true; fi
    done
    for name in "${!LAB_NODES[@]}"; do
        mountpoint -q "$LAB_STATE/$name/root" 2>/dev/null && umount "$LAB_STATE/$name/root"
    done
    local app
    for app in "${!LAB_APPS[@]}"; do
        [ -e "/run/netns/$LAB_NS-$app" ] && ip netns del "$LAB_NS-$app"
    done
    [ -e "/run/netns/$LAB_NS" ] && ip netns del "$LAB_NS"
    rm -rf "$LAB_STATE"
    log "down"
}

lab_status() {
    local name
    if [ -n "$(recorded_debian)" ]; then echo "debian $DEBIAN $SUITE"; else echo "debian none"; fi
    for name in "${!LAB_NODES[@]}"; do
        local state=stopped
        alive "$LAB_STATE/$name/nspawn.pid" && state=running
        if [ -n "$(recorded_debian)" ]; then echo "$name ${LAB_NODES[$name]} $state debian $(node_debian "$name") $(node_suite "$name")"
        else echo "$name ${LAB_NODES[$name]} $state"; fi
    done
    if [ -e "/run/netns/$LAB_NS" ]; then echo "namespace $LAB_NS"; else echo "no namespace"; fi
}

# The release: named by `up` and `image` (default 12), recorded by `up` for every other command. A release
# the lab does not know is a usage error before anything else happens.
case "${1:-}" in
    up|image) DEBIAN=${2:-$LAB_DEBIAN_DEFAULT} ;;
    *) DEBIAN=$(recorded_debian); DEBIAN=${DEBIAN:-$LAB_DEBIAN_DEFAULT} ;;
esac
check_debian "$DEBIAN"
SUITE=${LAB_SUITES[$DEBIAN]}

# One change to a lab at a time (two `make lab-up` at once would race on the namespace); status only looks.
# A second lab (FOREST_LAB_NS) has a lock of its own; both build images under build_lock.
case "${1:-}" in
    status|"") ;;
    *)
        [ "$(id -u)" = 0 ] || die "run the lab as root (it creates namespaces, mounts and machines)"
        exec 8>"/run/$LAB_NS.lock"; flock 8
        ;;
esac

node_arg() {  # the node named on the command line, or a usage error
    if [ -z "${1:-}" ] || [ -z "${LAB_NODES[$1]:-}" ]; then
        die "name a node: ${!LAB_NODES[*]} (got '${1:-}')"
    fi
    echo "$1"
}

case "${1:-}" in
    up) lab_up ;;
    down) lab_down ;;
    status) lab_status ;;
    poweroff) node_arg "${2:-}" >/dev/null; poweroff_node "$2" ;;
    rebuild)
        # A host rebuilt on another Debian release (or the same one): a bare disk from that release's image,
        # the same name, address and controller key (prepare_node), the release recorded for this node.
        node_arg "${2:-}" >/dev/null
        [ -n "$(recorded_debian)" ] || die "the lab is down: make lab-up first, then lab/lab.sh rebuild $2 ${3:-13}"
        if [ -z "${3:-}" ] || [ -z "${LAB_SUITES[$3]:-}" ]; then
            die "usage: lab/lab.sh rebuild NODE 12|13 (the Debian release to rebuild it on; got '${3:-}')"
        fi
        need_tools; build_image "${LAB_SUITES[$3]}"; build_venv "${LAB_SUITES[$3]}"
        poweroff_node "$2"
        if mountpoint -q "$LAB_STATE/$2/root"; then umount "$LAB_STATE/$2/root"; fi
        rm -rf "${LAB_STATE:?}/$2"
        if [ "$3" = "$DEBIAN" ]; then rm -f "$LAB_STATE/debian-$2"; else echo "$3" >"$LAB_STATE/debian-$2"; fi
        boot_node "$2"; wait_ssh "$2"
        log "$2 rebuilt on Debian $3 (${LAB_SUITES[$3]})"
        ;;
    boot) node_arg "${2:-}" >/dev/null; boot_node "$2"; wait_ssh "$2" ;;
    reset)
        node_arg "${2:-}" >/dev/null
        poweroff_node "$2"
        mountpoint -q "$LAB_STATE/$2/root" && umount "$LAB_STATE/$2/root"
        rm -rf "${LAB_STATE:?}/$2"
        boot_node "$2"; wait_ssh "$2"
        ;;
    link)
        node_arg "${3:-}" >/dev/null
        case "${2:-}" in down|up) ;; *) die "usage: lab/lab.sh link down|up NODE" ;; esac
        alive "$LAB_STATE/$3/nspawn.pid" || die "$3 is not running: it has no cable to pull or plug"
        ip -n "$LAB_NS" link set "vb-$3" "${2:?down or up}"
        if [ "$2" = up ]; then ip -n "$LAB_NS" link set "vb-$3" master br0; fi
        ;;
    image) need_tools; build_image "$SUITE"; build_venv "$SUITE"; image_dir "$SUITE" ;;
    *) die "usage: lab/lab.sh up [12|13]|down|status|poweroff NODE|boot NODE|reset NODE|rebuild NODE 12|13|link down|up NODE|image [12|13]" ;;
esac
