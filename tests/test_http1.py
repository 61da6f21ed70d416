"""The gateway's HTTP/1.1 client against a store of the test's own that writes its answers
byte for byte: split anywhere, with bytes past the end, cut off, chunked, to HEAD, in small
pieces, slowly, stopping mid-body, over TLS."""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway import http1

BODY = os.urandom(300_000)
HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY)

# What the store writes for each request: pieces, with a pause after each (a float is a
# pause of that many seconds instead), then whether it closes the connection.
Script = Callable[[bytes], tuple[list[bytes | float], bool]]


async def _serve(script: Script, connections: list[int], tls: ssl.SSLContext | None = None):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                pieces, close = script(head)
                for piece in pieces:
                    if isinstance(piece, float):
                        await asyncio.sleep(piece)
                        continue
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0.01)
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)


def _client(server: asyncio.Server, tls: ssl.SSLContext | None, timeout: float) -> http1.Client:
    port = server.sockets[0].getsockname()[1]
    scheme = "https" if tls else "http"
    return http1.Client(f"{scheme}://127.0.0.1:{port}", connect_timeout=5, timeout=timeout)


def _split(data: bytes, *cuts: int) -> list[bytes]:
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


async def _exchange(
    script: Script,
    method: str = "GET",
    times: int = 2,
    timeout: float = 5,
    pieces: list[bytes] | None = None,
    settled: list[float] | None = None,
    arrived: list[float] | None = None,
    tls: ssl.SSLContext | None = None,
):
    """Each answer's status and body (or the error reading it), and how many
    connections the store saw; the body's pieces as read go into ``pieces``, the seconds
    after the answer's head at which each reached the reader into ``arrived``, and the
    time.monotonic() at which each answer ended (read or failed) into ``settled``. With
    ``tls`` (the store's side), the store speaks https."""
    connections: list[int] = []
    server = await _serve(script, connections, tls)
    client = _client(server, tls, timeout)
    answers = []
    read = [] if pieces is None else pieces
    times_read = [] if arrived is None else arrived
    try:
        for _ in range(times):
            try:
                response = await client.send(method, b"/b/k", [("host", "store")], None)
                head_read = time.monotonic()
                read.clear()
                times_read.clear()
                try:
                    async for piece in response.aiter_raw():
                        read.append(piece)
                        times_read.append(time.monotonic() - head_read)
                finally:
                    await response.aclose()
                answers.append((response.status_code, b"".join(read)))
            except http1.StoreError as error:
                answers.append(("error", str(error)))
            if settled is not None:
                settled.append(time.monotonic())
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
    return answers, len(connections)


def run(coroutine):
    return asyncio.run(coroutine)


@pytest.mark.parametrize(
    "cuts",
    [
        (len(HEAD),),  # head alone, then the body whole
        (len(HEAD) + 1,),  # one body byte with the head
        (10, len(HEAD) + 7, len(HEAD) + 65_536, len(HEAD) + 65_537),  # anywhere
        (),  # all in one write
    ],
)
def test_a_length_delimited_body_arrives_whole_however_split_and_the_connection_is_kept(cuts):
    answers, connections = run(_exchange(lambda head: (_split(HEAD + BODY, *cuts), False)))

    assert answers == [(200, BODY), (200, BODY)]
    assert connections == 1


def test_bytes_past_the_length_are_not_read_as_the_next_answer():
    answers, connections = run(
        _exchange(lambda head: ([HEAD + BODY[:1000], BODY[1000:] + b"HTTP/1.1 200 OK\r\n"], False))
    )

    assert answers[0] == (200, BODY)
    assert answers[1] == (200, BODY)
    # The connection that carried extra bytes is not used again.
    assert connections == 2


def test_an_answer_after_the_answer_in_the_same_read_is_not_taken_for_anything():
    junk = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-Junk: 1\r\n\r\nabc"

    async def exchange():
        connections: list[int] = []
        # A body small enough that the head, the body and what follows come in one read.
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" + junk
        server = await _serve(lambda head: ([answer], False), connections)
        port = server.sockets[0].getsockname()[1]
        client = http1.Client(f"http://127.0.0.1:{port}", connect_timeout=5, timeout=5)
        try:
            first = await client.send("GET", b"/b/k", [("host", "store")], None)
            headers = first.headers
            body = await first.read()
            second = await client.send("GET", b"/b/k", [("host", "store")], None)
            return headers, body, await second.read(), len(connections)
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()

    headers, body, again, connections = run(exchange())

    assert body == again == b"hello"
    assert headers.get("x-junk") is None
    assert connections == 2


def test_an_answer_cut_off_before_its_length_is_an_error_not_a_short_body():
    answers, _ = run(_exchange(lambda head: ([HEAD + BODY[:1000], BODY[1000:-1]], True), times=1))

    assert answers[0][0] == "error"
    assert "broke off" in answers[0][1]


def test_a_chunked_body_arrives_whole():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY)

    answers, connections = run(_exchange(lambda head: (_split(chunked, 40, 70_000), False)))

    assert answers == [(200, BODY), (200, BODY)]
    assert connections == 1


def test_an_answer_to_head_has_no_body_whatever_its_length_says():
    answers, connections = run(_exchange(lambda head: ([HEAD], False), method="HEAD"))

    assert answers == [(200, b""), (200, b"")]
    assert connections == 1


def test_an_empty_body_and_a_204_end_at_their_head():
    empty = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    no_content = b"HTTP/1.1 204 No Content\r\n\r\n"
    replies = iter([empty, no_content])

    answers, connections = run(_exchange(lambda head: ([next(replies)], False)))

    assert answers == [(200, b""), (204, b"")]
    assert connections == 1


def test_a_body_written_in_small_pieces_is_read_in_batches():
    # As Go's io.Copy writes: 32 KiB at a time, here 10 ms apart.
    pieces: list[bytes] = []
    answers, _ = run(
        _exchange(
            lambda head: ([HEAD, *_split(BODY, *range(32_768, len(BODY), 32_768))], False),
            times=1,
            pieces=pieces,
        )
    )

    assert answers == [(200, BODY)]
    # A batch of READ_BATCH, then the rest of the body: not one read per piece written.
    assert len(BODY) // 32_768 >= 9
    assert len(pieces) <= 3, [len(piece) for piece in pieces]


def test_a_store_that_sends_slowly_but_steadily_is_not_cut():
    # Less than a batch per timeout, but something every 0.3 s against a 0.5 s limit.
    slow = [HEAD]
    for start in range(0, 50_000, 10_000):
        slow += [BODY[start : start + 10_000], 0.3]
    slow.append(BODY[50_000:])

    answers, _ = run(_exchange(lambda head: (slow, False), times=1, timeout=0.5))

    assert answers == [(200, BODY)]


def test_a_store_that_stops_mid_body_is_cut_after_what_it_sent_is_passed_on():
    pieces: list[bytes] = []
    settled: list[float] = []
    started = time.monotonic()

    answers, _ = run(
        _exchange(
            lambda head: ([HEAD, BODY[:10_000], 3.0], True),
            times=1,
            timeout=0.5,
            pieces=pieces,
            settled=settled,
        )
    )

    assert answers == [("error", "the store sent nothing for 0.5 s")]
    assert b"".join(pieces) == BODY[:10_000]
    # The bytes short of a batch wait BATCH_PATIENCE, then nothing comes for the limit.
    assert settled[0] - started < 2.5


def _pausing(head: bytes):
    """10 KB of the body, then nothing for 3 s, then the rest."""
    return [HEAD, BODY[:10_000], 3.0, BODY[10_000:]], False


def test_bytes_short_of_a_batch_reach_the_reader_without_waiting_for_the_limit():
    arrived: list[float] = []

    answers, _ = run(_exchange(_pausing, times=1, arrived=arrived))

    assert answers == [(200, BODY)]
    # The first 10 KB came long before the store went on, 3 s later.
    assert arrived[0] < 2, arrived


def _store_side(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    """A store's side of TLS, serving ``certificate`` (its file and its key's)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def tls_store(certificate, monkeypatch) -> ssl.SSLContext:
    """A store's side of TLS, with a certificate the gateway trusts through
    SSL_CERT_FILE, as an operator points it at a private certificate authority."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
    return _store_side(certificate)


def test_a_tls_store_s_answers_arrive_whole_on_a_kept_connection(tls_store):
    answers, connections = run(
        _exchange(lambda head: ([HEAD, *_split(BODY, 1, 65_536, 200_000)], False), tls=tls_store)
    )

    assert answers == [(200, BODY), (200, BODY)]
    assert connections == 1


def test_a_tls_store_s_body_is_passed_on_as_it_comes_not_held_for_a_batch(tls_store, monkeypatch):
    # A TLS socket's bytes are records, not the body's bytes, so the kernel cannot count
    # a batch of body there: nothing is held for one, however long the patience.
    monkeypatch.setattr(http1, "BATCH_PATIENCE", 100.0)
    arrived: list[float] = []

    answers, _ = run(_exchange(_pausing, times=1, arrived=arrived, tls=tls_store))

    assert answers == [(200, BODY)]
    assert arrived[0] < 2, arrived


def test_a_tls_store_whose_certificate_is_not_trusted_is_refused(certificate):
    store_side = _store_side(certificate)

    answers, _ = run(_exchange(lambda head: ([HEAD, BODY], False), times=1, tls=store_side))

    assert answers[0][0] == "error"
    assert "CERTIFICATE_VERIFY_FAILED" in answers[0][1], answers
