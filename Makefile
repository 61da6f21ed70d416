# The two entry points: `make run` (the whole stack on embedded defaults) and `make test`;
# `make run-prod` starts the production profile (Procfile.prod) on the settings it requires.
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

# The production profile: gateway processes on consecutive ports from GATEWAY_PORT, and
# beat on one machine of a deployment only (BEAT_PROCESSES=0 on the others).
GATEWAY_PROCESSES ?= 2
GATEWAY_PORT ?= 9000
BEAT_PROCESSES ?= 1

# The other Pythons requires-python admits. Each gets a virtualenv of its own (.venv-3.12,
# .venv-3.13) and runs the part of the suite that needs no browser and starts no processes
# of its own, against the same PostgreSQL and Redis under its own database names
# (excloud_py312, Redis DB 12, ...).
OTHER_PYTHONS := 3.12 3.13
PYENV_ROOT ?= $(HOME)/.pyenv
TEST_DATABASE_SERVER ?= postgres://postgres@127.0.0.1:5432
TEST_REDIS_SERVER ?= redis://127.0.0.1:6379
ONE_PROCESS_TESTS := not browser and not stack

.PHONY: install run run-prod check-production-env test test-pythons services chromium lint bench \
	mutation mutation-smoke test-under-load

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
	$(DEV) $(PY) manage.py migrate --noinput
	$(DEV) $(PY) manage.py demo_setup
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(DEV) $(VENV)/bin/honcho -f Procfile.dev start

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

# The lint first: a broken import rule fails the build before the tests start.
test: install lint services chromium
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(DEV) $(PY) -m pytest $(PYTEST_ARGS)
	$(MAKE) --no-print-directory mutation-smoke
	$(MAKE) --no-print-directory test-pythons

# The main suite RUNS times in a row while a busy loop keeps one core occupied, to show
# that no test depends on the machine's speed; stops at the first failing run.
RUNS ?= 5
test-under-load: install services chromium
	@$(PY) -c "while True: pass" & busy=$$!; trap "kill $$busy" EXIT; \
	for run in $$(seq $(RUNS)); do \
		echo "== run $$run of $(RUNS), one core kept busy"; \
		DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
			$(DEV) $(PY) -m pytest -q $(PYTEST_ARGS) || exit 1; \
	done

# Mutation testing of the security core, each module against its own fast tests (one
# worker); writes mutation/REPORT.md. MUTATION_ARGS can name modules to run alone.
mutation: install services
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(DEV) $(PY) scripts/mutation.py $(MUTATION_ARGS)

# A few dozen mutants of the signature comparison and the tenant check, in minutes; fails
# when one survives that mutation/equivalent.toml does not list.
mutation-smoke: install services
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(DEV) $(PY) scripts/mutation.py --smoke

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
	DATABASE_URL=$(TEST_DATABASE_URL) $(DEV) $(PY) bench/usage_page.py
	$(PY) bench/sigv4.py
	$(PY) bench/gateway.py
	$(PY) bench/redis_versions.py
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=redis://127.0.0.1:6379/11 $(DEV) $(PY) bench/gateway_cache.py
