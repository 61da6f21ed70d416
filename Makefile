# The two entry points: `make run` (the whole stack on embedded defaults) and `make test`;
# `make run-prod` starts the production profile (Procfile.prod) on the settings it requires.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/excloud
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

# The production profile: gateway processes on consecutive ports from GATEWAY_PORT, and
# beat on one machine of a deployment only (BEAT_PROCESSES=0 on the others).
GATEWAY_PROCESSES ?= 2
GATEWAY_PORT ?= 9000
BEAT_PROCESSES ?= 1

.PHONY: install run run-prod check-production-env test services chromium lint bench \
	mutation mutation-smoke

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(STAMP)

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo_setup
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(VENV)/bin/honcho -f Procfile.dev start

# The settings are checked before anything is installed or started. No .env file: the
# processes get exactly the environment that was checked.
run-prod: check-production-env install
	$(PY) manage.py migrate --noinput
	$(VENV)/bin/honcho -f Procfile.prod --env /dev/null start --port $(GATEWAY_PORT) \
		--concurrency gateway=$(GATEWAY_PROCESSES),beat=$(BEAT_PROCESSES)

check-production-env:
	@$(PYTHON) scripts/check_production_env.py

services:
	bash scripts/ensure-services.sh

chromium:
	command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

test: install services chromium
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) -m pytest $(PYTEST_ARGS)

# Mutation testing of the security core, each module against its own fast tests (one
# worker); writes mutation/REPORT.md. MUTATION_ARGS can name modules to run alone.
mutation: install services
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) scripts/mutation.py $(MUTATION_ARGS)

# A few dozen mutants of the signature comparison and the tenant check, in minutes; fails
# when one survives that mutation/equivalent.toml does not list.
mutation-smoke: install services
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) scripts/mutation.py --smoke

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: install services
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) bench/keys_list.py
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) bench/audit_page.py
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) bench/audit_export.py
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) bench/expiry_sweep.py
	$(PY) bench/sigv4.py
	$(PY) bench/gateway.py
