"""How many audit exports one user may stream at once.

An export holds a database cursor open for as long as its client reads, so a few slow
downloads at once would hold the database for everyone. Each export takes one of the
user's EXCLOUD_AUDIT_EXPORT_CONCURRENCY slots, a cache entry, for as long as it streams.
The slot is freed when the stream ends or the client goes away (the response is closed),
and expires by itself if the worker streaming it dies: each chunk sent renews it for
SLOT_TTL seconds, so only an export that has stopped moving loses it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

from django.conf import settings
from django.core.cache import cache

SLOT_TTL = 120
# What a refused export is told to wait: long enough for a typical export to finish.
RETRY_AFTER = 30


class Slot:
    """One held export slot; release() frees it, once, and only if it is still ours."""

    def __init__(self, key: str, holder: str) -> None:
        self.key = key
        self.holder = holder
        self.released = False

    def renew(self) -> None:
        cache.touch(self.key, SLOT_TTL)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        # A slot that expired may have been taken by another export since; leave that one.
        if cache.get(self.key) == self.holder:
            cache.delete(self.key)


def take(user_id: int) -> Slot | None:
    """One of the user's free slots, or None when all are taken."""
    holder = secrets.token_hex(8)
    for n in range(settings.EXCLOUD_AUDIT_EXPORT_CONCURRENCY):
        key = f"audit-export-slot:{user_id}:{n}"
        if cache.add(key, holder, SLOT_TTL):
            return Slot(key, holder)
    return None


class Holding:
    """The export's chunks, holding the slot while they stream.

    Django closes a streaming response when it is done with it, whether the stream ran to
    its end or the client went away; close() frees the slot then, even for a stream that
    never started, where a generator's ``finally`` would not run.
    """

    def __init__(self, chunks: Iterator[str], slot: Slot) -> None:
        self.chunks = chunks
        self.slot = slot

    def __iter__(self) -> Holding:
        return self

    def __next__(self) -> str:
        try:
            chunk = next(self.chunks)
        except BaseException:
            self.close()
            raise
        self.slot.renew()
        return chunk

    def close(self) -> None:
        try:
            close = getattr(self.chunks, "close", None)
            if close is not None:
                close()
        finally:
            self.slot.release()
