# Tollgate: everything runs from a local virtualenv that `make` creates on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Python's default, whatever the environment says: compiled modules are cached in
# __pycache__ (ignored by git). With PYTHONDONTWRITEBYTECODE set, every pytest worker
# and every gateway process the tests start compiles the whole tree again (collection
# alone went from 2.9 s to 7.4 s per pytest process on a 2-core machine).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test test-slow lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall whenever the package metadata changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,redis]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/gateway up

lint: $(STAMP)
	$(BIN)/ruff check gateway admin tests bench
	$(BIN)/ruff format --check gateway admin tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# pytest under coverage (subprocesses included, see pyproject.toml), then the report;
# it fails under [tool.coverage.report] fail_under. The tests run in TEST_WORKERS
# processes, each with a database of its own (tests/conftest.py); most wait on sockets
# and child processes, so three keep two cores busy.
TEST_WORKERS ?= 3

test: lint
	rm -f .coverage .coverage.*
	$(BIN)/python -m coverage run -m pytest -n $(TEST_WORKERS) --dist worksteal
	$(BIN)/python -m coverage combine --quiet
	$(BIN)/python -m coverage report

# The long scenarios `make test` leaves out (pytest marker `slow`: gateways behind HAProxy,
# three gateways sharing a quota, schemathesis against the admin API); CI runs them too.
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .data build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage .coverage.*
