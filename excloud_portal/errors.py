"""What the portal answers when a service it depends on is down.

A database, cache or broker outage is not a fault of the request: it answers
``503 Service Unavailable`` with ``Retry-After``, as JSON under ``/api/`` and as a plain
page elsewhere, so API clients retry and people are told to come back in a moment. Any
other unhandled error is a 500. The pages here are rendered without a request context:
the context processors read the database, which may be the thing that is down.
"""

from __future__ import annotations

import sys

import kombu.exceptions
import redis.exceptions
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

# Errors that mean "a service is unreachable or failing", not "this request is wrong".
OUTAGES: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    kombu.exceptions.OperationalError,
)
RETRY_AFTER_SECONDS = 30
UNAVAILABLE_MESSAGE = "The service is temporarily unavailable; try again in a moment."


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def unavailable(request: HttpRequest) -> HttpResponse:
    if is_api(request):
        response = JsonResponse(
            {"code": "service_unavailable", "message": UNAVAILABLE_MESSAGE}, status=503
        )
    else:
        response = HttpResponse(render_to_string("503.html"), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: called while the unhandled exception is being handled."""
    if isinstance(sys.exc_info()[1], OUTAGES):
        return unavailable(request)
    if is_api(request):
        return JsonResponse(
            {"code": "server_error", "message": "Something went wrong on our side."}, status=500
        )
    return HttpResponse(render_to_string("500.html"), status=500)
