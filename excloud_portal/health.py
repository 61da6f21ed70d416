"""``/healthz`` and ``/readyz``: is the process alive, and can it serve.

``/healthz`` answers 200 without touching anything: a process that answers it is alive,
whatever its dependencies do. ``/readyz`` asks each dependency once (the database, and
Redis when ``REDIS_URL`` is set) and answers 200, or 503 when one failed, with a small
JSON body naming each check and its result. Each check has CHECK_TIMEOUT_SECONDS: a
frozen dependency makes the answer 503, never a hang.

A check runs on a thread of its own (a thread cannot be stopped, and a blocked database
call would otherwise hold a request's). While one is still running, the next probe waits
on that same run rather than starting another, so a frozen dependency holds one thread
per check, not one per probe.

The gateway (gateway/health.py) uses the same checks, and one of its own for the object
store.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import resolve
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_safe

# How long /readyz waits for one dependency.
CHECK_TIMEOUT_SECONDS = 1.5
OK = "ok"
# Answered before every other middleware: see OperationsMiddleware.
OPERATIONS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class BoundedCheck:
    """A blocking check run on its own thread; ``start()`` gives the run in progress, or
    a new one."""

    def __init__(self, name: str, check: Callable[[], None]) -> None:
        self.name = name
        self._check = check
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"readyz-{name}")
        self._lock = threading.Lock()
        self._running: Future | None = None

    def start(self) -> Future:
        with self._lock:
            if self._running is None or self._running.done():
                self._running = self._executor.submit(self._check)
            return self._running


def outcome(future: Future, timeout: float) -> str:
    """ "ok", or what went wrong, named by its kind only (an error's text may carry a
    host name or a user)."""
    try:
        future.result(timeout=timeout)
    except FutureTimeout:
        return f"timed out after {timeout:g} s"
    except Exception as error:  # noqa: BLE001 - any failure is a failed check
        return f"failed: {type(error).__name__}"
    return OK


def check_database() -> None:
    """Connect and make one round trip, then close: each check proves that a connection
    can be made, and none is left open between probes."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        with contextlib.suppress(Exception):
            connection.close()


_redis_clients: dict[str, redis.Redis] = {}


def check_redis() -> None:
    client = _redis_clients.get(settings.REDIS_URL)
    if client is None:
        client = _redis_clients[settings.REDIS_URL] = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=CHECK_TIMEOUT_SECONDS,
            socket_connect_timeout=CHECK_TIMEOUT_SECONDS,
        )
    client.ping()


_checks: dict[str, BoundedCheck] = {}


def dependency_checks() -> dict[str, BoundedCheck]:
    """The checks of this process's dependencies: the database, and Redis when set."""
    names = {"database": check_database}
    if settings.REDIS_URL:
        names["redis"] = check_redis
    for name, check in names.items():
        if name not in _checks:
            _checks[name] = BoundedCheck(name, check)
    return {name: _checks[name] for name in names}


def run_checks(checks: dict[str, BoundedCheck]) -> dict[str, str]:
    """Every check started at once, each waited for at most CHECK_TIMEOUT_SECONDS."""
    running = {name: check.start() for name, check in checks.items()}
    return {name: outcome(future, CHECK_TIMEOUT_SECONDS) for name, future in running.items()}


def readiness_body(results: dict[str, str]) -> tuple[int, dict]:
    ready = all(result == OK for result in results.values())
    return (200 if ready else 503), {
        "status": "ready" if ready else "unavailable",
        "checks": results,
    }


@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    return _uncached(JsonResponse({"status": "alive"}))


@require_safe
def readyz(request: HttpRequest) -> HttpResponse:
    status, body = readiness_body(run_checks(dependency_checks()))
    response = JsonResponse(body, status=status)
    if status == 503:
        response["Retry-After"] = "1"
    return _uncached(response)


def _uncached(response: HttpResponse) -> HttpResponse:
    add_never_cache_headers(response)
    return response


class OperationsMiddleware:
    """Answers /healthz, /readyz and /metrics (their URLs in excloud_portal.urls) ahead of
    the middleware below it in settings.MIDDLEWARE.

    Probes and scrapers come over plain HTTP, often by IP address, without cookies:
    ALLOWED_HOSTS, sessions, CSRF, sign-in and two-factor would refuse or redirect them,
    and none of it means anything for these answers. They create no session and write no
    audit event; /metrics decides itself who may read it. The security headers of the
    middleware above are kept: they cost nothing here."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info not in OPERATIONS_PATHS:
            return self.get_response(request)
        match = resolve(request.path_info)
        request.resolver_match = match
        return match.func(request, *match.args, **match.kwargs)
