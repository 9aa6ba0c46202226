# The two set-up commands of the README: `make demo` (main job) and `make test` (tests).
# Both create/reuse .venv and install what is missing, at the versions of requirements/lock.txt.
VENV ?= .venv
PY := $(VENV)/bin/python
export OMP_NUM_THREADS ?= 2

.PHONY: setup demo test test-all test-newest lock lint format

setup:
	@FUSIONSEG_VENV=$(VENV) bash scripts/setup_env.sh

demo: setup
	@bash scripts/demo.sh

test: setup lint
	$(PY) -m pytest -q -m "not slow"

test-all: setup lint
	$(PY) -m pytest -q

# The default suite under the newest versions the registry serves (no lock), in its own venv.
test-newest:
	@FUSIONSEG_VENV=.venv-newest FUSIONSEG_LOCK=none bash scripts/setup_env.sh
	FUSIONSEG_UNLOCKED=1 .venv-newest/bin/python -m pytest -q -m "not slow"

# Regenerate requirements/lock.txt from a fresh resolve (holds: requirements/holds.txt).
lock:
	@bash scripts/lock.sh

lint: setup
	$(PY) -m ruff check fusionseg tests tools benchmarks
	$(PY) -m ruff format --check fusionseg tests tools benchmarks

format: setup
	$(PY) -m ruff format fusionseg tests tools benchmarks
	$(PY) -m ruff check --fix fusionseg tests tools benchmarks
