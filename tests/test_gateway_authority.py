"""gateway.authority's cache: with Redis, one database read per key until the authority
version moves; without Redis (or with Redis down), a read per request."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from audit.trail import Actor
from excloud_portal import devenv
from gateway import authority, freshness
from keys.services import revoke_key
from tests.conftest import new_key

pytestmark = pytest.mark.django_db(transaction=True)
REPO = Path(__file__).resolve().parent.parent


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
            seen.append(str((await cache.current_key(key.id)).usable()))
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


def test_it_caches_on_sqlite_until_another_connection_commits(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(EXCLOUD_VAR_DIR=str(tmp_path / "var"), PYTHONPATH=str(REPO))
    devenv.load(env)
    result = subprocess.run(
        [sys.executable, "-m", "tests.sqlite_authority"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    # Read once, then answered from memory; the revoke another process commits is seen
    # by the very next lookup, which reads the row again.
    assert outcome["before_revoke"] == {"hits": 4, "misses": 1}
    assert outcome["statuses"] == ["active"] * 5 + ["revoked", "revoked"]
    assert outcome["after"] == {"hits": 5, "misses": 2}
    assert outcome["still_usable"] is False


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL")
def test_a_revoke_drops_that_key_only(owner, loads):
    kept, _ = new_key(owner, "kept")
    revoked, _ = new_key(owner, "revoked")

    async def run() -> list[str]:
        cache = authority.Authority(settings.REDIS_URL)
        try:
            for key in (kept, revoked, kept, revoked):
                await cache.lookup(key.id, ())
            await asyncio.to_thread(_revoke, owner, revoked)
            return [(await cache.lookup(k.id, ())).key.status for k in (kept, revoked, kept)]
        finally:
            await cache.aclose()

    assert asyncio.run(run()) == ["active", "revoked", "active"]
    # One read of each before the revoke, and one of the revoked key after it.
    assert loads == [kept.id, revoked.id, revoked.id]


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL")
def test_a_deleted_bucket_drops_that_bucket_only(owner, loads):
    from gateway.models import Bucket
    from gateway.services import adopt_bucket, bucket_deleted

    key, _ = new_key(owner)
    for name in ("kept-bucket", "gone-bucket"):
        adopt_bucket(owner.org, name, Actor.system())
    connection.close()

    def delete() -> None:
        try:
            bucket_deleted(key, "gone-bucket", Actor.system())
        finally:
            connection.close()

    async def run() -> list[dict]:
        cache = authority.Authority(settings.REDIS_URL)
        try:
            for names in (("kept-bucket",), ("gone-bucket",)):
                await cache.lookup(key.id, names)
            await asyncio.to_thread(delete)
            return [
                (await cache.lookup(key.id, names)).owners
                for names in (("kept-bucket",), ("gone-bucket",))
            ]
        finally:
            await cache.aclose()

    assert asyncio.run(run()) == [{"kept-bucket": owner.org_id}, {"gone-bucket": None}]
    assert not Bucket.objects.filter(name="gone-bucket").exists()
    # The key and each bucket read once; after the delete, only the deleted bucket again.
    assert loads == [key.id, key.id, key.id]


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs REDIS_URL")
def test_a_revoke_whose_redis_bump_was_lost_reaches_the_cache_through_the_change_records(
    owner, loads, monkeypatch
):
    import redis

    from keys import revocation

    key, _ = new_key(owner)
    versions = redis.Redis.from_url(settings.REDIS_URL)
    versions.delete(revocation.key_version(key.id))

    async def run() -> list[str]:
        cache = authority.Authority(settings.REDIS_URL)
        try:
            seen = [(await cache.lookup(key.id, ())).key.status for _ in range(3)]
            # This process cannot reach Redis; the gateway's cache still can.
            monkeypatch.setattr(settings, "REDIS_URL", "redis://127.0.0.1:1/0")
            monkeypatch.setattr(revocation, "_client", None)
            await asyncio.to_thread(_revoke, owner, key)
            assert versions.get(revocation.key_version(key.id)) is None
            deadline = time.monotonic() + 10 * freshness.CHANGE_FEED_SECONDS
            while (status := (await cache.lookup(key.id, ())).key.status) == "active":
                assert time.monotonic() < deadline, "the change records were never read"
                await asyncio.sleep(0.05)
            seen.append(status)
            seen.append(str((await cache.current_key(key.id)).usable()))
            return seen
        finally:
            await cache.aclose()

    assert asyncio.run(run()) == ["active", "active", "active", "revoked", "False"]
    # Redis never told the cache: the version it reads for the key is still unset.
    assert versions.get(revocation.key_version(key.id)) is None or revocation.retrying()
