"""Log lines that carry the request they belong to, as text or as one JSON object a line.

``LOG_FORMAT=json`` (settings.LOGGING) makes every process (web, gateway, worker) write
one JSON object per line: time, level, logger, message, request_id when one is known and
the traceback of an exception. Only what the text format shows is written: the message
as formatted, never a record's arguments or extra attributes one by one, so JSON adds no
way for a value to reach the logs that text did not have.

The request ID is the web's X-Request-ID (audit.middleware), the gateway's
x-amz-request-id, or a Celery task's ID, bound here for the duration of the request by
``bind_request_id``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

LOG_FORMATS = ("text", "json")

_request_id: ContextVar[str] = ContextVar("request_id", default="")


def bind_request_id(request_id: str) -> None:
    """Log lines from this context on (this request's task or thread) carry ``request_id``.

    Each ASGI request runs in its own task and each WSGI request starts by binding its
    own, so an ID never leaks from one request into the next one's lines."""
    _request_id.set(request_id)


def current_request_id() -> str:
    return _request_id.get()


class RequestLogMiddleware:
    """Binds the web request's ID (set by audit.middleware.RequestIdMiddleware, just
    before this) for its log lines."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        bind_request_id(getattr(request, "request_id", ""))
        return self.get_response(request)


class RequestIdFilter(logging.Filter):
    """Puts ``request_id`` on every record: the bound one, or the ID of the request a
    record was logged about (django.request logs after the view has returned)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", ""):
            request = getattr(record, "request", None)
            record.request_id = getattr(request, "request_id", "") or _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", "")
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(log_format: str, level: str) -> dict:
    """settings.LOGGING for ``LOG_FORMAT`` and ``LOG_LEVEL``."""
    formatter = "json" if log_format == "json" else "text"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "excloud_portal.logs.RequestIdFilter"}},
        "formatters": {
            "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
            "json": {"()": "excloud_portal.logs.JsonFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": formatter,
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        # Axes tells of every sign-in at INFO; its failures and lockouts are WARNING.
        "loggers": {"axes": {"level": "WARNING"}},
    }
