"""Serve the S3 endpoint: ``python -m gateway.serve [--host H] [--port P] [--http IMPL]``.

uvicorn with the limits an S3 endpoint needs before any request reaches the application:

- The request line and headers together may not exceed MAX_HEAD_BYTES. httptools buffers
  a header until its end, so a client sending 100 MB of one header would make the process
  hold all of it; the protocol below counts what arrives before the head is complete and
  answers 431 and closes the connection once it passes the cap. With h11, the parser's
  own incomplete-event cap does the same (answering 400).
- A request head must be complete within ``head_timeout`` seconds of the connection
  opening or of the previous answer, however slowly it trickles in; uvicorn's keep-alive
  timeout only covers a connection that sends nothing at all after an answer.
- Past ``limit_concurrency`` connections or requests in the process, a request is answered
  S3's 503 SlowDown (uvicorn's own answer would be plain text) and its connection closed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import secrets
from collections.abc import Iterator
from typing import Any

import uvicorn
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from . import s3errors

log = logging.getLogger(__name__)

# Seconds a request head may take, when the configuration does not say.
HEAD_TIMEOUT_SECONDS = 10.0
# Request line plus every header line. S3 allows 8 KiB per header and 2 KiB of user
# metadata per request; 64 KiB leaves room for every header an SDK sends.
MAX_HEAD_BYTES = 64 * 1024
# glibc's mallopt parameters, and what the gateway sets them to (see reuse_freed_memory).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024
TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: 39\r\n"
    b"connection: close\r\n"
    b"\r\n"
    b"Request line and headers are too large."
)


class HeadTooLarge(Exception):
    pass


async def slow_down(scope: dict[str, Any], receive, send) -> None:
    """The answer to a request past the process's concurrency limit."""
    await s3errors.send_error(
        send,
        s3errors.slow_down(),
        request_id=secrets.token_hex(8).upper(),
        resource=scope.get("path", "/"),
        head=scope["method"] == "HEAD",
        close=True,
    )


class GatewayConfig(uvicorn.Config):
    """uvicorn's configuration, and how long a request head may take to arrive."""

    def __init__(self, *args, head_timeout: float = HEAD_TIMEOUT_SECONDS, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.head_timeout = head_timeout


class ConnectionLimits:
    """The request-head timeout and the S3 answer past the concurrency limit, for either
    uvicorn protocol (listed before it among the bases)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._head_timeout = getattr(self.config, "head_timeout", HEAD_TIMEOUT_SECONDS)
        self._head_timer: asyncio.TimerHandle | None = None
        # Decided here, so the answer past it is S3's; uvicorn must not decide it too.
        self._max_concurrency = self.limit_concurrency
        self.limit_concurrency = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_head()

    def _await_head(self) -> None:
        """Start the time the next request head has to arrive in full."""
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self._head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A request is being served; the next answer starts the wait again.
            return
        log.info("No complete request head within %ss: closing.", self._head_timeout)
        self.transport.close()

    @contextlib.contextmanager
    def _slow_down_when_full(self) -> Iterator[None]:
        """While a request is started in here, answer it with SlowDown if the process is
        at its limit (the check uvicorn makes, with S3's answer)."""
        limit = self._max_concurrency
        if limit is None or (len(self.connections) < limit and len(self.tasks) < limit):
            yield
            return
        app, self.app = self.app, slow_down
        try:
            yield
        finally:
            self.app = app


class LimitedH11Protocol(ConnectionLimits, H11Protocol):
    """h11, with a request-head timeout and S3's SlowDown past the concurrency limit."""

    def handle_events(self) -> None:
        with self._slow_down_when_full():
            super().handle_events()


class LimitedHttpToolsProtocol(ConnectionLimits, HttpToolsProtocol):
    """httptools, refusing a request head larger than MAX_HEAD_BYTES with 431, with a
    request-head timeout and S3's SlowDown past the concurrency limit."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._head_done = False
        self._head_bytes = 0
        self._completed_in_read = False
        self._too_large = False

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        self._completed_in_read = False
        super().data_received(data)
        # While a head is incomplete the parser buffers it: count what was fed, so a
        # client streaming an endless header is cut off. A read that also finished the
        # previous request is not counted (its split is unknown), so the parser holds at
        # most MAX_HEAD_BYTES plus one read; on_headers_complete measures exactly.
        if not self._head_done and not self._completed_in_read:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._too_large = True
                self.send_400_response("")

    def on_headers_complete(self) -> None:
        self._head_done = True
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > MAX_HEAD_BYTES:
            self._too_large = True
            # The parser reports a failed callback as a parse error, which answers below.
            raise HeadTooLarge()
        with self._slow_down_when_full():
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        # uvicorn copies each piece into a bytearray, and that into bytes for the
        # application: a piece that finds none held before it is kept as it came, and
        # receive() hands bytes on without a copy.
        cycle = self.cycle
        if cycle.body or cycle.response_complete or self.parser.should_upgrade():
            super().on_body(body)
            return
        cycle.body = body
        if len(body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The next request on this connection starts its own head.
        self._head_done = False
        self._head_bytes = 0
        self._completed_in_read = True

    def send_400_response(self, msg: str) -> None:
        if not self._too_large:
            super().send_400_response(msg)
            return
        if not self.transport.is_closing():
            self.logger.warning("Request head over %d bytes: closing.", MAX_HEAD_BYTES)
            self.transport.write(TOO_LARGE)
            self.transport.close()


HTTP_PROTOCOLS = {"httptools": LimitedHttpToolsProtocol, "h11": LimitedH11Protocol}


def config(
    app: str,
    host: str,
    port: int,
    http: str = "httptools",
    forwarded_allow_ips: str = "",
    **options,
) -> GatewayConfig:
    """uvicorn's configuration. The client's address (for SlowDown, usage and audit) is
    the connection's own unless ``forwarded_allow_ips`` names the proxies whose
    X-Forwarded-For may replace it: uvicorn would otherwise trust it from 127.0.0.1.
    ``options`` may set ``head_timeout``, ``timeout_keep_alive`` and ``limit_concurrency``
    (see the module docstring) and any other uvicorn option."""
    return GatewayConfig(
        app,
        host=host,
        port=port,
        http=HTTP_PROTOCOLS[http],
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        proxy_headers=bool(forwarded_allow_ips),
        forwarded_allow_ips=forwarded_allow_ips or None,
        **options,
    )


def reuse_freed_memory() -> None:
    """Keep freed buffers of up to MMAP_THRESHOLD_BYTES in the heap for the next ones.

    A streamed body passes through as pieces of 64 KiB to about 1 MiB. By default glibc
    maps large allocations afresh and unmaps them when freed, and gives back the top of
    the heap whenever a little lies free there, so each piece's pages were faulted in
    and zeroed again: 5 to 8% of the CPU a 64 MiB GET cost the gateway."""
    name = ctypes.util.find_library("c")
    if name != "libc.so.6":
        # Not glibc: its mallopt, if any, takes other parameters.
        return
    libc = ctypes.CDLL(name)
    libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--http", choices=sorted(HTTP_PROTOCOLS), default="httptools")
    parser.add_argument(
        "--forwarded-allow-ips",
        default="",
        help="comma-separated addresses of the proxies in front, whose X-Forwarded-For is "
        "believed (default: none)",
    )
    parser.add_argument("--access-log", action="store_true")
    args = parser.parse_args(argv)
    reuse_freed_memory()
    # Imported here: it sets Django up, which the protocols above do not need.
    from django.conf import settings

    from . import authority  # noqa: F401 - sets Django up
    from .config import connection_limits

    # With LOG_FORMAT=json, uvicorn's own lines go through the portal's logging too.
    logging_options = {"log_config": None} if settings.LOG_FORMAT == "json" else {}
    uvicorn.Server(
        config(
            "gateway.app:app",
            args.host,
            args.port,
            args.http,
            args.forwarded_allow_ips,
            access_log=args.access_log,
            **connection_limits(),
            **logging_options,
        )
    ).run()


if __name__ == "__main__":
    main()
