# Usage Portal — every command the README names.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# The test run on real services (PostgreSQL + Redis); override to point elsewhere.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/usage_portal
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
DEMO_ENV := PATH="$(CURDIR)/$(BIN):$$PATH" DEBUG=1 DEMO_PASSWORD=$${DEMO_PASSWORD:-demo}

.PHONY: demo install migrate seed run test test-unit test-integration test-faults lint format bench bench-large clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The tested versions (constraints.txt); `dev` brings the test tools and honcho (`demo`).
$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

install: $(VENV)/.installed

migrate: install
	$(DEMO_ENV) $(BIN)/python manage.py migrate --noinput

seed: migrate
	$(DEMO_ENV) $(BIN)/python manage.py seed_demo

## demo: fresh machine → virtualenv, install, migrate, demo data, web + worker + beat
demo: seed
	@echo
	@echo "  Usage Portal is starting at http://127.0.0.1:$(PORT)/"
	@echo "  Logins (password: $${DEMO_PASSWORD:-demo}): ops (Ops), csm1 / csm2 / csm3 (CSM), viewer (Viewer)"
	@echo "  Embedded defaults: SQLite in var/, kombu filesystem broker in var/broker. Ctrl-C stops all."
	@echo
	$(DEMO_ENV) PYTHONUNBUFFERED=1 $(BIN)/honcho start -p $(PORT)

run: install
	$(DEMO_ENV) $(BIN)/honcho start -p $(PORT)

## test: lint, migrations check, unit suite on SQLite, the whole suite on PostgreSQL + Redis,
## then the fault and load suite on its own PostgreSQL, Redis, gunicorn, worker and beat
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DEBUG=1 $(BIN)/python manage.py makemigrations --check --dry-run
	$(MAKE) test-unit
	$(MAKE) test-integration
	$(MAKE) test-faults

test-unit: install
	$(BIN)/pytest -q -m "not integration and not browser and not faults"

## test-integration: what needs the real services (a worker, PostgreSQL, Redis) or a browser;
## the unit suite ran on SQLite just before, and its database-sensitive tests run here again
test-integration: install
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BIN)/pytest -q -m "(integration or browser) and not faults"

## test-faults: starts and breaks its own services, never the shared ones (tests/faults)
test-faults: install
	$(BIN)/pytest -q -m faults tests/faults

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## bench: the 5,000-account book (<= 15 minutes), bench/results.json
bench: install
	$(BIN)/python bench/run.py

## bench-large: the 50,000-account book (~16 M pings; refuses when the disk lacks room),
## bench/results-large.json
bench-large: install
	$(BIN)/python bench/run.py --large

clean:
	rm -rf var/ $(VENV)
