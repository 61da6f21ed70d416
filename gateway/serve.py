"""Serve the S3 endpoint: ``python -m gateway.serve [--host H] [--port P] [--http IMPL]``.

uvicorn with the limits an S3 endpoint needs before any request reaches the application:
the request line and headers together may not exceed MAX_HEAD_BYTES. httptools buffers a
header until its end, so a client sending 100 MB of one header would make the process
hold all of it; the protocol below counts what arrives before the head is complete and
answers 431 and closes the connection once it passes the cap. With h11, the parser's own
incomplete-event cap does the same (answering 400).
"""

from __future__ import annotations

import argparse

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Request line plus every header line. S3 allows 8 KiB per header and 2 KiB of user
# metadata per request; 64 KiB leaves room for every header an SDK sends.
MAX_HEAD_BYTES = 64 * 1024
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


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """httptools, refusing a request head larger than MAX_HEAD_BYTES with 431."""

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
        super().on_headers_complete()

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


HTTP_PROTOCOLS = {"httptools": LimitedHttpToolsProtocol, "h11": H11Protocol}


def config(
    app: str,
    host: str,
    port: int,
    http: str = "httptools",
    forwarded_allow_ips: str = "",
    **options,
) -> uvicorn.Config:
    """uvicorn's configuration. The client's address (for SlowDown, usage and audit) is
    the connection's own unless ``forwarded_allow_ips`` names the proxies whose
    X-Forwarded-For may replace it: uvicorn would otherwise trust it from 127.0.0.1."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=HTTP_PROTOCOLS[http],
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        proxy_headers=bool(forwarded_allow_ips),
        forwarded_allow_ips=forwarded_allow_ips or None,
        **options,
    )


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
    uvicorn.Server(
        config(
            "gateway.app:app",
            args.host,
            args.port,
            args.http,
            args.forwarded_allow_ips,
            access_log=args.access_log,
        )
    ).run()


if __name__ == "__main__":
    main()
