# One entry point for people and CI. Every target bootstraps .venv from requirements.lock first,
# so a fresh clone with only python3 on the machine can run `make demo` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
export MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db

.PHONY: venv demo test lint bench lock clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

venv: $(STAMP)

# Train the example project into the local store, then open the console.
demo: $(STAMP)
	$(BIN)/mlflow run examples/iris --env-manager local --experiment-name iris
	$(BIN)/mlops

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy backends server
	$(BIN)/lint-imports

# Each benchmark prints a ratio against a named peer measured in the same run.
bench: $(STAMP)
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/serve.py
	$(BIN)/python bench/rollback.py
	$(BIN)/python bench/runs.py

# Re-pin after editing dependencies in pyproject.toml (needs uv: pip install uv).
lock:
	uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
