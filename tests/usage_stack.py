"""The processes a usage test module shares: one var folder (the filesystem broker), a
gateway on a read-only database session that sends its counts every second, and a Celery
worker on the same broker that adds them up. A module takes all three::

    var, gw, celery_worker = usage_stack.fixtures()

The names are conftest.STACK_FIXTURES', so each test that uses them is marked `stack`.
"""

from __future__ import annotations

import pytest

from tests.gateway_stack import gateway, worker


def fixtures(*, forwarded_allow_ips: str = ""):
    """Module-scoped ``var``, ``gw`` and ``celery_worker`` fixtures; the gateway believes
    X-Forwarded-For from ``forwarded_allow_ips`` only."""

    @pytest.fixture(scope="module")
    def var(tmp_path_factory):
        return tmp_path_factory.mktemp("var")

    @pytest.fixture(scope="module")
    def gw(tmp_path_factory, store, var):
        with gateway(
            tmp_path_factory.mktemp("gw"),
            store,
            var=var,
            read_only=True,
            forwarded_allow_ips=forwarded_allow_ips,
            EXCLOUD_USAGE_FLUSH_SECONDS="1",
        ) as running:
            yield running

    @pytest.fixture(scope="module")
    def celery_worker(tmp_path_factory, store, var):
        with worker(tmp_path_factory.mktemp("worker"), store, var=var) as log:
            yield log

    return var, gw, celery_worker
