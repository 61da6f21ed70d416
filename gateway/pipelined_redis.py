"""One pipelined connection to Redis per gateway process, for the versions every request
reads (gateway/freshness.py).

redis-py's asyncio client takes a connection from a pool for each command and spends
several times the CPU of the round trip itself around it; the gateway asks Redis once
or twice per request, so that was a sixth of a small GET's cost. Here all requests of
the process share one connection: each command is written as it comes and the answers
are matched to their commands in order, since Redis answers a connection's commands in
the order it received them. Under load that is one connection per process, not one per
request in flight.

Every command has a limit (``timeout``, connecting included). A command that runs past
it, a connection refused or lost, or an answer that cannot be read closes the connection
and fails every command waiting on it (where the next answer starts is then unknown);
the next command connects again. A command whose caller stopped waiting keeps its place,
and its answer is read and dropped.

The URL is read as redis-py reads it: ``redis://[[user]:password@]host[:port][/db]``,
``rediss://`` for TLS (``ssl_cert_reqs=none|optional|required``, ``ssl_ca_certs=PATH``)
and ``unix:///path?db=N``.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any

from redis.asyncio.connection import SSLConnection, parse_url

# An answer larger than this, unread, means the connection is not talking RESP to us.
MAX_PENDING_BYTES = 1024 * 1024


class RedisError(Exception):
    """Redis could not be reached, answered with an error, or not in time."""


class _ErrorReply(RedisError):
    """An error Redis answered (``-ERR ...``)."""


def pack(*args: bytes | str | int) -> bytes:
    """A command in RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


def parse(buffer: bytes | bytearray, start: int = 0) -> tuple[Any, int] | None:
    """The RESP2 value at ``start`` and where it ends, or None if it has not all arrived.
    Bulk strings are bytes (None for nil), errors are _ErrorReply values, not raised."""
    end = buffer.find(b"\r\n", start)
    if end < 0:
        return None
    kind, line = buffer[start : start + 1], bytes(buffer[start + 1 : end])
    after = end + 2
    if kind == b"$":
        length = int(line)
        if length < 0:
            return None, after
        if len(buffer) < after + length + 2:
            return None
        return bytes(buffer[after : after + length]), after + length + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            parsed = parse(buffer, after)
            if parsed is None:
                return None
            item, after = parsed
            items.append(item)
        return items, after
    if kind == b"+":
        return line, after
    if kind == b":":
        return int(line), after
    if kind == b"-":
        return _ErrorReply(line.decode("utf-8", "replace")), after
    raise ValueError(f"not a RESP value: {kind!r}")


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.error: RedisError | None = None
        self._buffer = bytearray()
        self._waiting: collections.deque[asyncio.Future] = collections.deque()

    @property
    def closed(self) -> bool:
        return self.error is not None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        start = 0
        while self._waiting:
            try:
                parsed = parse(self._buffer, start)
            except ValueError as error:
                self.fail(RedisError(f"Redis's answer could not be read: {error}"))
                return
            if parsed is None:
                break
            value, start = parsed
            waiter = self._waiting.popleft()
            if not waiter.done():
                if isinstance(value, _ErrorReply):
                    waiter.set_exception(value)
                else:
                    waiter.set_result(value)
        del self._buffer[:start]
        if len(self._buffer) > MAX_PENDING_BYTES or (self._buffer and not self._waiting):
            self.fail(RedisError("Redis sent what no command asked for"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisError(f"the connection to Redis was lost: {exc!r}"))

    def send(self, command: bytes) -> asyncio.Future:
        """Write a command; its answer, when it comes, is the returned future's."""
        if self.error is not None:
            raise self.error
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self.transport.write(command)
        return waiter

    def fail(self, error: RedisError) -> None:
        """Close the connection; every command still waiting fails with ``error``."""
        if self.error is None:
            self.error = error
        if self.transport is not None:
            self.transport.abort()
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(self.error)
        self._buffer.clear()


class PipelinedRedis:
    """Commands to one Redis over one shared connection (see the module docstring)."""

    def __init__(self, url: str, *, timeout: float) -> None:
        options = parse_url(url)
        self._timeout = timeout
        self._path: str | None = options.get("path")
        self._host: str = options.get("host", "localhost")
        self._port: int = int(options.get("port", 6379))
        self._ssl = (
            _ssl_context(options) if options.get("connection_class") is SSLConnection else None
        )
        self._handshake: list[bytes] = []
        password, username = options.get("password"), options.get("username")
        if password is not None:
            self._handshake.append(
                pack("AUTH", username, password) if username else pack("AUTH", password)
            )
        if int(options.get("db", 0)):
            self._handshake.append(pack("SELECT", int(options["db"])))
        self._connection: _Connection | None = None
        self._connecting: asyncio.Task | None = None
        self._closed = False

    async def mget(self, keys: list[str]) -> list[bytes | None]:
        return await self.execute("MGET", *keys)

    async def execute(self, *args: bytes | str | int) -> Any:
        """Send one command and return its answer; RedisError if Redis answers with an
        error, cannot be reached, or does not answer within the timeout."""
        connection = self._connection
        try:
            async with asyncio.timeout(self._timeout):
                if connection is None or connection.closed:
                    connection = await self._connected()
                return await connection.send(pack(*args))
        except TimeoutError:
            error = RedisError(f"Redis did not answer in {self._timeout} s")
            if connection is not None:
                connection.fail(error)
            raise error from None
        except OSError as error:
            raise RedisError(f"could not connect to Redis: {error}") from None

    async def _connected(self) -> _Connection:
        """The open connection, made once however many commands ask for it at once."""
        if self._closed:
            raise RedisError("closed")
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._connect())
            # Its failure is each waiting caller's; none may be left to read it.
            self._connecting.add_done_callback(lambda task: task.cancelled() or task.exception())
        # Shielded: one caller running out of time must not stop the connect others share.
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._timeout):
            if self._path is not None:
                _, connection = await loop.create_unix_connection(_Connection, self._path)
            else:
                _, connection = await loop.create_connection(
                    _Connection, self._host, self._port, ssl=self._ssl
                )
            try:
                for command in self._handshake:
                    await connection.send(command)
            except BaseException as error:
                connection.fail(error if isinstance(error, RedisError) else RedisError(error))
                raise
        self._connection = connection
        return connection

    async def aclose(self) -> None:
        self._closed = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._connection is not None:
            self._connection.fail(RedisError("closed"))
            self._connection = None


def _ssl_context(options: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    wanted = str(options.get("ssl_cert_reqs", "required")).lower()
    if wanted == "none":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif wanted == "optional":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_OPTIONAL
    return context
