"""Counting what each access key does, in the gateway's memory.

Django-free. The gateway records every request whose access key it knows; about once a
minute it drains the totals and sends them to a Celery task (gateway.tasks.record_usage)
that adds them to the database, so no S3 request writes to the database itself.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

HOUR = 3600
# Fields of one hourly total, in the order a batch carries them.
COUNTERS = ("requests", "bytes_in", "bytes_out", "errors", "denied")


@dataclass(slots=True)
class LastUse:
    at: float
    ip: str | None
    operation: str
    bucket: str


class UsageRecorder:
    """Per-key, per-hour totals and each key's latest use, until drained."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], list[int]] = {}
        self._last: dict[str, LastUse] = {}

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
    ) -> None:
        """Count one request. ``denied``: the key was revoked, inactive or expired;
        ``authenticated``: its signature verified, so it counts as the key's latest use."""
        hour = int(at) // HOUR * HOUR
        with self._lock:
            counts = self._counts.get((access_key_id, hour))
            if counts is None:
                counts = self._counts[(access_key_id, hour)] = [0, 0, 0, 0, 0]
            counts[0] += 1
            counts[1] += bytes_in
            counts[2] += bytes_out
            counts[3] += status >= 400
            counts[4] += denied
            if authenticated:
                self._last[access_key_id] = LastUse(at, ip, operation, bucket)

    def drain(self) -> dict[str, Any] | None:
        """The totals so far as a JSON-ready batch (None if there are none), and reset."""
        with self._lock:
            counts, self._counts = self._counts, {}
            last, self._last = self._last, {}
        if not counts:
            return None
        return {
            "counts": [[key_id, hour, *values] for (key_id, hour), values in counts.items()],
            "last_used": [
                [key_id, use.at, use.ip, use.operation, use.bucket] for key_id, use in last.items()
            ],
        }

    def restore(self, batch: dict[str, Any]) -> None:
        """Put back a batch that could not be sent, to go with the next one."""
        with self._lock:
            for key_id, hour, *values in batch["counts"]:
                counts = self._counts.setdefault((key_id, hour), [0, 0, 0, 0, 0])
                for index, value in enumerate(values):
                    counts[index] += value
            for key_id, at, ip, operation, bucket in batch["last_used"]:
                current = self._last.get(key_id)
                if current is None or current.at < at:
                    self._last[key_id] = LastUse(at, ip, operation, bucket)


def operation_name(method: str, has_bucket: bool, has_key: bool, query: str, copy: bool) -> str:
    """The S3 API operation a request performs, as AWS names it, for the key's last use."""
    params = {part.partition("=")[0] for part in query.split("&") if part}
    if not has_bucket:
        return "ListBuckets"
    if not has_key:
        if method == "GET":
            if "list-type" in params:
                return "ListObjectsV2"
            if "uploads" in params:
                return "ListMultipartUploads"
            if "versions" in params:
                return "ListObjectVersions"
            if "location" in params:
                return "GetBucketLocation"
            sub = sorted(params - {"prefix", "delimiter", "marker", "max-keys", "encoding-type"})
            return f"GetBucket{sub[0].title().replace('-', '')}" if sub else "ListObjects"
        if method == "HEAD":
            return "HeadBucket"
        if method == "POST" and "delete" in params:
            return "DeleteObjects"
        verb = {"PUT": "Put", "DELETE": "Delete"}.get(method, method.title())
        sub = sorted(params)
        if not sub:
            return {"PUT": "CreateBucket", "DELETE": "DeleteBucket"}.get(method, verb + "Bucket")
        return f"{verb}Bucket{sub[0].title().replace('-', '')}"
    if method == "GET":
        return "ListParts" if "uploadId" in params else "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "PUT":
        if "partNumber" in params:
            return "UploadPartCopy" if copy else "UploadPart"
        return "CopyObject" if copy else "PutObject"
    if method == "POST":
        if "uploads" in params:
            return "CreateMultipartUpload"
        if "uploadId" in params:
            return "CompleteMultipartUpload"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in params else "DeleteObject"
    return f"{method} object"
