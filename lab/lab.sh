#!/usr/bin/env bash
# The two-machine lab (docs/lab.md): systemd-nspawn machines node0/node1 on a
# private bridge inside a network namespace of their own, two application hosts
# on the same bridge, and a relay to the Debian archive.  As root:
#   lab/lab.sh up                  build or reuse the image, start everything (idempotent)
#   lab/lab.sh down                stop everything, remove the nodes' disks (the image stays cached)
#   lab/lab.sh status              what runs
#   lab/lab.sh poweroff NODE       clean power-off of one machine (its disk stays)
#   lab/lab.sh boot NODE           start one machine again and wait for SSH
#   lab/lab.sh reset NODE          power off, throw its disk away, boot it bare from the image again
#   lab/lab.sh link down|up NODE   pull or plug the machine's cable
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lab/settings.sh
. "$here/settings.sh"

log() { printf 'lab: %s\n' "$*" >&2; }
die() { printf 'lab: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run the lab as root (it creates namespaces, mounts and machines)"

image_key() { sha256sum "$here/image.sh" | cut -c1-16; }
image_dir() { echo "$LAB_CACHE/base-$(image_key)"; }

need_tools() {
    local missing=()
    for tool in mmdebstrap systemd-nspawn socat nft ssh-keygen; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing the lab's tools (missing: ${missing[*]})"
        apt-get update -qq
        # libnss-mymachines is kept out: it would edit this machine's nsswitch.conf.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            mmdebstrap systemd-container socat nftables openssh-client >/dev/null
    fi
}

build_image() {
    local img; img=$(image_dir)
    [ -f "$img/.complete" ] && return 0
    mkdir -p "$LAB_CACHE"
    exec 9>"$LAB_CACHE/.build.lock"
    flock 9
    [ -f "$img/.complete" ] && return 0
    log "building the base image $(basename "$img") with mmdebstrap (about 90 s)"
    local start=$SECONDS
    rm -rf "$img.tmp"
    bash "$here/image.sh" "$img.tmp"
    touch "$img.tmp/.complete"
    mv "$img.tmp" "$img"
    echo "$((SECONDS - start))" > "$img/.build-seconds"
    log "image built in $((SECONDS - start)) s"
    # Older images (another recipe) are not needed any more, unless a running lab's disks lie on them.
    local old
    for old in "$LAB_CACHE"/base-*; do
        [ "$old" = "$img" ] && continue
        if ! grep -qF "lowerdir=${old}," /proc/mounts && ! grep -qF "lowerdir=${old} " /proc/mounts; then rm -rf "$old"; fi
    done
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
    local name=$1 addr=$2 dir="$LAB_STATE/$1" img; img=$(image_dir)
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

# The monitoring host of lab/inventory.yml (forest_monitoring: node0) runs ansible-playbook from its
# metrics timer, as a DBA's management host would have Ansible installed: the checkout and its
# virtualenv's Python are mounted read-only at the same paths on every machine.
controller_binds() {
    local repo prefix
    repo=$(cd "$here/.." && pwd)
    [ -x "$repo/.venv/bin/python" ] || return 0
    prefix=$("$repo/.venv/bin/python" -c 'import sys; print(sys.base_prefix)')
    printf -- '--bind-ro=%s\n--bind-ro=%s\n' "$repo" "$prefix"
}

boot_node() {
    local name=$1 dir="$LAB_STATE/$1" binds
    alive "$dir/nspawn.pid" && return 0
    prepare_node "$name" "${LAB_NODES[$name]}"
    mapfile -t binds < <(controller_binds)
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

wait_ssh() {
    local name=$1 deadline=$((SECONDS + 120))
    until lab_ssh "${LAB_NODES[$name]}" true 2>/dev/null; do
        alive "$LAB_STATE/$name/nspawn.pid" || die "$name did not boot: see $LAB_STATE/$name/console.log"
        [ $SECONDS -lt $deadline ] || die "$name does not answer SSH after 120 s: see $LAB_STATE/$name/console.log"
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
    local start=$SECONDS
    need_tools
    build_image
    network_up
    controller_key
    local name
    for name in "${!LAB_NODES[@]}"; do boot_node "$name"; done
    for name in "${!LAB_NODES[@]}"; do wait_ssh "$name"; done
    log "up in $((SECONDS - start)) s: node0 ${LAB_NODES[node0]}, node1 ${LAB_NODES[node1]}, app hosts ${LAB_APPS[*]}"
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
    for name in "${!LAB_NODES[@]}"; do
        if alive "$LAB_STATE/$name/nspawn.pid"; then echo "$name ${LAB_NODES[$name]} running"
        else echo "$name ${LAB_NODES[$name]} stopped"; fi
    done
    if [ -e "/run/netns/$LAB_NS" ]; then echo "namespace $LAB_NS"; else echo "no namespace"; fi
}

# One change to the lab at a time (two `make lab-up` at once would race on the namespace).
case "${1:-}" in
    status|"") ;;
    *) exec 8>"/run/pgforest-lab.lock"; flock 8 ;;
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
    image) need_tools; build_image; image_dir ;;
    *) die "usage: lab/lab.sh up|down|status|poweroff NODE|boot NODE|reset NODE|link down|up NODE|image" ;;
esac
