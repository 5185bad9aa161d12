#!/usr/bin/env bash
# Build a local python3.11 base image without any container registry: debootstrap a minimal
# Debian bookworm root with python3 + venv, then `docker import` it. The serving Dockerfile takes
# it through `--build-arg BASE_IMAGE=mlops-base:bookworm` (see DESIGN.md: no registry is reachable).
#
# Usage: scripts/build-base-image.sh [--dry-run] [IMAGE_TAG]    (default: mlops-base:bookworm)
#        --dry-run prints the debootstrap command it would run, and runs nothing.
# Env:   MLOPS_DEBIAN_MIRROR overrides the mirror. By default the host's own Debian mirror is
#        used, so the script works wherever `apt-get install` works; a host with no Debian
#        source (a stock Ubuntu CI runner) gets deb.debian.org, checked against the
#        debian-archive-keyring package's keys. MLOPS_APT_DIR: where the apt sources are
#        (/etc/apt).
set -euo pipefail

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then
    dry_run=1
    shift
fi
tag="${1:-mlops-base:bookworm}"
suite="bookworm"
apt_dir="${MLOPS_APT_DIR:-/etc/apt}"
keyring="/usr/share/keyrings/debian-archive-keyring.gpg"

if [ "$dry_run" = 0 ] && docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base image $tag already present"
    exit 0
fi

host_mirror() {
    # deb822 sources first (Debian 12 default), then the classic one-line format.
    local f
    for f in "$apt_dir"/sources.list.d/debian.sources "$apt_dir"/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '/^URIs:/ {u=$2} /^Suites:/ && $0 ~ / '"$suite"'( |$)/ && u != "" {print u; exit}' "$f" && return 0
    done
    if [ -f "$apt_dir/sources.list" ]; then
        awk '$1=="deb" && $3=="'"$suite"'" {print $2; exit}' "$apt_dir/sources.list"
    fi
}

mirror="${MLOPS_DEBIAN_MIRROR:-$(host_mirror)}"
if [ -z "$mirror" ]; then
    mirror="http://deb.debian.org/debian"
    echo "no Debian $suite source in $apt_dir: using $mirror (set MLOPS_DEBIAN_MIRROR to choose)" >&2
fi
# Debian's keys, wherever the host is from: Ubuntu's debootstrap would check a Debian suite
# against Ubuntu's keyring and fail; it ships Debian's in the debian-archive-keyring package.
if [ ! -f "$keyring" ]; then
    echo "error: $keyring is missing (apt-get install debian-archive-keyring)" >&2
    exit 2
fi
bootstrap=(debootstrap --variant=minbase --keyring="$keyring"
           --include=python3,python3-venv,ca-certificates,tzdata "$suite")
if [ "$dry_run" = 1 ]; then
    echo "${bootstrap[*]} ROOT $mirror"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "error: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 2; }

root="$(mktemp -d /tmp/mlops-base.XXXXXX)"
trap 'rm -rf "$root"' EXIT

echo "debootstrap $suite from $mirror into $root"
"${bootstrap[@]}" "$root" "$mirror" >"$root.log" 2>&1 || { tail -40 "$root.log" >&2; exit 1; }
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
