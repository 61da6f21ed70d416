"""When a gateway may answer a key or bucket lookup from memory: the versions a cached
entry is checked against (see gateway/authority.py and keys/revocation.py).

- With Redis: the key's and the buckets' versions, read in one round trip per request,
  and the change records (keys.CacheChange) read every CHANGE_FEED_SECONDS in the
  background, which drop what they name even when a Redis bump was lost.
- On the embedded SQLite database: the file's data version, which moves whenever
  another connection commits.
- Otherwise: never (each lookup reads the database).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from django.conf import settings

from keys import revocation

from .pipelined_redis import PipelinedRedis

log = logging.getLogger(__name__)

# A backstop: no cached entry outlives this, whatever Redis and the records say.
CACHE_TTL_SECONDS = revocation.CACHE_TTL_SECONDS
# Change records are read every CHANGE_FEED_SECONDS, each time all of those written in the
# last CHANGE_FEED_WINDOW_SECONDS: a record whose transaction committed after a later one's
# (record IDs are handed out before commit) is still read once it commits. A gateway that
# went longer than the window without a read drops its whole cache.
CHANGE_FEED_SECONDS = revocation.CHANGE_FEED_SECONDS
CHANGE_FEED_WINDOW_SECONDS = 60.0


def _sqlite_path() -> Path | None:
    """The embedded SQLite database's file; None on any other database."""
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.sqlite3":
        return None
    return Path(database["NAME"]).resolve()


class Freshness:
    """The versions cached entries are checked against, for one gateway process.

    ``read_changes(seconds)`` returns the change records (id, kind, name) of the last
    ``seconds``; ``drop_all()`` empties the cache, ``drop(kind, name)`` forgets one entry.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        read_changes: Callable[[float], Awaitable[list[tuple[int, str, str]]]],
        drop_all: Callable[[], None],
        drop: Callable[[str, str], None],
    ) -> None:
        timeout = settings.EXCLOUD_REDIS_TIMEOUT_SECONDS
        self._redis = PipelinedRedis(redis_url, timeout=timeout) if redis_url else None
        # A connection of our own to the SQLite file, only to ask its data version; opened
        # at first use (the file may not exist before the first migration).
        self._sqlite_file = _sqlite_path() if self._redis is None else None
        self._sqlite: sqlite3.Connection | None = None
        self._sqlite_version: int | None = None
        self._read = read_changes
        self._drop_all = drop_all
        self._drop = drop
        self._backoff = settings.EXCLOUD_REDIS_BACKOFF_SECONDS
        # Until when (monotonic) Redis is left alone after a failure.
        self._skip_redis_until = 0.0
        # Failed reads of the versions since Redis last answered, and when the first was.
        self.redis_failures = 0
        self._failing_since = 0.0
        # Change records already applied (ID: when read), when they were last read, the
        # task that reads them, and the first read; nothing is cached before it succeeds.
        self._feed_seen: dict[int, float] = {}
        self._feed_read_at: float | None = None
        self._follower: asyncio.Task | None = None
        self._first_read: asyncio.Future | None = None

    async def versions(self, access_key_id: str, names: tuple[str, ...]) -> list | None:
        """The current version of the key and of each named bucket, in that order, or None
        when nothing may be answered from the cache."""
        if self._sqlite_file is not None:
            return self._sqlite_versions(1 + len(names))
        if self._redis is None:
            return None
        now = time.monotonic()
        if now < self._skip_redis_until:
            return None
        if self._follower is None:
            self._first_read = asyncio.get_running_loop().create_future()
            self._follower = asyncio.ensure_future(self._follow_changes())
        if self._feed_read_at is None:
            await asyncio.shield(self._first_read)
            if self._feed_read_at is None:
                return None
        slots = [revocation.key_version(access_key_id)]
        slots.extend(revocation.bucket_version(name) for name in names)
        try:
            versions = await self._redis.mget(slots)
        except Exception:  # noqa: BLE001 - any Redis trouble means: ask the database
            self._redis_failed(now)
            return None
        if self.redis_failures:
            log.info(
                "read gateway cache versions again after %d failed attempts in %.1f s",
                self.redis_failures,
                time.monotonic() - self._failing_since,
            )
            self.redis_failures = 0
            # Whatever a read begun before the outage cached since is not trusted.
            self._drop_all()
        return versions

    async def _follow_changes(self) -> None:
        """Read the change records every CHANGE_FEED_SECONDS for as long as the cache lives."""
        while True:
            try:
                await self._read_changes()
            except Exception:  # noqa: BLE001 - tried again next time; entries still expire
                log.debug("could not read the change records", exc_info=True)
            if not self._first_read.done():
                self._first_read.set_result(None)
            await asyncio.sleep(CHANGE_FEED_SECONDS)

    async def _read_changes(self) -> None:
        """Drop what the change records written since the last read name."""
        started = time.monotonic()
        rows = await self._read(CHANGE_FEED_WINDOW_SECONDS)
        gap = self._feed_read_at is not None and (
            started - self._feed_read_at > CHANGE_FEED_WINDOW_SECONDS - CHANGE_FEED_SECONDS
        )
        if gap:
            # Records may have come and gone unread: trust nothing cached before now.
            self._drop_all()
        for change_id, kind, name in rows:
            if change_id in self._feed_seen:
                continue
            self._feed_seen[change_id] = started
            self._drop(kind, name)
        horizon = started - 2 * CHANGE_FEED_WINDOW_SECONDS
        self._feed_seen = {i: at for i, at in self._feed_seen.items() if at > horizon}
        self._feed_read_at = started

    def _sqlite_versions(self, count: int) -> list | None:
        try:
            if self._sqlite is None:
                # Read-only, and never waiting on a lock: a busy file is asked again next
                # request.
                self._sqlite = sqlite3.connect(
                    f"{self._sqlite_file.as_uri()}?mode=ro",
                    uri=True,
                    timeout=0,
                    check_same_thread=False,
                )
            version = self._sqlite.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            # Busy or gone: ask the database itself, which waits or fails as it should.
            self._drop_all()
            return None
        if version != self._sqlite_version:
            self._drop_all()
            self._sqlite_version = version
        return [version] * count

    def _redis_failed(self, now: float) -> None:
        """Drop the cache and leave Redis alone for a while; say so once per outage."""
        self._drop_all()
        self._skip_redis_until = time.monotonic() + self._backoff
        if not self.redis_failures:
            self._failing_since = now
            log.warning(
                "cannot read gateway cache versions from Redis; reading the database "
                "on every request, and trying Redis again every %.1f s",
                self._backoff,
                exc_info=True,
            )
        self.redis_failures += 1

    async def aclose(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
        if self._redis is not None:
            await self._redis.aclose()
        if self._sqlite is not None:
            self._sqlite.close()
