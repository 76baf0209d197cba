#!/usr/bin/env bash
# The current ansible-core (scripts/requirements-current.txt: 2.21) on a Debian 13 (trixie) controller
# with its Python 3.13, outside the lab (docs/inventory.md, "Supported combinations").  As root:
#   scripts/py313_controller.sh prepare        build or reuse the root filesystem, the wheels and the venv
#   scripts/py313_controller.sh sanity [ARGS]  ansible-test sanity on the collection (scripts/sanity.sh)
#   scripts/py313_controller.sh unit [ARGS]    pytest tests/unit (ARGS instead of tests/unit when given)
#   scripts/py313_controller.sh syntax         ansible-playbook --list-tasks of every playbook (parsed, not run)
#   scripts/py313_controller.sh lint [ARGS]    ansible-lint
#   scripts/py313_controller.sh run CMD...     any command there (the checkout is /repo, the venv on PATH)
#   scripts/py313_controller.sh lab CMD...     the same inside the two-machine lab's network (make lab-up),
#                                              as its controller (10.77.0.1): playbooks reach the nodes by SSH
# Every command prepares first.  The controller is a root filesystem made by mmdebstrap and entered with
# systemd-nspawn (not booted: systemd is not PID 1 on the machines this runs on) WITHOUT a network
# (--private-network: only loopback), so nothing in it can reach a package index: its Python packages are
# wheels fetched here with `pip download --python-version 3.13 --only-binary=:all:`, installed there with
# `pip install --no-index`, and ansible-test's own virtualenvs are filled from the same wheels.
# Caches under PGFOREST_CTL313 (default /var/tmp/pgforest-ctl313), outside the checkout, shared by checkouts:
#   rootfs-<key>   the root filesystem, keyed by its recipe (build_rootfs below)
#   wheels-<key>   the wheels, keyed by scripts/requirements-current.txt and this script's fetch recipe
#   the venv       /opt/pgforest/venv in the root filesystem, rebuilt when the wheels' key changes
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd -P)
top=${PGFOREST_CTL313:-/var/tmp/pgforest-ctl313}
requirements=$repo/scripts/requirements-current.txt
suite=trixie
mirror=http://deb.debian.org
VENV=/opt/pgforest/venv

log() { printf 'py313_controller: %s\n' "$*" >&2; }
die() { printf 'py313_controller: %s\n' "$*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run this as root (mmdebstrap --mode=root and systemd-nspawn need it)"
for tool in mmdebstrap systemd-nspawn; do
    command -v "$tool" >/dev/null || die "$tool is missing: apt-get install --no-install-recommends mmdebstrap systemd-container"
done

key() { sha256sum | cut -c1-16; }
# Each cache is keyed by the function that makes it (and the wheels also by the requirements): a changed
# recipe makes a new one.
rootfs_key=$( { echo "$suite $mirror"; sed -n '/^build_rootfs()/,/^}/p' "$0"; } | key)
rootfs=$top/rootfs-$rootfs_key
wheels_key=$( { cat "$requirements"; sed -n '/^fetch_wheels()/,/^}/p' "$0"; } | key)
wheels=$top/wheels-$wheels_key

mkdir -p "$top"
# One run at a time: systemd-nspawn locks the root filesystem, and two builds of one cache must not race.
exec 9>"$top/.lock"
if ! flock -n 9; then
    log "waiting for another run on $top to finish"
    flock 9
fi

drop_others() {  # prefix keep: the caches of older recipes are not needed any more
    local old
    for old in "$top/$1"-*; do
        [ -e "$old" ] && [ "$old" != "$2" ] && rm -rf "$old"
    done
    return 0
}

build_rootfs() {
    [ -f "$rootfs/.complete" ] && return 0
    log "building the Debian $suite root filesystem $(basename "$rootfs") with mmdebstrap"
    local start=$SECONDS
    rm -rf "$rootfs.tmp"
    # Python 3.13 and its venv (ensurepip), git (sanity.sh copies the tracked files), the shellcheck
    # program (ansible-test's shell script test), ca-certificates for anything that verifies TLS, ps (a
    # unit test looks at a process group with it), and the en_US.UTF-8 locale that ansible-test wants
    # (else it warns that it falls back to C.UTF-8); for the lab, ssh (Ansible's connection to the machines) and
    # openssl (the role's private CA issues the nodes' certificates on the controller).
    # The hook gets the root filesystem as $1 from mmdebstrap: single quotes on purpose.
    # shellcheck disable=SC2016
    mmdebstrap --quiet --mode=root --variant=minbase \
        --include=python3,python3-venv,git,ca-certificates,shellcheck,locales,procps,openssh-client,openssl \
        --customize-hook='echo "en_US.UTF-8 UTF-8" > "$1/etc/locale.gen" && chroot "$1" locale-gen' \
        "$suite" "$rootfs.tmp" \
        "deb $mirror/debian $suite main" \
        "deb $mirror/debian $suite-updates main" \
        "deb $mirror/debian-security $suite-security main"
    touch "$rootfs.tmp/.complete"
    mv "$rootfs.tmp" "$rootfs"
    log "root filesystem built in $((SECONDS - start)) s"
    drop_others rootfs "$rootfs"
}

fetch_wheels() {
    [ -f "$wheels/.complete" ] && return 0
    log "fetching the wheels for Python 3.13 into $(basename "$wheels")"
    local start=$SECONDS tmp=$wheels.tmp
    local fetch=(python3 -m pip download --quiet --disable-pip-version-check --python-version 3.13
                 --only-binary=:all: --dest "$tmp")
    rm -rf "$tmp"
    mkdir -p "$tmp"
    "${fetch[@]}" -r "$requirements"
    # What ansible-test sanity --venv installs into its own virtualenvs: the pip it bootstraps and each
    # sanity test's pinned requirements, read from the ansible-core just fetched.  One pip download per
    # test: their pins differ, so they cannot be resolved together.
    local core pins req
    core=$(find "$tmp" -maxdepth 1 -name 'ansible_core-*.whl' | head -1)
    [ -n "$core" ] || die "no ansible-core wheel among the fetched ones: does $requirements name ansible-core?"
    "${fetch[@]}" "pip==$(python3 "$repo/scripts/ansible_test_pins.py" pip-version "$core")"
    pins=$(mktemp -d)
    for req in $(python3 "$repo/scripts/ansible_test_pins.py" sanity-requirements "$core" "$pins"); do
        "${fetch[@]}" -r "$req"
    done
    rm -rf "$pins"
    ls "$tmp" > "$tmp/.list"
    touch "$tmp/.complete"
    mv "$tmp" "$wheels"
    log "$(wc -l < "$wheels/.list") wheels fetched in $((SECONDS - start)) s"
    drop_others wheels "$wheels"
}

# Where the checkout's git data lie when the checkout is a worktree (its .git is a file naming a directory
# elsewhere): bound at the same path, read-only, so git in there sees the checkout as here.
git_binds=()
common=$(git -C "$repo" rev-parse --path-format=absolute --git-common-dir)
case $common in "$repo"/*) ;; *) git_binds=(--bind-ro="$common") ;; esac

in_ctl() {  # command...: run it in the root filesystem, the checkout at /repo, the wheels at /wheels
    local status=0 network=(--private-network) enter=()
    # In the lab: its network namespace instead of none, its state (SSH key, secrets, the private CA) at
    # the same path, where lab/inventory.yml finds it through FOREST_LAB_STATE, and the checkout at its own
    # path too, so the paths the lab's tests give (playbooks, extra-vars files) are the same in there.
    if [ -n "${in_lab:-}" ]; then
        network=(--bind="$LAB_STATE" --setenv=FOREST_LAB_STATE="$LAB_STATE" --bind="$repo")
        enter=(nsenter --net="/run/netns/$LAB_NS")
    fi
    # ANSIBLE_HOME: the checkout's ignored .ansible as in the Makefile, in a directory of its own so that
    # 2.21's caches and installed collections do not mix with those of the checkout's 2.19.
    # Every pip there installs from the wheels only: in pip's configuration, not its environment, because
    # ansible-test runs pip with an environment of its own (HOME and PATH pass, PIP_* do not).
    printf '[global]\nno-index = true\nfind-links = /wheels\ndisable-pip-version-check = true\n' \
        > "$rootfs/etc/pip.conf"
    "${enter[@]}" systemd-nspawn --quiet --register=no --keep-unit --machine="pgforest-ctl313" "${network[@]}" --console=pipe \
        --directory="$rootfs" --bind="$repo:/repo" --bind-ro="$wheels:/wheels" "${git_binds[@]}" \
        --chdir=/repo --setenv=HOME=/root --setenv=LANG=C.UTF-8 \
        --setenv=PATH="$VENV/bin:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin" \
        --setenv=ANSIBLE_CONFIG=/repo/ansible.cfg --setenv=ANSIBLE_HOME=/repo/.ansible/py313 \
        "$@" 2> >(grep -v '^Attempted to remove disk file system under "/run/systemd/nspawn/propagate/' >&2) \
        || status=$?
    # (That line is nspawn failing to clean its propagation directory when /run is not a tmpfs, as on the
    # machines here; harmless, so it is kept out of the output.)
    return $status
}

make_venv() {
    if [ "$(cat "$rootfs$VENV/.key" 2>/dev/null)" = "$wheels_key" ]; then return 0; fi
    log "creating the Python 3.13 venv $VENV in the root filesystem (no package index: the wheels only)"
    local start=$SECONDS
    rm -rf "${rootfs:?}$VENV"
    in_ctl bash -euc "
        python3 -m venv $VENV
        $VENV/bin/pip install --quiet -r /repo/scripts/requirements-current.txt
        # the helpers the tests share (dev/pgforest_dev) are importable, as in scripts/bootstrap.sh
        echo /repo/dev > \$($VENV/bin/python -c 'import sysconfig; print(sysconfig.get_paths()[\"purelib\"])')/pgforest-dev.pth
        echo $wheels_key > $VENV/.key"
    log "venv created in $((SECONDS - start)) s: $(in_ctl "$VENV/bin/python" -c 'import sys, ansible.release as r; print("ansible-core", r.__version__, "on Python", sys.version.split()[0])')"
}

prepare() {
    build_rootfs
    fetch_wheels
    make_venv
}

syntax_check() {
    # --list-tasks: the syntax check and more (the roles' static imports resolved, their tasks listed;
    # --syntax-check alone stops before that).  The sandbox's inventory gives the plays their hosts; nothing
    # connects to them.
    # shellcheck disable=SC2016  # $book is the inner shell's, expanded there
    in_ctl bash -euc 'for book in playbooks/*.yml; do ansible-playbook --list-tasks -i sandbox/inventory.yml "$book"; done'
}

command=${1:-prepare}
[ $# -gt 0 ] && shift
case $command in
    prepare) prepare ;;
    sanity) prepare; in_ctl env SANITY_VENV="$VENV" bash scripts/sanity.sh "$@" ;;
    unit) prepare; in_ctl "$VENV/bin/pytest" "${@:-tests/unit}" ;;
    syntax) prepare; syntax_check ;;
    lint) prepare; in_ctl "$VENV/bin/ansible-lint" "$@" ;;
    run) prepare; in_ctl "$@" ;;
    lab)
        # shellcheck source=lab/settings.sh
        . "$repo/lab/settings.sh"
        [ -e "/run/netns/$LAB_NS" ] || die "the lab is not up ($LAB_NS does not exist): make lab-up first"
        in_lab=1; prepare; in_ctl "$@" ;;
    *) die "unknown command $command (prepare, sanity, unit, syntax, lint, run, lab)" ;;
esac
