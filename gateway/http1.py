"""The gateway's HTTP/1.1 client to the object store: one host, kept-alive connections,
bodies streamed both ways, a time limit on every wait.

Small on purpose. The gateway sends what it signed byte for byte (the request target is
never normalised or re-encoded, so an object key with ``..`` in it reaches the store as
the key it is), talks to one store, and spends its time per request on a few microseconds
of parsing (httptools, the parser uvicorn uses) rather than a general client's layers.

- Each connect waits at most ``connect_timeout``; each read, and each write the store is
  slow to take, at most ``timeout`` (between bytes, so a long healthy transfer is never
  cut). Any failure to talk to the store raises StoreError.
- A Content-Length body on a plain connection is read in batches: the kernel wakes the
  gateway once READ_BATCH bytes (or the rest of the body) wait in the socket, not for
  each piece the store writes. A store that writes 32 KiB at a time (Go's io.Copy) would
  otherwise cost a wakeup, a task step and a write to the client per 32 KiB: batching
  halves the gateway's CPU on a large GET (bench/gateway.py). Bytes short of a batch
  wait at most BATCH_PATIENCE: then they are taken, and the rest of that answer is read
  piece by piece, so a slow store's bytes still reach the client as they come, and the
  time limit still runs from the last byte. TLS connections read piece by piece: their
  socket carries records, whose bytes are not the body's.
- A connection goes back to the pool only after an answer was read whole and both sides
  allow keep-alive; an answer left unread closes it. A request that finds a pooled
  connection closed by the store before any answer came is sent again on a new one when
  its body can be sent again (none, or bytes).
"""

from __future__ import annotations

import asyncio
import collections
import fcntl
import socket
import ssl
import struct
import termios
from collections.abc import AsyncIterator
from typing import Any

import httptools

# Idle connections kept per store, and connections open at once.
MAX_IDLE = 64
MAX_CONNECTIONS = 512
# Above this many unread bytes of an answer, the connection stops reading from the store.
READ_AHEAD = 1024 * 1024
# Body bytes the kernel gathers before it wakes the gateway (SO_RCVLOWAT); the size of
# the event loop's reads.
READ_BATCH = 256 * 1024
# Seconds a batch may take to gather before what has come is taken as it is.
BATCH_PATIENCE = 0.25


class StoreError(Exception):
    """The store could not be reached, or broke off, or went silent for too long."""


class _Stale(StoreError):
    """A pooled connection turned out to be closed before any answer came."""


class Headers:
    """An answer's headers as sent (``raw``: name and value bytes, in order)."""

    __slots__ = ("raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw

    def get(self, name: str, default: str | None = None) -> str | None:
        wanted = name.lower().encode("latin-1")
        for key, value in self.raw:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return default


class _Connection(asyncio.Protocol):
    def __init__(self, timeout: float, batch_reads: bool = False) -> None:
        self.timeout = timeout
        self._batch_reads = batch_reads
        # The socket, while its low-water mark can be set; and the mark.
        self._socket: Any = None
        self._low_water = 1
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.error: BaseException | None = None
        # While the transport's buffer is full: resolved once it drains or the
        # connection ends.
        self._drained: asyncio.Future | None = None
        self._wakeup: asyncio.Future | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._pieces: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._reading_paused = False
        self.received_any = False
        self.headers: list[tuple[bytes, bytes]] = []
        self.headers_done = False
        self.message_done = False
        self.status = 0
        self.keep_alive = False
        self._head_only = False
        # Bytes of a Content-Length body still to come, once its head has been read: they
        # are taken as they arrive, not copied out by the parser piece by piece.
        self._body_left: int | None = None

    # asyncio.Protocol

    def connection_made(self, transport) -> None:
        self.transport = transport
        if self._batch_reads:
            self._socket = transport.get_extra_info("socket")

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        if self._body_left is not None and self._parser is not None:
            self._take_body(data)
            return
        if self._parser is None:
            self._fail(StoreError("the store sent bytes nobody asked for"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(StoreError(f"the store's answer could not be read: {error}"))
            return
        self._wake()

    def eof_received(self) -> bool:
        self._ended(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)
        self._resume()

    def _ended(self, exc: Exception | None) -> None:
        if self.message_done or self._parser is None:
            self._fail(None)
        elif not self.received_any:
            self._fail(_Stale("the store closed the connection"))
        elif self.headers_done and exc is None and not self._delimited():
            # An answer with neither a length nor chunks ends where the connection does.
            self._complete()
            self.keep_alive = False
            self._fail(None)
        else:
            self._fail(StoreError(f"the store broke off its answer: {exc!r}"))

    def _delimited(self) -> bool:
        """Does the answer say where its body ends (a length, or chunks)?"""
        for name, value in self.headers:
            name = name.lower()
            if name == b"content-length" or (
                name == b"transfer-encoding" and b"chunked" in value.lower()
            ):
                return True
        return self._bodiless()

    def _bodiless(self) -> bool:
        """Is the answer's status one that never has a body?"""
        return self.status in (204, 304) or 100 <= self.status < 200

    def pause_writing(self) -> None:
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._resume()

    def _resume(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.message_done:
            # The parser goes on past the end of an answer to whatever follows it in the
            # same read: nothing may follow, and parsing stops here.
            raise StoreError("the store sent bytes nobody asked for")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self.headers_done = True
        if self._head_only:
            # No body follows an answer to HEAD, whatever its Content-Length says.
            self._complete()
            return
        self._body_left = self._content_length()
        self._set_low_water()

    def _content_length(self) -> int | None:
        """The body's length, when it is told by one Content-Length alone (no chunks)."""
        if self._bodiless():
            return None
        lengths = []
        for name, value in self.headers:
            name = name.lower()
            if name == b"transfer-encoding":
                return None
            if name == b"content-length":
                lengths.append(value)
        if len(lengths) != 1 or not lengths[0].strip().isdigit():
            return None
        return int(lengths[0])

    def _take_body(self, data: bytes) -> None:
        """Body bytes past the head, as they came (the parser already checked the head)."""
        left = self._body_left
        assert left is not None
        extra = b""
        if len(data) > left:
            data, extra = data[:left], data[left:]
        self._count_body(len(data))
        if data:
            self._queue(data)
        if self._body_left == 0:
            self._complete()
        if extra:
            self._fail(StoreError("the store sent bytes nobody asked for"))
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self._body_left is not None:
            # Body bytes that came with the head, through the parser.
            self._count_body(len(body))
        self._queue(body)

    def _count_body(self, size: int) -> None:
        """``size`` more body bytes came: a low-water mark above what is left comes down
        to it (and is never raised, so an answer read piece by piece stays so)."""
        self._body_left -= size
        if self._body_left < self._low_water:
            self._set_low_water()

    def _queue(self, body: bytes) -> None:
        self._pieces.append(body)
        self._buffered += len(body)
        if self._buffered > READ_AHEAD and not self._reading_paused:
            self.transport.pause_reading()
            self._reading_paused = True

    def on_message_complete(self) -> None:
        self._complete()

    # Used by the client

    def _complete(self) -> None:
        if self.message_done:
            return
        self.message_done = True
        self.keep_alive = self._parser.should_keep_alive()
        self._parser = None
        self._body_left = None
        self._set_low_water()

    def _fail(self, error: BaseException | None) -> None:
        if self.closed:
            return
        self.closed = True
        if error is not None and not self.message_done and self.error is None:
            self.error = error
        self._wake()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def begin(self, head_only: bool) -> None:
        """Get ready for the next answer."""
        self._parser = httptools.HttpResponseParser(self)
        self._head_only = head_only
        self._pieces.clear()
        self._buffered = 0
        self.received_any = False
        self.headers = []
        self.headers_done = self.message_done = False
        self.status = 0
        self._body_left = None

    async def write(self, data: bytes) -> None:
        if self.closed:
            raise self.error or _Stale("the store closed the connection")
        self.transport.write(data)
        if self._drained is not None:
            await self._within_timeout(self._drained, "took no data")
            if self.closed:
                raise self.error or StoreError("the store's connection broke")

    async def _wait(self) -> None:
        self._wakeup = asyncio.get_running_loop().create_future()
        try:
            await self._within_timeout(self._wakeup, "sent nothing")
        finally:
            self._wakeup = None

    async def _within_timeout(self, future: asyncio.Future, what: str) -> None:
        """Wait for ``future``; StoreError("the store <what> ...") after ``timeout`` s.

        A timer that fails the future, rather than wait_for: this runs once or more per
        piece of a transfer, and wait_for costs several times as much."""
        deadline = asyncio.get_running_loop().time() + self.timeout
        timer: list[asyncio.TimerHandle] = []
        self._arm(timer, future, what, deadline)
        try:
            await future
        finally:
            timer[0].cancel()

    def _arm(self, timer: list, future: asyncio.Future, what: str, deadline: float) -> None:
        """(Re)arm ``timer[0]``: at the deadline, or sooner to look for a batch that has
        not gathered."""
        loop = asyncio.get_running_loop()
        when = deadline
        if self._gathering(future):
            when = min(deadline, loop.time() + BATCH_PATIENCE)
        timer[:] = [loop.call_at(when, self._expire, timer, future, what, deadline)]

    def _expire(self, timer: list, future: asyncio.Future, what: str, deadline: float) -> None:
        if future.done():
            return
        now = asyncio.get_running_loop().time()
        if self._gathering(future):
            if self._unread_bytes():
                # Bytes came, fewer than a batch: take them as they are, and the rest of
                # this answer as it comes. They count as the store's progress.
                self._set_low_water(1)
                deadline = now + self.timeout
            if now < deadline:
                self._arm(timer, future, what, deadline)
                return
        future.set_exception(StoreError(f"the store {what} for {self.timeout} s"))

    def _gathering(self, future: asyncio.Future) -> bool:
        """Is ``future`` a read that waits for a batch to gather?"""
        return future is self._wakeup and self._low_water > 1

    def _set_low_water(self, mark: int | None = None) -> None:
        """Wake on ``mark`` bytes; by default a batch of the Content-Length body still
        to come, or every byte outside one."""
        if self._socket is None:
            return
        if mark is None:
            left = self._body_left
            mark = min(READ_BATCH, left) if left else 1
        if mark == self._low_water:
            return
        try:
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, mark)
        except OSError:
            # Closed, or a platform without it: every byte wakes the reader.
            self._socket = None
            self._low_water = 1
            return
        self._low_water = mark

    def _unread_bytes(self) -> int:
        """Bytes waiting in the socket."""
        try:
            answer = fcntl.ioctl(self._socket.fileno(), termios.FIONREAD, b"\0\0\0\0")
        except (OSError, ValueError):
            return 0
        return struct.unpack("i", answer)[0]

    async def read_head(self) -> None:
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            if self.closed:
                raise StoreError("the store closed the connection before answering")
            await self._wait()

    async def read_body(self) -> AsyncIterator[bytes]:
        while True:
            if self._pieces:
                # Whatever has arrived goes on as one piece: fewer, larger writes.
                piece = (
                    self._pieces.popleft()
                    if len(self._pieces) == 1
                    else b"".join([self._pieces.popleft() for _ in range(len(self._pieces))])
                )
                self._buffered -= len(piece)
                if self._reading_paused and self._buffered <= READ_AHEAD // 2:
                    self._reading_paused = False
                    self.transport.resume_reading()
                yield piece
                continue
            if self.message_done:
                return
            if self.error is not None:
                raise self.error
            if self.closed:
                raise StoreError("the store closed the connection mid-answer")
            await self._wait()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Response:
    """An answer whose body streams from the store; ``aclose`` when done with it."""

    def __init__(self, client: Client, connection: _Connection) -> None:
        self._client = client
        self._connection: _Connection | None = connection
        self.status_code = connection.status
        self.headers = Headers(connection.headers)
        self.content = b""

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            if self.content:
                yield self.content
            return
        async for piece in connection.read_body():
            yield piece

    async def read(self) -> bytes:
        self.content = b"".join([piece async for piece in self.aiter_raw()])
        await self.aclose()
        return self.content

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._client.release(connection)


class Client:
    """Connections to one store (``scheme://host:port``)."""

    def __init__(self, base_url: str, *, connect_timeout: float, timeout: float) -> None:
        scheme, _, netloc = base_url.partition("://")
        host, _, port = netloc.rpartition(":") if ":" in netloc.strip("]") else (netloc, "", "")
        self.host = host.strip("[]") or netloc
        self.port = int(port) if port else (443 if scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if scheme == "https" else None
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._closed = False

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self.timeout, batch_reads=self.ssl is None),
                    self.host,
                    self.port,
                    ssl=self.ssl,
                ),
                self.connect_timeout,
            )
        except TimeoutError:
            limit = self.connect_timeout
            raise StoreError(f"could not connect to the store in {limit} s") from None
        except OSError as error:
            raise StoreError(f"could not connect to the store: {error}") from None
        return connection

    def _pooled(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and not connection.transport.is_closing():
                return connection
            connection.close()
        return None

    def release(self, connection: _Connection) -> None:
        """Take a connection back: pooled if its answer was read whole and it may stay
        open, closed otherwise."""
        self._slots.release()
        if (
            self._closed
            or not connection.message_done
            or not connection.keep_alive
            or connection.closed
            or len(self._idle) >= MAX_IDLE
        ):
            connection.close()
            return
        self._idle.append(connection)

    async def send(
        self, method: str, target: bytes, headers: list[tuple[str, str]], content: Any
    ) -> Response:
        """Send a request and return its answer once its head has arrived. ``content``:
        None, bytes, or an async iterator of bytes (then ``headers`` carry its length)."""
        head = bytearray(method.encode("ascii") + b" " + target + b" HTTP/1.1\r\n")
        for name, value in headers:
            head += name.encode("latin-1") + b": " + value.encode("latin-1") + b"\r\n"
        head += b"\r\n"
        replayable = content is None or isinstance(content, bytes | bytearray)
        await self._slots.acquire()
        try:
            connection = self._pooled()
            if connection is not None:
                try:
                    return await self._exchange(connection, method, bytes(head), content)
                except _Stale:
                    connection.close()
                    if not replayable:
                        raise
            connection = await self._connect()
            return await self._exchange(connection, method, bytes(head), content)
        except BaseException:
            self._slots.release()
            raise

    async def _exchange(
        self, connection: _Connection, method: str, head: bytes, content: Any
    ) -> Response:
        connection.begin(head_only=method == "HEAD")
        try:
            if content is None or isinstance(content, bytes | bytearray):
                await connection.write(head + bytes(content or b""))
            else:
                # The head goes out with the body's first piece: one write, not two.
                pending = head
                async for piece in content:
                    if pending:
                        piece, pending = pending + piece, b""
                    await connection.write(piece)
                if pending:
                    await connection.write(pending)
            await connection.read_head()
        except BaseException:
            connection.close()
            raise
        return Response(self, connection)

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
