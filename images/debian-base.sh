#!/usr/bin/env bash
# Make the Debian bookworm base image that every Keel image starts from, once, from the Debian
# archive (no image registry needed): debootstrap --variant=minbase, then podman import.
#
#   images/debian-base.sh            # makes $DEBIAN_IMAGE unless it exists
#   images/debian-base.sh --force    # makes it again (e.g. for Debian's latest point release)
#
# Environment: DEBIAN_IMAGE (default localhost/debian:bookworm-minbase), DEBIAN_MIRROR (default
# http://deb.debian.org/debian). Needs root (debootstrap), debootstrap and podman.
set -euo pipefail

DEBIAN_IMAGE="${DEBIAN_IMAGE:-localhost/debian:bookworm-minbase}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

die() {
    echo "images/debian-base.sh: $*" >&2
    exit 1
}

if [ "${1:-}" != --force ] && podman image exists "$DEBIAN_IMAGE"; then
    echo "$DEBIAN_IMAGE exists (images/debian-base.sh --force makes it again)"
    exit 0
fi
[ "$(id -u)" = 0 ] || die "debootstrap needs root: run it as root (or with sudo)"
command -v debootstrap > /dev/null || die "debootstrap is missing (apt-get install debootstrap)"

rootfs="$(mktemp -d /tmp/keel-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
echo "==> debootstrap bookworm into $rootfs (about two minutes)"
debootstrap --variant=minbase bookworm "$rootfs" "$DEBIAN_MIRROR" > "$rootfs.log" 2>&1 \
    || { tail -20 "$rootfs.log" >&2; rm -f "$rootfs.log"; die "debootstrap failed"; }
rm -f "$rootfs.log"
# minbase lists only the main suite: add the point-release and security updates.
cat > "$rootfs/etc/apt/sources.list" << SOURCES
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
# Nothing of the bootstrap's package downloads stays in the image.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
echo "==> podman import $DEBIAN_IMAGE"
tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$DEBIAN_IMAGE" > /dev/null
echo "made $DEBIAN_IMAGE"
