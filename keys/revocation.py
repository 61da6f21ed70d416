"""Telling every gateway process that what it may have cached about keys or buckets changed.

With ``REDIS_URL`` set, gateways cache key and bucket lookups in memory and check one
Redis value, the authority version, on every request; a change sets it to a new random
value and each gateway drops its cache before serving the next request. Without Redis,
gateways read the database on every request and need no telling. A random value rather
than a counter: a Redis restarted without its data cannot hand out, by counting up
again, a version a gateway already saw.

The version is bumped twice: inside the transaction (so a gateway that reads the row
before the commit caches it under a version that is about to be superseded) and again
right after the commit (so the first request after the change reloads from the committed
state). Between the two bumps a gateway may still see the old row, but nobody has been
told the change happened yet: the service function has not returned.

A change never waits for Redis, and never fails because of it. When a bump fails the
change commits all the same, and:

- A gateway that cannot reach Redis either reads the database on every request and keeps
  nothing cached (gateway/authority.py), so it sees the change at once.
- A gateway that can reach Redis while this process could not (Redis came back, or only
  this process was cut off) still has entries cached under the old version. Nothing can
  tell it otherwise, so CACHE_TTL_SECONDS bounds how long it may use them: no cached entry
  outlives that, whatever Redis says. To close the window sooner, a background thread of
  this process retries the bump until it succeeds or until CACHE_TTL_SECONDS have passed
  since the change, when every entry cached before it has expired anyway.

Each outage is logged once when a bump first fails and once when one succeeds again.
After a failure this process leaves Redis alone for EXCLOUD_REDIS_BACKOFF_SECONDS (a
frozen Redis costs a change at most one EXCLOUD_REDIS_TIMEOUT_SECONDS wait).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

import redis
from django.conf import settings
from django.db import transaction

VERSION_KEY = "excloud:gateway:authority-version"
# The longest a gateway uses a cached key or bucket entry, whatever Redis says; the bound
# on how long a change can go unseen when its version bump was lost.
CACHE_TTL_SECONDS = 30.0

log = logging.getLogger(__name__)
_lock = threading.Lock()
_client: redis.Redis | None = None
# Monotonic time before which this process does not try Redis (after a failure).
_skip_until = 0.0
_failing = False
# Monotonic time until which the background thread retries a lost bump (0: none lost).
_retry_until = 0.0
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


def _try_bump(client: redis.Redis) -> bool:
    """Set a new version; False if Redis could not be reached (or is being left alone)."""
    global _skip_until, _failing
    if time.monotonic() < _skip_until:
        return False
    try:
        client.set(VERSION_KEY, uuid.uuid4().hex)
    except redis.RedisError:
        with _lock:
            _skip_until = time.monotonic() + settings.EXCLOUD_REDIS_BACKOFF_SECONDS
            first, _failing = not _failing, True
        if first:
            log.warning(
                "cannot bump the gateway authority version in Redis; changes still commit, "
                "gateways that cannot read Redis read the database, and the bump is retried "
                "for %.0f s",
                CACHE_TTL_SECONDS,
                exc_info=True,
            )
        return False
    if _failing:
        with _lock:
            _failing = False
        log.info("bumped the gateway authority version in Redis again")
    return True


def _bump() -> None:
    client = _redis()
    if client is None or _try_bump(client):
        return
    _retry_later()


def _retry_later() -> None:
    """Have the background thread bump the version once Redis answers, until no cached
    entry from before now can be left."""
    global _retry_until, _retrier
    with _lock:
        _retry_until = time.monotonic() + CACHE_TTL_SECONDS
        if _retrier is None:
            _retrier = threading.Thread(
                target=_retry_loop, name="authority-version-retry", daemon=True
            )
            _retrier.start()


def _retry_loop() -> None:
    global _retry_until, _retrier
    pause = max(settings.EXCLOUD_REDIS_BACKOFF_SECONDS, 0.1)
    while True:
        with _lock:
            until = _retry_until
            if time.monotonic() >= until:
                # Decided under the lock, so a change failing now starts a new thread.
                _retrier = None
                break
        client = _redis()
        if client is None or _try_bump(client):
            with _lock:
                # A change whose bump failed while this one ran moved the deadline, and
                # may have committed after this bump: then the loop bumps once more.
                if _retry_until == until:
                    _retry_until = 0.0
            continue
        time.sleep(min(pause, max(until - time.monotonic(), 0)))
    log.debug("stopped retrying the gateway authority version bump")


def announce_change() -> None:
    """Call inside the transaction that changes a key's status or removes a bucket."""
    _bump()
    transaction.on_commit(_bump)


def retrying() -> bool:
    """Is a lost bump still being retried? (For tests and health checks.)"""
    return time.monotonic() < _retry_until
