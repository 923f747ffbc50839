# Two commands matter: `make run` (demo back office + job cluster) and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# The first interpreter that is 3.12+: pyenv's shim honours .python-version.
PYTHON_BOOT := $(shell for c in python3.12 python3.13 python3.14 python3 python; do \
	if command -v $$c >/dev/null 2>&1 && $$c -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; \
	then command -v $$c; break; fi; done)
HOST ?= 127.0.0.1
PORT ?= 8000
# issue 21: the demo's simulated providers listen here (loopback only).
PROVIDERS_PORT ?= $(shell echo $$(( $(PORT) + 1 )))

.PHONY: run test test-pg lint format venv venv-dev migrate seed clean help

help:
	@echo "make run    - set up .venv, migrate, collect static files, seed demo data once, start web + qcluster + simulated providers"
	@echo "make test   - set up .venv with dev requirements and run the test suite (SQLite)"
	@echo "make lint   - ruff check and format check"

$(VENV)/.runtime: requirements.txt
	@test -n "$(PYTHON_BOOT)" || { echo "Python 3.12+ is required (pyenv install 3.12)"; exit 1; }
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.runtime
venv-dev: $(VENV)/.dev

migrate: venv
	DEBUG=$${DEBUG:-true} $(PY) manage.py migrate --no-input -v 1
	DEBUG=$${DEBUG:-true} $(PY) manage.py createcachetable

run: migrate
	DEBUG=$${DEBUG:-true} $(PY) manage.py collectstatic --no-input -v 0
	DEBUG=$${DEBUG:-true} $(PY) manage.py setup_roles
	DEBUG=$${DEBUG:-true} $(PY) manage.py seed_demo --if-empty --providers-port $(PROVIDERS_PORT) --site-url http://$(HOST):$(PORT)
	DEBUG=$${DEBUG:-true} $(PY) manage.py setup_schedules
	DEBUG=$${DEBUG:-true} $(PY) manage.py devserver --host $(HOST) --port $(PORT) --providers-port $(PROVIDERS_PORT)

test: venv-dev
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The same suite on PostgreSQL: DATABASE_URL must point at a server.
test-pg: venv-dev
	@test -n "$$DATABASE_URL" || { echo "set DATABASE_URL"; exit 1; }
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: venv-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) var db.sqlite3*
