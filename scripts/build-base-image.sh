#!/usr/bin/env bash
# Build a local python3.11 base image without any container registry: debootstrap a minimal
# Debian bookworm root with python3 + venv, then `docker import` it. The serving Dockerfile takes
# it through `--build-arg BASE_IMAGE=mlops-base:bookworm` (see DESIGN.md: no registry is reachable).
#
# Usage: scripts/build-base-image.sh [IMAGE_TAG]    (default: mlops-base:bookworm)
# Env:   MLOPS_DEBIAN_MIRROR overrides the mirror; by default the host's own apt mirror is used,
#        so the script works wherever `apt-get install` works.
set -euo pipefail

tag="${1:-mlops-base:bookworm}"
suite="bookworm"

if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base image $tag already present"
    exit 0
fi

host_mirror() {
    # deb822 sources first (Debian 12 default), then the classic one-line format.
    local f
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '/^URIs:/ {u=$2} /^Suites:/ && $0 ~ / '"$suite"'( |$)/ && u != "" {print u; exit}' "$f" && return 0
    done
    if [ -f /etc/apt/sources.list ]; then
        awk '$1=="deb" && $3=="'"$suite"'" {print $2; exit}' /etc/apt/sources.list
    fi
}

mirror="${MLOPS_DEBIAN_MIRROR:-$(host_mirror)}"
if [ -z "$mirror" ]; then
    echo "error: no Debian mirror found in the host's apt sources; set MLOPS_DEBIAN_MIRROR" >&2
    exit 2
fi
command -v debootstrap >/dev/null || { echo "error: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 2; }

root="$(mktemp -d /tmp/mlops-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT

echo "debootstrap $suite from the host's mirror into $root"
debootstrap --variant=minbase \
    --include=python3,python3-venv,ca-certificates,tzdata \
    "$suite" "$root" "$mirror" >"$root.log" 2>&1 || { tail -40 "$root.log" >&2; exit 1; }
rm -f "$root.log"

# Slim the root: package caches, docs and man pages are dead weight in a serving image.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
       "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*

tar -C "$root" -c . | docker import \
    --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    --message "debootstrap $suite minbase + python3 (scripts/build-base-image.sh)" \
    - "$tag" >/dev/null
docker run --rm "$tag" python3 -c 'import sys, venv; print("base image ok:", sys.version.split()[0])'
