"""Prometheus metrics: the web's requests, Celery task outcomes, and who may read them.

Each process counts in prometheus_client's registry. A server that runs several processes
behind one port (gunicorn workers, a prefork Celery pool) sets ``PROMETHEUS_MULTIPROC_DIR``
to an empty directory shared by them: every process then writes its counts there and any
one of them answers a scrape with the sum (prometheus_client's multiprocess mode).

``/metrics`` on the web and on the gateway is answered only to clients in
EXCLOUD_METRICS_ALLOWED_NETWORKS (loopback unless set) that came to it directly, or to a
request bearing EXCLOUD_METRICS_TOKEN; everyone else gets 404, as for any unknown path.
A Celery worker serves its counts on EXCLOUD_WORKER_METRICS_PORT when that is set.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import time
from collections.abc import Callable, Iterable

from celery import signals
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_safe
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client import multiprocess as prometheus_multiprocess

log = logging.getLogger(__name__)
# The *_created series (when each counter was first used) say nothing an operator needs.
disable_created_metrics()

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Methods counted by name; anything else a client invents is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Requests that matched no URL pattern, counted under one name rather than by path.
UNMATCHED_ROUTE = "<unmatched>"

WEB_REQUESTS = Counter(
    "excloud_web_requests_total",
    "Web requests answered, by URL pattern name, method and status.",
    ["route", "method", "status"],
)
WEB_LATENCY = Histogram(
    "excloud_web_request_duration_seconds",
    "Time from a web request's arrival to its answer, by URL pattern name.",
    ["route"],
)
TASKS = Counter(
    "excloud_celery_tasks_total",
    "Celery tasks run by this worker, by task name and outcome (succeeded, failed, retried).",
    ["task", "outcome"],
)


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROCESS_DIR_VARIABLE))


def registry() -> CollectorRegistry:
    """What a scrape reads: this process's registry, or every process's counts in
    multiprocess mode."""
    if not multiprocess():
        return REGISTRY
    combined = CollectorRegistry()
    prometheus_multiprocess.MultiProcessCollector(combined)
    return combined


def exposition() -> bytes:
    return generate_latest(registry())


def may_read(
    ip: str | None,
    authorization: str | None,
    forwarded: bool,
    networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network],
    token: str,
) -> bool:
    """May this client read /metrics? With the token, yes; otherwise only from an allowed
    network, and not through a proxy (a proxy on the same machine would make every
    client look like loopback)."""
    if token and authorization is not None:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        ):
            return True
    if forwarded or not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    allowed = may_read(
        request.META.get("REMOTE_ADDR"),
        request.headers.get("Authorization"),
        "X-Forwarded-For" in request.headers or "Forwarded" in request.headers,
        settings.EXCLOUD_METRICS_ALLOWED_NETWORKS,
        settings.EXCLOUD_METRICS_TOKEN,
    )
    if not allowed:
        raise Http404()
    response = HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
    add_never_cache_headers(response)
    return response


class RequestMetricsMiddleware:
    """Counts and times every web request, by the name of the URL pattern it matched (a
    path would make a series per key ID)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = (match.view_name if match is not None else "") or UNMATCHED_ROUTE
        method = request.method if request.method in METHODS else "other"
        WEB_REQUESTS.labels(route, method, str(response.status_code)).inc()
        WEB_LATENCY.labels(route).observe(time.perf_counter() - started)
        return response


# Celery: every process that runs tasks counts their outcomes; the worker serves them.


@signals.task_success.connect
def _task_succeeded(sender=None, **kwargs) -> None:
    TASKS.labels(_task_name(sender), "succeeded").inc()


@signals.task_failure.connect
def _task_failed(sender=None, **kwargs) -> None:
    TASKS.labels(_task_name(sender), "failed").inc()


@signals.task_retry.connect
def _task_retried(sender=None, **kwargs) -> None:
    TASKS.labels(_task_name(sender), "retried").inc()


def _task_name(task) -> str:
    return getattr(task, "name", None) or "<unknown>"


@signals.worker_init.connect
def _serve_worker_metrics(sender=None, **kwargs) -> None:
    """Start the worker's metrics server, in the worker's main process."""
    port = settings.EXCLOUD_WORKER_METRICS_PORT
    if not port:
        return
    pool = getattr(sender, "pool_cls", None)
    pool_name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    if "prefork" in str(pool_name) and not multiprocess():
        # Tasks run in the pool's child processes: without a shared directory the main
        # process would serve counts that stay at zero.
        log.error(
            "not serving worker metrics on port %d: a prefork pool needs %s (an empty "
            "directory for this worker's processes); or use --pool=threads",
            port,
            MULTIPROCESS_DIR_VARIABLE,
        )
        return
    start_http_server(port, settings.EXCLOUD_WORKER_METRICS_HOST, registry())
    log.info("serving worker metrics on %s:%d", settings.EXCLOUD_WORKER_METRICS_HOST, port)
