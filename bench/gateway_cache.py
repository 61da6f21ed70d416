"""Benchmark: the gateways' key cache with 10,000 keys in use and 100 revocations a minute.

Run from the repository root with DATABASE_URL pointing at PostgreSQL and REDIS_URL at
Redis::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/excloud \\
        REDIS_URL=redis://127.0.0.1:6379/11 .venv/bin/python bench/gateway_cache.py

The database named in DATABASE_URL is never touched: the script creates its own beside it
(``<name>_bench_cache``) and drops it at the end; the Redis database is flushed first.

Two gateway caches (gateway.authority.Authority, as each gateway process holds one) serve
lookups of 10,000 keys, each with the bucket the request names, for DURATION seconds,
while a third party revokes a key every 0.6 s through keys.services.revoke_key, as the web
does. Right after each revoke returns, the revoked key is looked up on both caches: it must
come back revoked on both, on that very lookup. Budget (the gateway's goals): after the
caches are warm, at least 99% of lookups are answered from memory, and no lookup of a
revoked key after its revoke succeeds. The script exits non-zero otherwise.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchdb  # noqa: E402

KEYS = 10_000
DURATION = 60.0
REVOKE_EVERY = 0.6  # 100 a minute
CLIENTS = 8  # concurrent lookups per cache
BUCKET = "bench-bucket"
HIT_RATIO_GOAL = 0.99


def fill() -> tuple[object, list[str]]:
    """An org with KEYS active keys and a bucket; (the owner's membership, key IDs)."""
    from accounts.models import Membership, Organization, Role, User
    from audit.trail import Actor
    from gateway.services import adopt_bucket
    from keys.credentials import new_access_key_id, new_secret, seal
    from keys.models import AccessKey, CreatedVia

    org = Organization.objects.create(slug="bench", name="Bench")
    user = User.objects.create_user(email="bench@example.test", password=None)
    membership = Membership.objects.create(org=org, user=user, role=Role.OWNER)
    adopt_bucket(org, BUCKET, Actor.system())
    ids = [new_access_key_id() for _ in range(KEYS)]
    rows = []
    for n, key_id in enumerate(ids):
        kek_id, sealed = seal(new_secret(), key_id)
        rows.append(
            AccessKey(
                id=key_id,
                org=org,
                name=f"key-{n:05d}",
                secret_sealed=sealed,
                secret_kek_id=kek_id,
                created_by=user,
                created_via=CreatedVia.API,
            )
        )
    AccessKey.objects.bulk_create(rows, batch_size=5000)
    return membership, ids


def revoke(membership, key_id: str) -> None:
    from django.db import connection

    from audit.trail import Actor
    from keys.models import AccessKey
    from keys.services import revoke_key

    try:
        key = AccessKey.objects.select_related("org").get(pk=key_id)
        revoke_key(membership, Actor.for_user(membership.user), key)
    finally:
        connection.close()


async def run(membership, ids: list[str]) -> dict:
    from gateway.authority import Authority

    caches = [Authority(), Authority()]
    names = (BUCKET,)
    for cache in caches:
        for key_id in ids:
            await cache.lookup(key_id, names)
    warm = [(c.hits, c.misses) for c in caches]

    revoked: list[str] = []
    late: list[str] = []
    stop = asyncio.Event()
    lookups = [0]

    async def client(cache) -> None:
        while not stop.is_set():
            await cache.lookup(random.choice(ids), names)
            lookups[0] += 1

    async def revoker() -> None:
        queue = random.sample(ids, int(DURATION / REVOKE_EVERY))
        started = time.monotonic()
        for n, key_id in enumerate(queue):
            await asyncio.sleep(max(0, started + n * REVOKE_EVERY - time.monotonic()))
            await asyncio.to_thread(revoke, membership, key_id)
            revoked.append(key_id)
            for cache in caches:
                found = await cache.lookup(key_id, names)
                if found.key is None or found.key.usable():
                    late.append(key_id)
        stop.set()

    tasks = [asyncio.create_task(client(cache)) for cache in caches for _ in range(CLIENTS)]
    await revoker()
    await asyncio.gather(*tasks)
    hits = sum(c.hits - w[0] for c, w in zip(caches, warm, strict=True))
    misses = sum(c.misses - w[1] for c, w in zip(caches, warm, strict=True))
    for cache in caches:
        await cache.aclose()
    return {
        "lookups": hits + misses,
        "hits": hits,
        "misses": misses,
        "revoked": len(revoked),
        "late": late,
        "redis_failures": [c.redis_failures for c in caches],
        "clears": [c.clears for c in caches],
    }


def main() -> int:
    if not os.environ.get("REDIS_URL"):
        sys.exit("Set REDIS_URL: the cache is only used with Redis.")
    with benchdb.bench_database("bench_cache"):
        benchdb.setup_django()
        import redis
        from django.conf import settings

        redis.Redis.from_url(settings.REDIS_URL).flushdb()
        started = time.perf_counter()
        membership, ids = fill()
        print(f"{KEYS:,} keys made in {time.perf_counter() - started:.1f} s")
        outcome = asyncio.run(run(membership, ids))
        ratio = outcome["hits"] / outcome["lookups"]
        print(
            f"{outcome['lookups']:,} lookups on two caches over {DURATION:.0f} s after warm-up, "
            f"{outcome['revoked']} revocations: {outcome['hits']:,} from memory, "
            f"{outcome['misses']:,} from the database, hit ratio {ratio:.4f} "
            f"(goal {HIT_RATIO_GOAL})"
        )
        print(
            f"lookups of a revoked key right after its revoke that still found it usable: "
            f"{len(outcome['late'])} (of {2 * outcome['revoked']})"
        )
        print(f"Redis read failures {outcome['redis_failures']}, cache drops {outcome['clears']}")
        problems = []
        if ratio < HIT_RATIO_GOAL:
            problems.append(f"hit ratio {ratio:.4f} under {HIT_RATIO_GOAL}")
        if outcome["late"]:
            problems.append(f"{len(outcome['late'])} lookups saw a revoked key as usable")
        return benchdb.report(problems, "Budget met.")


if __name__ == "__main__":
    sys.exit(main())
