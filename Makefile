# Two commands do all the set-up: `make run` (the product) and `make test` (the tests).
PYTHON ?= python3
STAMP := .make-installed

.PHONY: install run test test-fast bench schema

$(STAMP): requirements.txt
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $(STAMP)

install: $(STAMP)

## Load data (live, or the offline sample), start the scheduler and the dashboard on SQLite.
run: install
	./scripts/run_local.sh

## Every test: unit, integration on SQLite and PostgreSQL, dashboard, browser.
test: install
	./scripts/ensure_postgres.sh
	$(PYTHON) -m pytest

## The quick loop while coding: no browser, no subprocess topology.
test-fast: install
	$(PYTHON) -m pytest -m "not browser and not slow"

## The benchmark of issue "Scale and speed" (see README).
bench: install
	$(PYTHON) -m pipeline.bench

## Regenerate the DDL in sql/schema/ from pipeline/schema.py.
schema:
	$(PYTHON) -m pipeline schema --dialect postgresql > sql/schema/postgresql.sql
	$(PYTHON) -m pipeline schema --dialect sqlite > sql/schema/sqlite.sql
