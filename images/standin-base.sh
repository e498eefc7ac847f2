#!/usr/bin/env bash
# Make a local stand-in for python:3.11-slim when it cannot be pulled (no
# registry reachable): debootstrap a minimal bookworm, import it, add Python 3.11.
# Tagged under its own name so it is reused by later builds and never mistaken
# for the official image. Usage: images/standin-base.sh [TAG]
set -euo pipefail
TAG=${1:-lakerag-standin/python:3.11-slim}
DOCKER=${DOCKER:-/usr/bin/docker}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOTFS_TAG=lakerag-standin/debian:bookworm-minbase
here=$(cd "$(dirname "$0")" && pwd)

if "$DOCKER" image inspect "$TAG" >/dev/null 2>&1; then
    echo "stand-in base $TAG already present"
    exit 0
fi
if ! "$DOCKER" image inspect "$ROOTFS_TAG" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | "$DOCKER" import - "$ROOTFS_TAG"
fi
DOCKER_BUILDKIT=1 "$DOCKER" build --network host -t "$TAG" \
    --build-arg DEBIAN_IMAGE="$ROOTFS_TAG" "$here/standin"
