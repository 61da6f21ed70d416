"""A pytest plugin (``-p`` in pyproject.toml): the test run gets the development environment
that `make test` gives it, before pytest-django reads the settings, and the processes tests
start inherit it."""

from __future__ import annotations

import pytest

from excloud_portal import devenv


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args) -> None:
    devenv.load()
