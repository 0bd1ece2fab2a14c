# Two commands do all the set-up: `make run` (the product) and `make test` (the tests).
# Both work in a project virtual environment (.venv), so a stock Debian/Ubuntu Python that
# refuses system-wide `pip install` (PEP 668) is fine. Dependencies come from the hashed
# lock files: requirements.lock (runtime) and requirements-dev.lock (runtime + tests).
PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip --disable-pip-version-check --quiet
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: install install-dev run test test-fast mutation bench schema docs lock

$(VPY):
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "error: '$(PYTHON) -m venv' failed. On Debian/Ubuntu install the venv module first:" >&2; \
	  echo "       sudo apt-get install python3-venv   (then run make again)" >&2; exit 1; }

$(RUNTIME_STAMP): requirements.lock pyproject.toml | $(VPY)
	$(PIP) install --require-hashes -r requirements.lock
	$(PIP) install --no-deps -e .
	@touch $@

$(DEV_STAMP): requirements-dev.lock pyproject.toml | $(VPY)
	$(PIP) install --require-hashes -r requirements-dev.lock
	$(PIP) install --no-deps -e .
	@touch $@ $(RUNTIME_STAMP)

install: $(RUNTIME_STAMP)

install-dev: $(DEV_STAMP)

## Load data (live, or the offline sample), start the scheduler and the dashboard on SQLite.
run: install
	PYTHON=$(abspath $(VPY)) ./scripts/run_local.sh

## Every test: unit, integration on SQLite and PostgreSQL, dashboard, browser.
test: install-dev
	./scripts/ensure_postgres.sh
	$(VPY) -m pytest

## The quick loop while coding: no browser, no subprocess topology.
test-fast: install-dev
	$(VPY) -m pytest -m "not browser and not slow"

## Mutation testing of the pure modules with the unit tests only (mutmut, [tool.mutmut] in pyproject.toml):
## prints killed / total per module and fails below 90 %. MUTANTS="pipeline.categories.*" runs one module,
## MUTATION_JOBS=1 limits the parallel workers (default: one per core).
mutation: install-dev
	rm -rf mutants
	$(VENV)/bin/mutmut run $(if $(MUTATION_JOBS),--max-children $(MUTATION_JOBS)) $(MUTANTS)
	$(VPY) scripts/mutation_score.py --min 90

## The benchmark of issue "Scale and speed" (see README).
bench: install-dev
	$(VPY) -m benchmarks.bench

## Regenerate the DDL in sql/schema/ from pipeline/schema.py.
schema: install
	$(VPY) -m pipeline schema --dialect postgresql > sql/schema/.postgresql.sql.tmp
	mv sql/schema/.postgresql.sql.tmp sql/schema/postgresql.sql
	$(VPY) -m pipeline schema --dialect sqlite > sql/schema/.sqlite.sql.tmp
	mv sql/schema/.sqlite.sql.tmp sql/schema/sqlite.sql

## Regenerate docs/tables.md from the gold tables' declarations (sql/gold/*.yml).
docs: install
	$(VPY) -m pipeline.gold_catalog docs > docs/.tables.md.tmp
	mv docs/.tables.md.tmp docs/tables.md

## Upgrade the locked versions on purpose (needs pip-tools in the venv).
lock: install-dev
	$(PIP) install pip-tools
	$(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	  --no-emit-find-links --upgrade --output-file requirements.lock requirements.txt
	$(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
	  --no-emit-find-links --upgrade --output-file requirements-dev.lock requirements-dev.txt
