# pointbook — two commands on a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DB ?= pointbook.db

.PHONY: demo test lint check clean bench bench-full soak

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pointbook needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	@touch $@ $(VENV)/.installed

## demo: set up .venv and run the demo on the embedded SQLite file $(DB)
demo: $(VENV)/.installed
	$(BIN)/pointbook demo --db $(DB)

## test: set up .venv with the test extras and run the whole suite
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

## lint: ruff and mypy --strict on src/
lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

check: lint test

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	@touch $@ $(VENV)/.installed

## bench-full: the issue's sizes (hours on 2 cores; run on an idle machine)
bench-full: $(VENV)/.installed-bench
	$(BIN)/pointbook bench ingest --events 200000 --subjects 20000
	$(BIN)/pointbook bench query --subjects 1000000 --entries 10000000
	$(BIN)/pointbook bench scale --plot docs/img/bench-scale.svg
	$(BIN)/pointbook bench memory --events 10000000 --subjects 1000000

## bench: a modest benchmark run (SQLite; see docs/benchmarks.md for larger ones)
bench: $(VENV)/.installed
	$(BIN)/pointbook bench ingest --events 50000 --subjects 5000
	$(BIN)/pointbook bench recompute --events 50000 --subjects 5000

## soak: the reliability tests at full size (POINTBOOK_SOAK=1) and the mutation run; long
soak: $(VENV)/.installed-test
	POINTBOOK_SOAK=1 $(BIN)/python -m pytest -s tests/test_crash.py tests/test_concurrency.py \
		tests/test_stateful.py tests/test_corpus.py tests/test_fuzz_api.py tests/test_disk_full.py \
		tests/test_load.py tests/test_order.py tests/test_simulation.py tests/test_tamper.py \
		tests/test_upgrade.py tests/test_limits.py tests/test_invariants.py tests/test_time_edges.py
	$(BIN)/python scripts/mutation.py --json mutation.json

clean:
	rm -rf $(VENV) demo-data $(DB) $(DB)-wal $(DB)-shm
