# The two entry points: `make run` (the whole stack on embedded defaults) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/excloud
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: install run test services chromium lint bench

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

services:
	bash scripts/ensure-services.sh

chromium:
	command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

test: install services chromium
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: install services
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) bench/keys_list.py
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) bench/audit_page.py
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) bench/audit_export.py
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) bench/expiry_sweep.py
	$(PY) bench/sigv4.py
	$(PY) bench/gateway.py
