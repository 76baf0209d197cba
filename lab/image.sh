#!/usr/bin/env bash
# The lab's base image: a bare Debian root filesystem (no PostgreSQL, so the
# forest_node role's install path is what the lab tests), built with mmdebstrap.
# Its cache key is this file's hash and the suite (lab/lab.sh), so editing the
# recipe rebuilds it.
#   lab/image.sh SUITE DIR DEBS
# SUITE is a Debian suite (bookworm, trixie); DEBS is a directory on this host
# that keeps the downloaded .debs between builds of that suite: they are copied
# in before the download step (apt fetches only what is missing or newer) and
# every .deb of this build is copied back out before the image's own apt cache
# is emptied, so a rebuild (a changed recipe, a new cache) downloads only what
# the archive changed.
set -euo pipefail
suite=${1:?usage: lab/image.sh SUITE DIR DEBS}
dir=${2:?usage: lab/image.sh SUITE DIR DEBS}
debs=${3:?usage: lab/image.sh SUITE DIR DEBS}
mirror=http://deb.debian.org
mkdir -p "$debs"
# The hooks are run by mmdebstrap, which passes the root filesystem as $1: single quotes on purpose.
# --skip=essential/unlink keeps the essential .debs in the image's apt cache until sync-out has
# copied them (mmdebstrap would delete them right after installing them); the cleanup step empties
# that cache afterwards, so the image stays as small as before.
# shellcheck disable=SC2016
mmdebstrap --quiet --mode=root --variant=minbase --skip=essential/unlink \
    --include=systemd,systemd-sysv,dbus,openssh-server,python3,python3-apt,sudo,iproute2,procps,nftables,ca-certificates,less \
    --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
    --setup-hook="sync-in $debs /var/cache/apt/archives/" \
    --customize-hook="sync-out /var/cache/apt/archives $debs" \
    --customize-hook='chroot "$1" useradd --create-home --shell /bin/bash deploy' \
    --customize-hook='echo "deploy ALL=(ALL) NOPASSWD:ALL" > "$1/etc/sudoers.d/deploy"; chmod 0440 "$1/etc/sudoers.d/deploy"' \
    --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
    --customize-hook='chroot "$1" systemctl enable systemd-networkd ssh' \
    --customize-hook='chroot "$1" systemctl mask getty@.service console-getty.service' \
    --customize-hook='echo "Acquire::http::Proxy \"http://10.77.0.1:3142\";" > "$1/etc/apt/apt.conf.d/80lab-relay"' \
    "$suite" "$dir" \
    "deb $mirror/debian $suite main" \
    "deb $mirror/debian $suite-updates main" \
    "deb $mirror/debian-security $suite-security main"
