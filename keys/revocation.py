"""Telling every gateway process that what it may have cached about a key or a bucket changed.

With ``REDIS_URL`` set, gateways cache key and bucket lookups in memory. Each key and each
bucket has a version in Redis (``key_version()``, ``bucket_version()``); a gateway reads
the versions of what a request names, in one round trip, and uses a cached entry only
while its version is the one the entry was read under. A change sets the versions of the
keys and buckets it touches to new random values, so the next request naming them reloads
them on every gateway, and every other cached entry stays. A random value rather than a
counter: a Redis restarted without its data cannot hand out, by counting up again, a
version a gateway already saw (and a version that vanished reads as None, which matches
no entry cached under a value). Versions expire after VERSION_TTL_SECONDS, long after any
entry read under them has (CACHE_TTL_SECONDS).

Without Redis, gateways on PostgreSQL read the database on every request, and gateways on
the embedded SQLite database check the file's data version (gateway/authority.py); neither
needs telling.

The versions are bumped twice: inside the transaction (so a gateway that reads the row
before the commit caches it under a version that is about to be superseded) and again
right after the commit (so the first request after the change reloads from the committed
state). Between the two bumps a gateway may still see the old row, but nobody has been
told the change happened yet: the service function has not returned.

A change never waits for Redis, and never fails because of it. Every change also writes
a CacheChange record per key and bucket in its own transaction, and each gateway reads the
records newer than the last it saw every CHANGE_FEED_SECONDS, dropping those entries. So
when a bump fails the change commits all the same, and:

- A gateway that cannot reach Redis reads the database on every request and keeps
  nothing cached (gateway/authority.py), so it sees the change at once.
- A gateway that can reach Redis while this process could not (Redis came back, or only
  this process was cut off) may still hold the entry under its old version, until its
  next read of the change records, CHANGE_FEED_SECONDS at most. A background thread of
  this process also retries the bump of each version it could not set, for RETRY_SECONDS.

CACHE_TTL_SECONDS bounds how long any entry is used, whatever Redis and the records say.
Each outage is logged once when a bump first fails and once when one succeeds again.
After a failure this process leaves Redis alone for EXCLOUD_REDIS_BACKOFF_SECONDS (a
frozen Redis costs a change at most one EXCLOUD_REDIS_TIMEOUT_SECONDS wait).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.db import transaction

from .models import CacheChange, CachedKind

# The longest a gateway uses a cached key or bucket entry, whatever Redis says.
CACHE_TTL_SECONDS = 300.0
# How often each gateway reads the change records (CacheChange): the bound on how long a
# change can go unseen when its version bump was lost.
CHANGE_FEED_SECONDS = 2.0
# How long change records are kept: far longer than any gateway goes between two reads.
CHANGE_FEED_KEPT = timedelta(days=1)
# How long this process retries a lost version bump (gateways see the change through the
# change records by then anyway).
RETRY_SECONDS = 30.0
# How long Redis keeps a version after its last change.
VERSION_TTL_SECONDS = 24 * 3600


def key_version(access_key_id: str) -> str:
    """The Redis key holding an access key's version."""
    return f"excloud:gateway:key:{access_key_id}"


def bucket_version(name: str) -> str:
    """The Redis key holding a bucket's version (its owner, as the gateway caches it)."""
    return f"excloud:gateway:bucket:{name}"


log = logging.getLogger(__name__)
_lock = threading.Lock()
_client: redis.Redis | None = None
# Monotonic time before which this process does not try Redis (after a failure).
_skip_until = 0.0
_failing = False
# Versions whose bump was lost, and the monotonic time until which each is retried.
_pending: dict[str, float] = {}
_retrier: threading.Thread | None = None


def _redis() -> redis.Redis | None:
    global _client
    if not settings.REDIS_URL:
        return None
    if _client is None:
        _client = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=settings.EXCLOUD_REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=settings.EXCLOUD_REDIS_TIMEOUT_SECONDS,
        )
    return _client


def _try_bump(client: redis.Redis, names: Iterable[str]) -> bool:
    """Set new versions; False if Redis could not be reached (or is being left alone)."""
    global _skip_until, _failing
    if time.monotonic() < _skip_until:
        return False
    try:
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.set(name, uuid.uuid4().hex, ex=VERSION_TTL_SECONDS)
            pipe.execute()
    except redis.RedisError:
        with _lock:
            _skip_until = time.monotonic() + settings.EXCLOUD_REDIS_BACKOFF_SECONDS
            first, _failing = not _failing, True
        if first:
            log.warning(
                "cannot bump gateway cache versions in Redis; changes still commit, "
                "gateways that cannot read Redis read the database, and the bump is retried "
                "for %.0f s",
                RETRY_SECONDS,
                exc_info=True,
            )
        return False
    if _failing:
        with _lock:
            _failing = False
        log.info("bumped gateway cache versions in Redis again")
    return True


def _bump(names: tuple[str, ...]) -> None:
    client = _redis()
    if client is None or _try_bump(client, names):
        return
    _retry_later(names)


def _retry_later(names: tuple[str, ...]) -> None:
    """Have the background thread bump these versions once Redis answers, until no cached
    entry from before now can be left."""
    global _retrier
    with _lock:
        until = time.monotonic() + RETRY_SECONDS
        for name in names:
            _pending[name] = until
        if _retrier is None:
            _retrier = threading.Thread(
                target=_retry_loop, name="gateway-version-retry", daemon=True
            )
            _retrier.start()


def _retry_loop() -> None:
    global _retrier
    pause = max(settings.EXCLOUD_REDIS_BACKOFF_SECONDS, 0.1)
    while True:
        with _lock:
            now = time.monotonic()
            for name in [n for n, until in _pending.items() if until <= now]:
                del _pending[name]
            if not _pending:
                # Decided under the lock, so a change failing now starts a new thread.
                _retrier = None
                break
            batch = dict(_pending)
        client = _redis()
        if client is None or _try_bump(client, tuple(batch)):
            with _lock:
                # A change whose bump failed while this one ran moved a deadline, and may
                # have committed after this bump: such a version is bumped once more.
                for name, until in batch.items():
                    if _pending.get(name) == until:
                        del _pending[name]
            continue
        time.sleep(min(pause, max(min(batch.values()) - time.monotonic(), 0)))
    log.debug("stopped retrying gateway cache version bumps")


def announce_change(
    *, keys: Iterable[str] = (), buckets: Iterable[str] = (), recorded: bool = True
) -> None:
    """Call inside the transaction that changes these access keys' status or expiry, or
    these buckets' owner. ``recorded=False`` skips the change records, for a migration
    that runs before their table exists."""
    keys, buckets = list(keys), list(buckets)
    names = tuple(key_version(k) for k in keys) + tuple(bucket_version(b) for b in buckets)
    if not names:
        return
    if recorded:
        CacheChange.objects.bulk_create(
            [CacheChange(kind=CachedKind.KEY, name=k) for k in keys]
            + [CacheChange(kind=CachedKind.BUCKET, name=b) for b in buckets]
        )
    _bump(names)
    transaction.on_commit(lambda: _bump(names))


def forget_old_changes(now: datetime) -> int:
    """Delete change records no gateway can still need; returns how many."""
    deleted, _ = CacheChange.objects.filter(changed_at__lt=now - CHANGE_FEED_KEPT).delete()
    return deleted


def retrying() -> bool:
    """Is a lost bump still being retried? (For tests and health checks.)"""
    now = time.monotonic()
    with _lock:
        return any(until > now for until in _pending.values())
