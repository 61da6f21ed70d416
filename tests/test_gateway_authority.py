"""gateway.authority's cache: with Redis, one database read per key until the authority
version moves; without Redis (or with Redis down), a read per request."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings
from django.db import connection

from audit.trail import Actor
from gateway import authority
from keys.services import revoke_key
from tests.conftest import new_key

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def loads(monkeypatch) -> list[str]:
    """Counts key loads. Each read closes its worker thread's connection afterwards, so
    no connection outlives the test and blocks dropping the test database."""
    seen: list[str] = []
    real_load, real_load_key = authority._load, authority._load_key_only

    def counting(access_key_id, names):
        seen.append(access_key_id)
        try:
            return real_load(access_key_id, names)
        finally:
            connection.close()

    def closing(access_key_id):
        try:
            return real_load_key(access_key_id)
        finally:
            connection.close()

    monkeypatch.setattr(authority, "_load", counting)
    monkeypatch.setattr(authority, "_load_key_only", closing)
    return seen


def _revoke(owner, key) -> None:
    try:
        revoke_key(owner, Actor.for_user(owner.user), key)
    finally:
        connection.close()


def _statuses(owner, key, redis_url: str) -> list[str]:
    async def run() -> list[str]:
        cache = authority.Authority(redis_url)
        try:
            seen = []
            for _ in range(3):
                seen.append((await cache.lookup(key.id, ())).key.status)
            await asyncio.to_thread(_revoke, owner, key)
            seen.append((await cache.lookup(key.id, ())).key.status)
            seen.append(str(await cache.still_usable(key.id)))
            return seen
        finally:
            await cache.aclose()

    return asyncio.run(run())


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL")
def test_it_reads_a_key_once_until_the_version_moves(owner, loads):
    key, _ = new_key(owner)
    assert _statuses(owner, key, settings.REDIS_URL) == [
        "active",
        "active",
        "active",
        "revoked",
        "False",
    ]
    assert len(loads) == 2


def test_it_reads_the_database_per_request_without_redis(owner, loads):
    key, _ = new_key(owner)
    assert _statuses(owner, key, "") == ["active", "active", "active", "revoked", "False"]
    assert len(loads) == 4


def test_it_reads_the_database_when_redis_is_down(owner, loads):
    key, _ = new_key(owner)
    assert _statuses(owner, key, "redis://127.0.0.1:1/0") == [
        "active",
        "active",
        "active",
        "revoked",
        "False",
    ]
    assert len(loads) == 4


def test_it_leaves_an_unreachable_redis_alone_for_the_back_off(owner, loads, settings):
    settings.EXCLOUD_REDIS_BACKOFF_SECONDS = 600
    key, _ = new_key(owner)

    async def run() -> int:
        cache = authority.Authority("redis://127.0.0.1:1/0")
        try:
            for _ in range(5):
                assert (await cache.lookup(key.id, ())).key.status == "active"
            return cache.redis_failures
        finally:
            await cache.aclose()

    assert asyncio.run(run()) == 1
    assert len(loads) == 5
