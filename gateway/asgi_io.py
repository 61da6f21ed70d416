"""ASGI receive and send for one request, each wait on the client limited.

Django-free. ``Receiver`` and ``Sender`` wrap the server's callables: they count the bytes
that pass (for usage), remember how far the exchange got (is the body read, has the
answer begun), and bound every wait on the client, so a client that stops sending or
stops reading cannot hold a request, or the store connection behind it, for ever.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

from . import s3errors, sigv4

# A refused request's body up to this size is read and dropped, so the connection stays
# usable; a larger one closes the connection instead.
DRAIN_MAX_BYTES = 1024 * 1024

T = TypeVar("T")


class WaitLimit:
    """Each wait in ``wait()`` lasts at most ``timeout`` seconds, else TimeoutError.

    A request's body passes in hundreds of pieces, each one wait; asyncio.timeout would
    arm and cancel a timer for every one of them. Here one timer serves them all: a wait
    only notes its deadline, and the timer, when it fires, either finds the wait in
    progress past its deadline and cancels it, or sets itself for the current deadline
    (at most once per ``timeout`` seconds, however many waits pass meanwhile).
    """

    __slots__ = ("_timeout", "_loop", "_timer", "_task", "_deadline", "_expired")

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None
        self._deadline = 0.0
        self._expired = False

    async def wait(self, awaitable: Awaitable[T]) -> T:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        if self._task is not None:
            if isinstance(awaitable, Coroutine):
                awaitable.close()
            raise RuntimeError("WaitLimit.wait() is already waiting")
        self._task = task = asyncio.current_task(loop)
        assert task is not None
        # As asyncio.timeout does: only a cancellation of this wait's own becomes a
        # TimeoutError, not one asked for from elsewhere meanwhile.
        cancelling = task.cancelling()
        self._deadline = loop.time() + self._timeout
        if self._timer is None:
            self._timer = loop.call_at(self._deadline, self._check)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self._expired and task.uncancel() <= cancelling:
                raise TimeoutError() from None
            raise
        finally:
            self._task = None
            self._expired = False

    def close(self) -> None:
        """Stop the timer; a later wait sets it again."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        if self._task is None or self._expired:
            # No wait in progress (the next one sets the timer again), or this one is
            # being cancelled already.
            return
        assert self._loop is not None
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._check)
            return
        self._expired = True
        self._task.cancel()


class Receiver:
    """ASGI receive, remembering whether the request body has been read to its end.

    Each wait for the next piece of the body is limited to ``timeout`` seconds (a client
    that stops sending is answered RequestTimeout), and a body that declared no length is
    refused once it passes ``limit`` bytes."""

    def __init__(self, receive, timeout: float, limit: int | None = None) -> None:
        self._receive = receive
        self._waits = WaitLimit(timeout)
        self._limit = limit
        self.done = False
        self.timed_out = False
        self.bytes = 0

    async def __call__(self) -> dict[str, Any]:
        try:
            message = await self._waits.wait(self._receive())
        except TimeoutError:
            self.timed_out = True
            raise s3errors.request_timeout() from None
        self.bytes += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        if self._limit is not None and self.bytes > self._limit:
            raise s3errors.entity_too_large(None, self._limit)
        return message

    def close(self) -> None:
        self._waits.close()

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
        self._waits = WaitLimit(timeout)
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
            await self._waits.wait(self._send(message))
        except TimeoutError:
            raise ClientStalled() from None

    def close(self) -> None:
        self._waits.close()
