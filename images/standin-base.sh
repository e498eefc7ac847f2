#!/usr/bin/env bash
# Make a local stand-in for python:3.11-slim-bookworm when it cannot be pulled (no
# registry reachable): debootstrap a minimal bookworm, slim it the way the official
# debian:bookworm-slim is slimmed, import it, add Debian's Python 3.11 (images/standin/).
# Tagged under its own name so it is never mistaken for the official image; rebuilt
# when this script or the Dockerfile changed (label lakerag.standin.source), reused
# otherwise. Usage: images/standin-base.sh [TAG]
set -euo pipefail
TAG=${1:-lakerag-standin/python:3.11-slim}
DOCKER=${DOCKER:-/usr/bin/docker}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOTFS_TAG=lakerag-standin/debian:bookworm-slim
here=$(cd "$(dirname "$0")" && pwd)
source=$(cat "$0" "$here/standin/Dockerfile" | sha256sum | cut -c1-16)

label() {  # the stand-in source hash an image was made from, empty when absent
    "$DOCKER" image inspect --format '{{ index .Config.Labels "lakerag.standin.source" }}' "$1" 2>/dev/null || true
}

# What debuerreotype (the official Debian images' builder) does to a minbase rootfs:
# dpkg never installs docs (copyright files stay), man/info pages or translations;
# apt keeps no package caches or .deb files after installing; logs and caches emptied.
slim() {
    local root=$1
    cat > "$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
    echo force-unsafe-io > "$root/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"
    cat > "$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' > "$root/etc/apt/apt.conf.d/docker-no-languages"
    echo 'Acquire::GzipIndexes "true";' > "$root/etc/apt/apt.conf.d/docker-gzip-indexes"
    echo 'Apt::AutoRemove::SuggestsImportant "false";' > "$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{man,groff,info,lintian,linda,locale}/* \
        "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
        "$root"/var/log/apt/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
        "$root"/var/cache/ldconfig/aux-cache
    : > "$root/etc/machine-id"
}

if [ "$(label "$TAG")" = "$source" ]; then
    echo "stand-in base $TAG already present"
    exit 0
fi
if [ "$(label "$ROOTFS_TAG")" != "$source" ]; then
    command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >/dev/null
    slim "$rootfs"
    tar -C "$rootfs" -c . | "$DOCKER" import --change "LABEL lakerag.standin.source=$source" - "$ROOTFS_TAG"
fi
DOCKER_BUILDKIT=1 "$DOCKER" build --network host -t "$TAG" --label "lakerag.standin.source=$source" \
    --build-arg DEBIAN_IMAGE="$ROOTFS_TAG" "$here/standin"
echo "stand-in base $TAG: $("$DOCKER" image inspect --format '{{.Size}}' "$TAG") bytes"
