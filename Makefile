# The two entry points: `make run` (the whole stack on embedded defaults) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/excloud
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

# The other Pythons requires-python admits. Each gets a virtualenv of its own (.venv-3.12,
# .venv-3.13) and runs the part of the suite that needs no browser and starts no processes
# of its own, against the same PostgreSQL and Redis under its own database names
# (excloud_py312, Redis DB 12, ...).
OTHER_PYTHONS := 3.12 3.13
PYENV_ROOT ?= $(HOME)/.pyenv
TEST_DATABASE_SERVER ?= postgres://postgres@127.0.0.1:5432
TEST_REDIS_SERVER ?= redis://127.0.0.1:6379
ONE_PROCESS_TESTS := not browser and not stack

.PHONY: install run test test-pythons services chromium lint bench

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

install: $(STAMP)

# The first pythonX.Y that runs: from PATH (a pyenv shim there may have no version behind
# it), else the newest pyenv build.
.venv-%/.installed-stamp: pyproject.toml
	@test -x .venv-$*/bin/python || { \
		for python in $$(command -v python$*) \
			$$(ls -d $(PYENV_ROOT)/versions/$*.*/bin/python$* 2>/dev/null | sort -rV); do \
			$$python -c "" 2>/dev/null && break; python=""; \
		done; \
		test -n "$$python" || { echo "no python$* on PATH or in $(PYENV_ROOT)/versions" >&2; exit 1; }; \
		echo "$$python -m venv .venv-$*"; $$python -m venv .venv-$*; }
	.venv-$*/bin/python -m pip install --quiet --upgrade pip
	.venv-$*/bin/python -m pip install --quiet -e '.[test]'
	touch $@

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
	$(MAKE) --no-print-directory test-pythons

# Every Python is tried even when one fails; a selection (PYTEST_ARGS) that leaves
# nothing to run here (pytest's exit status 5) is not a failure. .venv is installed too:
# the test of Procfile.dev checks the programs `make run` starts from it.
test-pythons: install services $(OTHER_PYTHONS:%=.venv-%/.installed-stamp)
	@failed=""; \
	for version in $(OTHER_PYTHONS); do \
		echo "== Python $$version: -m '$(ONE_PROCESS_TESTS)'"; \
		DATABASE_URL=$(TEST_DATABASE_SERVER)/excloud_py$${version/./} \
		REDIS_URL=$(TEST_REDIS_SERVER)/$${version#3.} \
		.venv-$$version/bin/python -m pytest -m "$(ONE_PROCESS_TESTS)" $(PYTEST_ARGS); \
		status=$$?; \
		if [ $$status -ne 0 ] && [ $$status -ne 5 ]; then failed="$$failed $$version"; fi; \
	done; \
	if [ -n "$$failed" ]; then echo "failed on Python$$failed" >&2; exit 1; fi

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: install services
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) bench/keys_list.py
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) bench/audit_page.py
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) bench/audit_export.py
	DATABASE_URL=$(TEST_DATABASE_URL) $(PY) bench/expiry_sweep.py
	$(PY) bench/sigv4.py
	$(PY) bench/gateway.py
