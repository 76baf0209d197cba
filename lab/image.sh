#!/usr/bin/env bash
# The lab's base image: a bare Debian bookworm root filesystem (no PostgreSQL,
# so the forest_node role's install path is what the lab tests), built with
# mmdebstrap.  Its cache key is this file's hash (lab/lab.sh), so editing the
# recipe rebuilds it.
#   lab/image.sh DIR
set -euo pipefail
dir=$1
mirror=http://deb.debian.org
# The hooks are run by mmdebstrap, which passes the root filesystem as $1: single quotes on purpose.
# shellcheck disable=SC2016
mmdebstrap --quiet --mode=root --variant=minbase \
    --include=systemd,systemd-sysv,dbus,openssh-server,python3,python3-apt,sudo,iproute2,procps,nftables,ca-certificates,less \
    --customize-hook='chroot "$1" useradd --create-home --shell /bin/bash deploy' \
    --customize-hook='echo "deploy ALL=(ALL) NOPASSWD:ALL" > "$1/etc/sudoers.d/deploy"; chmod 0440 "$1/etc/sudoers.d/deploy"' \
    --customize-hook='rm -f "$1"/etc/ssh/ssh_host_*' \
    --customize-hook='chroot "$1" systemctl enable systemd-networkd ssh' \
    --customize-hook='chroot "$1" systemctl mask getty@.service console-getty.service' \
    --customize-hook='echo "Acquire::http::Proxy \"http://10.77.0.1:3142\";" > "$1/etc/apt/apt.conf.d/80lab-relay"' \
    bookworm "$dir" \
    "deb $mirror/debian bookworm main" \
    "deb $mirror/debian bookworm-updates main" \
    "deb $mirror/debian-security bookworm-security main"
