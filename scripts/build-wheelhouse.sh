#!/usr/bin/env bash
# Build the offline wheelhouse the serving image installs from (`pip install --no-index`).
# Pins come from requirements.lock, so the image runs the same versions that trained the model.
# Usage: scripts/build-wheelhouse.sh [DEST]   (default: $MLOPS_WHEELHOUSE or ~/.cache/mlops-console/wheelhouse)
# Env:   MLOPS_LOCK, MLOPS_SERVER_REQUIREMENTS: the lock and the server's requirements (default:
#        this checkout's; an installed mlops passes the copies its wheel carries), PYTHON.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-${MLOPS_WHEELHOUSE:-$HOME/.cache/mlops-console/wheelhouse}}"
python="${PYTHON:-$root/.venv/bin/python}"
lock="${MLOPS_LOCK:-$root/requirements.lock}"
requirements="${MLOPS_SERVER_REQUIREMENTS:-$root/server/requirements.txt}"
mkdir -p "$dest"
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
# The lock without hashes: pip wheel resolves the serving subset against these pins.
grep -E '^[A-Za-z0-9_.-]+==' "$lock" | sed -E 's/ *\\$//; s/ *;.*$//' > "$constraints"
"$python" -m pip wheel --quiet --disable-pip-version-check -r "$requirements" \
    -c "$constraints" -w "$dest"
cp "$requirements" "$dest/requirements.txt"
cp "$constraints" "$dest/constraints.txt"
echo "wheelhouse ready: $dest ($(ls "$dest"/*.whl | wc -l) wheels, $(du -sh "$dest" | cut -f1))"
