"""ASGI receive and send for one request, each wait on the client limited.

Django-free. ``Receiver`` and ``Sender`` wrap the server's callables: they count the bytes
that pass (for usage), remember how far the exchange got (is the body read, has the
answer begun), and bound every wait on the client, so a client that stops sending or
stops reading cannot hold a request, or the store connection behind it, for ever.
"""

from __future__ import annotations

import asyncio
from typing import Any

from . import s3errors, sigv4

# A refused request's body up to this size is read and dropped, so the connection stays
# usable; a larger one closes the connection instead.
DRAIN_MAX_BYTES = 1024 * 1024


class Receiver:
    """ASGI receive, remembering whether the request body has been read to its end.

    Each wait for the next piece of the body is limited to ``timeout`` seconds (a client
    that stops sending is answered RequestTimeout), and a body that declared no length is
    refused once it passes ``limit`` bytes."""

    def __init__(self, receive, timeout: float, limit: int | None = None) -> None:
        self._receive = receive
        self._timeout = timeout
        self._limit = limit
        self.done = False
        self.timed_out = False
        self.bytes = 0

    async def __call__(self) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self._timeout):
                message = await self._receive()
        except TimeoutError:
            self.timed_out = True
            raise s3errors.request_timeout() from None
        self.bytes += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        if self._limit is not None and self.bytes > self._limit:
            raise s3errors.entity_too_large(None, self._limit)
        return message

    async def drain(self, request: sigv4.Request) -> bool:
        """Read and drop what is left of a small body; False if the connection must close."""
        if self.done:
            return True
        if self.timed_out:
            return False
        headers = request.header_map or {}
        if "transfer-encoding" in headers:
            return False
        try:
            length = int((headers.get("content-length") or ["0"])[0])
        except ValueError:
            return False
        if length > DRAIN_MAX_BYTES:
            return False
        try:
            while not self.done:
                if (await self())["type"] == "http.disconnect":
                    return False
        except sigv4.S3Error:
            return False
        return True


class ClientStalled(Exception):
    """The client stopped reading the answer."""


class Sender:
    """ASGI send, remembering whether the response has begun.

    Each piece of a response body must be taken by the client within ``timeout`` seconds
    (the server waits while the client reads too slowly for its buffers to drain): a client
    that stops reading gets its connection closed, and the store's connection is freed."""

    def __init__(self, send, timeout: float) -> None:
        self._send = send
        self._timeout = timeout
        self.started = False
        self.status = 0
        self.bytes = 0

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            self.status = message["status"]
            await self._send(message)
            return
        self.bytes += len(message.get("body", b""))
        try:
            async with asyncio.timeout(self._timeout):
                await self._send(message)
        except TimeoutError:
            raise ClientStalled() from None
