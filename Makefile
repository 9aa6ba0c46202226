# The two set-up commands of the README: `make demo` (main job) and `make test` (tests).
# Both create/reuse .venv and install what is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
export OMP_NUM_THREADS ?= 2

.PHONY: setup demo test test-all lint format

setup:
	@bash scripts/setup_env.sh

demo: setup
	@bash scripts/demo.sh

test: setup lint
	$(PY) -m pytest -q -m "not slow"

test-all: setup lint
	$(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check fusionseg tests tools benchmarks
	$(PY) -m ruff format --check fusionseg tests tools benchmarks

format: setup
	$(PY) -m ruff format fusionseg tests tools benchmarks
	$(PY) -m ruff check --fix fusionseg tests tools benchmarks
