"""Counting what each access key does, in the gateway's memory.

Django-free. The gateway records every request whose access key it knows; about once a
minute it drains the totals and sends them to a Celery task (gateway.tasks.record_usage)
that adds them to the database, so no S3 request writes to the database itself.

Delivery is at least once into an idempotent write: each drained batch carries a random
ID, a batch the broker did not take is kept and sent again unchanged (same ID, same
totals) with the next flush, and the task applies each ID once. A batch that reached the
broker although sending it raised is therefore counted once, not twice.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

HOUR = 3600
DAY = 86400
# Fields of one hourly total, in the order a batch carries them.
COUNTERS = ("requests", "bytes_in", "bytes_out", "errors", "denied")
# Distinct (key ID, source IP, hour) denied attempts kept between two drains; past that,
# further attempts are added to one row per hour with neither key nor IP, so a flood of
# made-up IDs cannot grow the gateway's memory. Refused uses of a known key (signed with
# its secret while it was not usable) are bounded the same way, past which they keep
# their key and lose their IP.
MAX_DENIED_ENTRIES = 10_000
ANY_KEY = ""
# Access key IDs are 20 characters; what a client claims is cut to this before counting.
ACCESS_KEY_ID_MAX = 32
# Distinct (service token label, key ID, hour) signing-key counts kept between two drains;
# past that, further ones are added to one row per token and hour with no key.
MAX_SIGNING_KEY_ENTRIES = 10_000
# Distinct (key ID, bucket, day) and (key ID, source IP, day) totals kept between two
# drains, each; past that, further ones are added to the key's row with no bucket or no IP.
MAX_DETAIL_ENTRIES = 10_000
# A client's User-Agent is cut to this before it is kept as a key's latest use.
USER_AGENT_MAX = 200
# Batches kept for sending again while the broker is unreachable (one per flush, each
# bounded by the limits above). Past that the two oldest are merged into one under the
# older's ID, so memory stays bounded through a long outage; should the older one have
# reached the broker after all, the newer one's totals are lost with it.
MAX_UNSENT_BATCHES = 30


@dataclass(slots=True)
class LastUse:
    at: float
    ip: str | None
    operation: str
    bucket: str
    user_agent: str = ""


class UsageRecorder:
    """Per-key, per-hour totals and each key's latest use, until drained.

    Only requests whose signature verified count toward a key (``record``); a request
    that names a key but fails to authenticate is a denied attempt, counted apart by the
    key ID it named and its source IP (``record_denied_attempt``), so nobody can add to
    another org's usage by naming its key. A verified request refused because the key was
    revoked, inactive or expired counts toward the key's ``denied`` total and also per
    source IP ("refused_uses" in a batch), so admins can find the machine that still
    holds the key. A batch carries key IDs, addresses and counts, never a secret.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], list[int]] = {}
        self._last: dict[str, LastUse] = {}
        self._denied: dict[tuple[str, str | None, int], int] = {}
        self._refused: dict[tuple[str, str | None, int], int] = {}
        # Per key and day: requests and bytes in and out per bucket, requests per source.
        self._buckets: dict[tuple[str, str, int], list[int]] = {}
        self._sources: dict[tuple[str, str | None, int], int] = {}
        self._signing_keys: dict[tuple[str, str, int], int] = {}
        self._unsent: deque[dict[str, Any]] = deque()

    def record(
        self,
        access_key_id: str,
        *,
        at: float,
        ip: str | None,
        operation: str,
        bucket: str,
        bytes_in: int,
        bytes_out: int,
        status: int,
        denied: bool,
        authenticated: bool,
        user_agent: str = "",
    ) -> None:
        """Count one request signed with the key. ``denied``: the key was revoked, inactive
        or expired; ``authenticated``: it was let in, so it counts as the key's latest use
        and toward its bucket's and source's daily totals."""
        hour = int(at) // HOUR * HOUR
        day = int(at) // DAY * DAY
        with self._lock:
            counts = self._counts.get((access_key_id, hour))
            if counts is None:
                counts = self._counts[(access_key_id, hour)] = [0, 0, 0, 0, 0]
            counts[0] += 1
            counts[1] += bytes_in
            counts[2] += bytes_out
            counts[3] += status >= 400
            counts[4] += denied
            if denied:
                self._add_refused((access_key_id, ip, hour), 1)
            if authenticated:
                self._last[access_key_id] = LastUse(
                    at, ip, operation, bucket, user_agent[:USER_AGENT_MAX]
                )
                if bucket:
                    self._add_bucket((access_key_id, bucket, day), (1, bytes_in, bytes_out))
                self._add_source((access_key_id, ip, day), 1)

    def record_denied_attempt(self, access_key_id: str, *, at: float, ip: str | None) -> None:
        """Count a request that named ``access_key_id`` but did not authenticate."""
        hour = int(at) // HOUR * HOUR
        entry = (access_key_id[:ACCESS_KEY_ID_MAX], ip, hour)
        with self._lock:
            if entry not in self._denied and len(self._denied) >= MAX_DENIED_ENTRIES:
                entry = (ANY_KEY, None, hour)
            self._denied[entry] = self._denied.get(entry, 0) + 1

    def _add_refused(self, entry: tuple[str, str | None, int], count: int) -> None:
        if entry not in self._refused and len(self._refused) >= MAX_DENIED_ENTRIES:
            entry = (entry[0], None, entry[2])
        self._refused[entry] = self._refused.get(entry, 0) + count

    def _add_bucket(self, entry: tuple[str, str, int], values) -> None:
        if entry not in self._buckets and len(self._buckets) >= MAX_DETAIL_ENTRIES:
            entry = (entry[0], "", entry[2])
        totals = self._buckets.setdefault(entry, [0, 0, 0])
        for index, value in enumerate(values):
            totals[index] += value

    def _add_source(self, entry: tuple[str, str | None, int], count: int) -> None:
        if entry not in self._sources and len(self._sources) >= MAX_DETAIL_ENTRIES:
            entry = (entry[0], None, entry[2])
        self._sources[entry] = self._sources.get(entry, 0) + count

    def record_signing_key(self, token_label: str, access_key_id: str, *, at: float) -> None:
        """Count a signing key of ``access_key_id`` handed to the service token labelled
        ``token_label`` (gateway.verify_api: each allowed call carries one)."""
        hour = int(at) // HOUR * HOUR
        with self._lock:
            self._add_signing_keys((token_label, access_key_id, hour), 1)

    def _add_signing_keys(self, entry: tuple[str, str, int], count: int) -> None:
        if entry not in self._signing_keys and len(self._signing_keys) >= MAX_SIGNING_KEY_ENTRIES:
            entry = (entry[0], ANY_KEY, entry[2])
        self._signing_keys[entry] = self._signing_keys.get(entry, 0) + count

    def drain(self) -> dict[str, Any] | None:
        """The totals so far as a JSON-ready batch with a new ID (None if there are none),
        and reset."""
        with self._lock:
            batch = self._take()
        if batch is not None:
            batch["id"] = uuid.uuid4().hex
        return batch

    def outgoing(self) -> list[dict[str, Any]]:
        """What to send now, oldest first: the batches kept from failed sends, then a
        drained one."""
        with self._lock:
            batches = list(self._unsent)
            self._unsent.clear()
        batch = self.drain()
        if batch is not None:
            batches.append(batch)
        return batches

    def restore(self, batch: dict[str, Any]) -> None:
        """Keep a batch that could not be sent, to be sent again as it is."""
        with self._lock:
            self._unsent.append(batch)
            while len(self._unsent) > MAX_UNSENT_BATCHES:
                older, newer = self._unsent.popleft(), self._unsent.popleft()
                self._unsent.appendleft(merge(older, newer))

    def _take(self) -> dict[str, Any] | None:
        counts, self._counts = self._counts, {}
        last, self._last = self._last, {}
        denied, self._denied = self._denied, {}
        refused, self._refused = self._refused, {}
        buckets, self._buckets = self._buckets, {}
        sources, self._sources = self._sources, {}
        signing_keys, self._signing_keys = self._signing_keys, {}
        if not counts and not denied and not refused and not signing_keys:
            return None
        return {
            "counts": [[key_id, hour, *values] for (key_id, hour), values in counts.items()],
            "last_used": [
                [key_id, use.at, use.ip, use.operation, use.bucket, use.user_agent]
                for key_id, use in last.items()
            ],
            "denied_attempts": [
                [key_id, ip, hour, count] for (key_id, ip, hour), count in denied.items()
            ],
            "refused_uses": [
                [key_id, ip, hour, count] for (key_id, ip, hour), count in refused.items()
            ],
            "buckets": [
                [key_id, bucket, day, *values] for (key_id, bucket, day), values in buckets.items()
            ],
            "sources": [[key_id, ip, day, count] for (key_id, ip, day), count in sources.items()],
            "signing_keys": [
                [label, key_id, hour, count]
                for (label, key_id, hour), count in signing_keys.items()
            ],
        }

    def _add(self, batch: dict[str, Any]) -> None:
        """Add a batch's totals to the current ones (the caller holds the lock)."""
        for key_id, hour, *values in batch["counts"]:
            counts = self._counts.setdefault((key_id, hour), [0, 0, 0, 0, 0])
            for index, value in enumerate(values):
                counts[index] += value
        for key_id, at, ip, operation, bucket, *agent in batch["last_used"]:
            current = self._last.get(key_id)
            if current is None or current.at < at:
                self._last[key_id] = LastUse(at, ip, operation, bucket, *agent)
        for key_id, ip, hour, count in batch.get("denied_attempts", ()):
            entry = (key_id, ip, hour)
            if entry not in self._denied and len(self._denied) >= MAX_DENIED_ENTRIES:
                entry = (ANY_KEY, None, hour)
            self._denied[entry] = self._denied.get(entry, 0) + count
        for key_id, ip, hour, count in batch.get("refused_uses", ()):
            self._add_refused((key_id, ip, hour), count)
        for key_id, bucket, day, *values in batch.get("buckets", ()):
            self._add_bucket((key_id, bucket, day), values)
        for key_id, ip, day, count in batch.get("sources", ()):
            self._add_source((key_id, ip, day), count)
        for label, key_id, hour, count in batch.get("signing_keys", ()):
            self._add_signing_keys((label, key_id, hour), count)


def merge(older: dict[str, Any], newer: dict[str, Any]) -> dict[str, Any]:
    """One batch with the totals of both, under the older one's ID."""
    recorder = UsageRecorder()
    with recorder._lock:
        recorder._add(older)
        recorder._add(newer)
        merged = recorder._take() or {
            "counts": [],
            "last_used": [],
            "denied_attempts": [],
            "refused_uses": [],
            "buckets": [],
            "sources": [],
            "signing_keys": [],
        }
    merged["id"] = older.get("id") or uuid.uuid4().hex
    return merged
