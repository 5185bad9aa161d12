#!/usr/bin/env bash
# The model delivery pipeline, runnable here exactly as CI runs it (.github/workflows/model-deploy.yml):
#   tests -> train and register -> validate (the gate) -> promote -> build the serving image.
# Needs MLFLOW_TRACKING_URI (a shared server in real use). Knobs (environment):
#   MODEL=iris  PROJECT=examples/iris  REQUIRE='accuracy>=0.9'  PARAMS='n_estimators=100'
#   SKIP_TESTS=1 (the caller ran them)  SKIP_IMAGE=1 (no Docker engine here)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${MLFLOW_TRACKING_URI:?set MLFLOW_TRACKING_URI to the tracking server}"
MODEL="${MODEL:-iris}"
PROJECT="${PROJECT:-examples/iris}"
REQUIRE="${REQUIRE:-accuracy>=0.9}"
PARAMS="${PARAMS:-n_estimators=100}"
MLOPS="${MLOPS:-mlops}"
REASON="pipeline ${GITHUB_SHA:-$(git rev-parse --short HEAD 2>/dev/null || echo local)}"

step() { echo "=== pipeline: $*"; }

if [ "${SKIP_TESTS:-0}" != "1" ]; then
    step "tests"
    make test
fi

step "train $PROJECT ($PARAMS)"
params=()
for p in $PARAMS; do params+=(-P "$p"); done
out="$("$MLOPS" train "$PROJECT" "${params[@]}" --quiet)"
echo "$out"
run_id="$(sed -n 's/^run_id=\([0-9a-f]\{32\}\).*/\1/p' <<<"$out" | head -n1)"
[ -n "$run_id" ] || { echo "pipeline: training printed no run id" >&2; exit 1; }

step "register run $run_id as $MODEL"
version="$("$MLOPS" models register "$run_id" --name "$MODEL" --json \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["version"])')"
echo "version $version"

step "validate $MODEL v$version (gate: $REQUIRE, the run's policy gate.yaml, signature, load and predict)"
"$MLOPS" models validate "$MODEL" "$version" --require "$REQUIRE"

step "promote $MODEL v$version to champion"
"$MLOPS" models promote "$MODEL" "$version" --alias champion --require "$REQUIRE" \
    --reason "$REASON"

if [ "${SKIP_IMAGE:-0}" != "1" ]; then
    # By number: the version this run validated and promoted, not whatever the alias points
    # at by now (another shell, a rollback, the next pipeline may have moved it meanwhile).
    step "build the serving image for $MODEL v$version"
    "$MLOPS" image build "$MODEL/$version" --quiet
fi
step "done: $MODEL v$version is champion"
