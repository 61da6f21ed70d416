# The two entry points: `make run` (the whole stack on embedded defaults) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The start-up step: development secrets generated once into var/dev.env, then the command
# runs with them in its environment (excloud_portal/devenv.py). Settings only read it.
DEV := $(PY) -m excloud_portal.devenv

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
	$(DEV) $(PY) manage.py migrate --noinput
	$(DEV) $(PY) manage.py demo_setup
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(DEV) $(VENV)/bin/honcho -f Procfile.dev start

services:
	bash scripts/ensure-services.sh

chromium:
	command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

# The lint first: a broken import rule fails the build before the tests start.
test: install lint services chromium
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(DEV) $(PY) -m pytest $(PYTEST_ARGS)

# ruff, and the import rules in pyproject.toml (README, Architecture).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

bench: install services
	DATABASE_URL=$(TEST_DATABASE_URL) $(DEV) $(PY) bench/keys_list.py
	DATABASE_URL=$(TEST_DATABASE_URL) $(DEV) $(PY) bench/audit_page.py
	DATABASE_URL=$(TEST_DATABASE_URL) $(DEV) $(PY) bench/audit_export.py
	DATABASE_URL=$(TEST_DATABASE_URL) $(DEV) $(PY) bench/expiry_sweep.py
	$(PY) bench/sigv4.py
	$(PY) bench/gateway.py
