"""Telling every gateway process that what it may have cached about keys or buckets changed.

With ``REDIS_URL`` set, gateways cache key and bucket lookups in memory and check one
Redis counter, the authority version, on every request; a change bumps it and each
gateway drops its cache before serving the next request. Without Redis, gateways read
the database on every request and need no telling.

The counter is bumped twice: inside the transaction (so a gateway that reads the row
before the commit caches it under a version that is about to be superseded) and again
right after the commit (so the first request after the change reloads from the committed
state). Between the two bumps a gateway may still see the old row, but nobody has been
told the change happened yet: the service function has not returned.
"""

from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.db import transaction

VERSION_KEY = "excloud:gateway:authority-version"

log = logging.getLogger(__name__)
_client: redis.Redis | None = None


def _redis() -> redis.Redis | None:
    global _client
    if not settings.REDIS_URL:
        return None
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
    return _client


def _bump(*, strict: bool) -> None:
    client = _redis()
    if client is None:
        return
    try:
        client.incr(VERSION_KEY)
    except redis.RedisError:
        if strict:
            # Inside the transaction: the change rolls back rather than happen unannounced.
            raise
        # After the commit the change stands; gateways drop cached entries after
        # CACHE_TTL_SECONDS anyway (gateway/authority.py), which bounds the damage.
        log.exception("could not bump the gateway authority version after a commit")


def announce_change() -> None:
    """Call inside the transaction that changes a key's status or removes a bucket."""
    _bump(strict=True)
    transaction.on_commit(lambda: _bump(strict=False))
