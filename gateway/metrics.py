"""The S3 endpoint's Prometheus metrics, counted as each request ends.

Requests by S3 operation and status, their latency by operation, authentication failures
by the S3 error code answered, key lookups answered from the cache or the database, the
object store's failures, and the bytes received and sent. Served by gateway.health on
``/metrics``; excloud_portal.metrics says who may read them and how several processes'
counts add up (PROMETHEUS_MULTIPROC_DIR).
"""

from __future__ import annotations

import functools

from prometheus_client import Counter, Histogram

# The answers that mean a request did not authenticate, or was refused for its key.
AUTH_FAILURE_CODES = frozenset(
    {
        "AccessDenied",
        "AuthorizationHeaderMalformed",
        "AuthorizationQueryParametersError",
        "InvalidAccessKeyId",
        "RequestTimeTooSkewed",
        "SignatureDoesNotMatch",
    }
)
# A request refused before its operation was known (a malformed name, an oversized head).
UNCLASSIFIED = "Unclassified"
PREFLIGHT = "Preflight"
# What a client that left before its answer began is counted as (as usage counts it).
CLIENT_GONE_STATUS = 499
# Seconds: small requests take milliseconds, large transfers minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

REQUESTS = Counter(
    "excloud_s3_requests_total",
    "S3 requests answered, by operation and HTTP status.",
    ["operation", "status"],
)
LATENCY = Histogram(
    "excloud_s3_request_duration_seconds",
    "Time from an S3 request's arrival to the end of its answer, by operation.",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
AUTH_FAILURES = Counter(
    "excloud_s3_auth_failures_total",
    "S3 requests refused for their authentication or key, by the S3 error code answered.",
    ["reason"],
)
KEY_LOOKUPS = Counter(
    "excloud_s3_key_lookups_total",
    "Access key lookups: hit (answered from the cache), miss (read from the database), or "
    "unknown (the lookup keeps no count).",
    ["result"],
)
UPSTREAM_ERRORS = Counter(
    "excloud_s3_upstream_errors_total",
    "Requests to the object store that failed: unreachable (no answer in time, or the "
    "connection failed) or 5xx (the store answered with a server error).",
    ["kind"],
)
RECEIVED_BYTES = Counter(
    "excloud_s3_received_bytes_total",
    "Request body bytes received from S3 clients, by operation.",
    ["operation"],
)
SENT_BYTES = Counter(
    "excloud_s3_sent_bytes_total",
    "Response body bytes sent to S3 clients, by operation.",
    ["operation"],
)


def request_done(exchange, seconds: float) -> None:
    """Count one answered request (a gateway.app Exchange)."""
    operation = exchange.operation
    if operation is not None:
        name = operation.name
    elif exchange.request.method == "OPTIONS":
        name = PREFLIGHT
    else:
        name = UNCLASSIFIED
    status = exchange.send.status or CLIENT_GONE_STATUS
    _child(REQUESTS, name, str(status)).inc()
    _child(LATENCY, name).observe(seconds)
    if exchange.receive.bytes:
        _child(RECEIVED_BYTES, name).inc(exchange.receive.bytes)
    if exchange.send.bytes:
        _child(SENT_BYTES, name).inc(exchange.send.bytes)
    if exchange.error_code in AUTH_FAILURE_CODES:
        _child(AUTH_FAILURES, exchange.error_code).inc()


@functools.cache
def _child(metric, *labels: str):
    """``metric.labels(*labels)``, looked up once: labels() takes a lock and checks its
    arguments on every call, and every request counts itself four times. Label values
    are operation names, HTTP statuses and error codes, so this stays small."""
    return metric.labels(*labels)


class _LookupCounts:
    """What the Authority's own hit and miss counters said when last read."""

    hits = 0
    misses = 0


_seen = _LookupCounts()


def key_looked_up(authority) -> None:
    """Count one lookup just made: by the Authority's ``hits`` and ``misses`` counters
    when it keeps them (their growth since last read, so lookups that ran concurrently
    are each counted once), as ``unknown`` otherwise."""
    hits = getattr(authority, "hits", None)
    misses = getattr(authority, "misses", None)
    if not isinstance(hits, int) or not isinstance(misses, int):
        _child(KEY_LOOKUPS, "unknown").inc()
        return
    if hits < _seen.hits or misses < _seen.misses:
        # Another Authority (a test's), or counters that were reset.
        _seen.hits = _seen.misses = 0
    if hits > _seen.hits:
        _child(KEY_LOOKUPS, "hit").inc(hits - _seen.hits)
    if misses > _seen.misses:
        _child(KEY_LOOKUPS, "miss").inc(misses - _seen.misses)
    _seen.hits, _seen.misses = hits, misses


def store_failed(kind: str) -> None:
    """The object store could not be reached (``unreachable``) or answered 5xx."""
    UPSTREAM_ERRORS.labels(kind).inc()
