# Two entry points: `make demo` and `make test`. Both create .venv and install on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo check test test-fast ui clean

# pyproject.toml holds compatible ranges; constraints.txt the exact, tested pins installed here.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## demo: ingest the bundled MNIST subset through the main Dagster job into ./.robust-data
demo: $(STAMP)
	$(BIN)/robust-data curate

## check: lint, formatting, types of the core, and the import layers (seconds)
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## test: the checks and the whole test suite (CPU only); what CI runs
test: check
	$(BIN)/python -m pytest

## test-fast: the checks and the tests not marked slow (no end-to-end runs), on every core
test-fast: check
	$(BIN)/python -m pytest -m "not slow" -n auto

## ui: the Dagster UI and daemon on 127.0.0.1:3000 over ./.robust-data
ui: $(STAMP)
	$(BIN)/robust-data ui

clean:
	rm -rf $(VENV) .robust-data .pytest_cache .ruff_cache
