# One entry point for people and CI. Every target bootstraps .venv from requirements.lock first,
# so a fresh clone with only python3 on the machine can run `make demo` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
export MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db

.PHONY: venv demo test test-fast lint bench lock clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@# pip compiles the wheels it installs but not an editable project; with
	@# PYTHONDONTWRITEBYTECODE set (as on our CI boxes) every `mlops` would compile ours again.
	$(BIN)/python -m compileall -q console backends server
	touch $@

venv: $(STAMP)

# From nothing to a served model with latency, drift and an alert on screen (`mlops quickstart`):
# trains two versions into ./mlflow.db, promotes one, serves it (Docker when an engine and the
# local base image are there, else a local process), sends drifted traffic, opens the Monitor.
# `mlops quickstart --stop` ends what it started.
demo: $(STAMP)
	$(BIN)/mlops quickstart

# Everything, in parallel: every xdist worker shares the run's one mlflow server and one
# Prometheus (tests/services.py). A test file with module fixtures runs on one worker (one per
# store for files run against both), so they are built once; the costliest start first
# (tests/conftest.py). TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 4
test: $(STAMP)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder --durations=15

# The inner loop: unit, server and TUI tests, no real service, and not the few marked slow
# (real processes waited out: the gate's process pool, `mlflow models serve`, schemathesis,
# keep-alive and restart timeouts), which `make test` runs.
test-fast: $(STAMP)
	$(BIN)/pytest -n 4 -m "not integration and not tmux and not slow" tests/unit tests/server tests/tui

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy backends server console tests/tui/fakes.py
	$(BIN)/lint-imports

# Each benchmark prints a ratio against a named peer measured in the same run.
BENCHES := startup serve "serve --model pipeline" "serve --model boosting" feedback gate drift rollback runs train image console "console --runs"
bench: $(STAMP)
	$(BIN)/python -m compileall -q console backends server  # as installed: sources edited since
	@# Every one runs, whatever an earlier one found: each prints its targets as met or not, and
	@# the list of those that exited non-zero (a target missed, or the bench failed) ends it.
	@failed=""; for bench in $(BENCHES); do \
		echo "=== bench/$$bench"; \
		set -- $$bench; script=$$1; shift; \
		$(BIN)/python bench/$$script.py "$$@" || failed="$$failed, $$bench"; \
	done; \
	if [ -n "$$failed" ]; then echo "=== exited non-zero: $${failed#, }"; exit 1; fi; \
	echo "=== every bench exited 0"

# Re-pin after editing dependencies in pyproject.toml (needs uv: pip install uv).
lock:
	uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
