"""The gateway's /healthz and /readyz while its database, Redis and object store (each
the test's own) freeze, come back and die."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests.gateway_stack import freeze, gateway, upstream
from tests.own_services import own_postgres, own_redis

# A frozen dependency is answered within its check's time limit, with room for a slow
# machine: never the client's own timeout.
ANSWER_WITHIN_SECONDS = 5.0


def readyz(url: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    r = httpx.get(url + "/readyz", timeout=30)
    return r.status_code, r.json(), time.monotonic() - started


def ready_again(url: str) -> dict:
    deadline = time.monotonic() + 20
    while True:
        status, body, _ = readyz(url)
        if status == 200 or time.monotonic() > deadline:
            assert status == 200, body
            return body
        time.sleep(0.2)


def assert_alive(url: str) -> None:
    r = httpx.get(url + "/healthz", timeout=5)
    assert (r.status_code, r.json()) == (200, {"status": "alive"})


@pytest.mark.django_db
def test_it_says_which_dependency_is_not_ready(tmp_path):
    with (
        own_postgres() as pg,
        own_redis(tmp_path) as rd,
        upstream(tmp_path) as store,
        gateway(tmp_path, store, redis_url=rd.url(), database=pg.url("postgres")) as gw,
    ):
        body = ready_again(gw.url)
        assert body == {
            "status": "ready",
            "checks": {"database": "ok", "redis": "ok", "object_store": "ok"},
        }

        freeze(store.pid)
        try:
            status, body, took = readyz(gw.url)
            assert status == 503
            assert body["status"] == "unavailable"
            assert body["checks"]["object_store"].startswith("timed out")
            assert body["checks"]["database"] == "ok"
            assert took < ANSWER_WITHIN_SECONDS
            assert_alive(gw.url)
        finally:
            os.kill(store.pid, signal.SIGCONT)
        ready_again(gw.url)

        for frozen, name in ((pg, "database"), (rd, "redis")):
            frozen.freeze()
            try:
                status, body, took = readyz(gw.url)
                assert status == 503
                assert body["checks"][name].startswith("timed out"), body
                assert body["checks"]["object_store"] == "ok"
                assert took < ANSWER_WITHIN_SECONDS
                # A second probe waits on the same check rather than starting another.
                status, body, took = readyz(gw.url)
                assert (status, took < ANSWER_WITHIN_SECONDS) == (503, True)
            finally:
                frozen.thaw()
            ready_again(gw.url)

        pg.kill()
        status, body, _ = readyz(gw.url)
        assert status == 503
        assert body["checks"]["database"].startswith("failed: ")
        pg.start()
        ready_again(gw.url)

        os.kill(store.pid, signal.SIGKILL)
        status, body, _ = readyz(gw.url)
        assert status == 503
        assert body["checks"]["object_store"] == "failed: ConnectError"
        assert_alive(gw.url)
        r = httpx.get(gw.url + "/readyz")
        assert r.headers["retry-after"] == "1"
