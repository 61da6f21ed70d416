"""What the gateway reads of the settings, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True, slots=True)
class Upstream:
    url: str
    access_key_id: str
    secret_access_key: str
    region: str


def upstream() -> Upstream:
    return Upstream(
        settings.EXCLOUD_S3_UPSTREAM_URL,
        settings.EXCLOUD_S3_UPSTREAM_ACCESS_KEY_ID,
        settings.EXCLOUD_S3_UPSTREAM_SECRET_ACCESS_KEY,
        settings.EXCLOUD_S3_UPSTREAM_REGION,
    )


def failure_limit() -> tuple[int, int]:
    """(failures, window seconds) one source IP may have before SlowDown."""
    return settings.EXCLOUD_S3_FAILURE_LIMIT, settings.EXCLOUD_S3_FAILURE_WINDOW_SECONDS


def usage_flush_seconds() -> int:
    return settings.EXCLOUD_USAGE_FLUSH_SECONDS


def region() -> str:
    return settings.EXCLOUD_S3_REGION


def endpoint() -> str:
    return settings.EXCLOUD_S3_ENDPOINT


def upstream_timeouts() -> tuple[int, int]:
    """(connect, between bytes) seconds the gateway waits on the object store."""
    return (
        settings.EXCLOUD_S3_UPSTREAM_CONNECT_TIMEOUT_SECONDS,
        settings.EXCLOUD_S3_UPSTREAM_TIMEOUT_SECONDS,
    )


def body_timeout_seconds() -> int:
    """How long a request body may pause, or a client leave an answer unread, before the
    connection is cut."""
    return settings.EXCLOUD_S3_BODY_TIMEOUT_SECONDS


def connection_limits() -> dict[str, int]:
    """What the server bounds on each connection: the wait for a request head, an idle
    keep-alive connection, and how many requests one process serves at once."""
    return {
        "head_timeout": settings.EXCLOUD_S3_HEAD_TIMEOUT_SECONDS,
        "timeout_keep_alive": settings.EXCLOUD_S3_KEEPALIVE_SECONDS,
        "limit_concurrency": settings.EXCLOUD_S3_MAX_CONCURRENCY,
    }
