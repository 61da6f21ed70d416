"""The gateway's one pipelined connection to Redis (gateway/pipelined_redis.py), against
redis-servers of the test's own: answers matched to their commands under concurrency,
logins, TLS, and what a frozen, killed or disconnecting Redis does to it."""

from __future__ import annotations

import asyncio
import time

import pytest

from gateway.pipelined_redis import PipelinedRedis, RedisError, pack, parse
from tests.own_services import own_redis

TIMEOUT = 0.25
# For a command whose answer must come, not time out: far past any stall of a busy machine.
PATIENT = 10.0


@pytest.fixture
def server(tmp_path):
    with own_redis(tmp_path) as redis_server:
        yield redis_server


def run(coroutine):
    return asyncio.run(coroutine)


async def _closed_after(client: PipelinedRedis, work):
    try:
        return await work(client)
    finally:
        await client.aclose()


def with_client(url: str, work, timeout: float = PATIENT):
    return run(_closed_after(PipelinedRedis(url, timeout=timeout), work))


def test_it_answers_each_of_many_concurrent_commands_with_its_own(server):
    server.client().mset({f"k{i}": f"v{i}" for i in range(0, 601, 2)})

    async def work(client):
        return await asyncio.gather(*(client.mget([f"k{i}", f"k{i + 1}"]) for i in range(600)))

    answers = with_client(server.url(), work)
    for i, answer in enumerate(answers):
        expected = [f"v{n}".encode() if n % 2 == 0 else None for n in (i, i + 1)]
        assert answer == expected


def test_it_shares_one_connection_among_every_command_in_flight(server):
    async def work(client):
        await asyncio.gather(*(client.mget(["a", "b"]) for _ in range(200)))
        return [c for c in server.client().client_list() if c["cmd"] == "mget"]

    assert len(with_client(server.url(), work)) == 1


def test_an_error_answer_fails_its_command_and_leaves_the_connection_in_step(server):
    server.client().set("word", "not a number")
    server.client().set("n", "1")

    async def work(client):
        results = await asyncio.gather(
            client.execute("INCR", "word"), client.mget(["n"]), return_exceptions=True
        )
        return results, await client.mget(["n", "word"])

    (refused, read), after = with_client(server.url(), work)
    assert isinstance(refused, RedisError) and "not an integer" in str(refused)
    assert read == [b"1"]
    assert after == [b"1", b"not a number"]


def test_it_logs_in_and_selects_the_database_its_url_names(tmp_path):
    with own_redis(tmp_path, password="s3cr3t pass") as server:
        server.client(db=3).set("where", "db3")
        url = f"redis://:s3cr3t%20pass@127.0.0.1:{server.port}/3"
        assert with_client(url, lambda c: c.mget(["where"])) == [b"db3"]
        named = f"redis://default:s3cr3t%20pass@127.0.0.1:{server.port}/3"
        assert with_client(named, lambda c: c.mget(["where"])) == [b"db3"]

        wrong = f"redis://:wrong@127.0.0.1:{server.port}/3"
        with pytest.raises(RedisError, match="WRONGPASS"):
            with_client(wrong, lambda c: c.mget(["where"]))
        anonymous = f"redis://127.0.0.1:{server.port}/3"
        with pytest.raises(RedisError, match="NOAUTH"):
            with_client(anonymous, lambda c: c.mget(["where"]))


def test_it_speaks_tls_and_checks_the_certificate_unless_told_not_to(tmp_path, certificate):
    with own_redis(tmp_path, tls=certificate) as server:
        server.client().set("over", "tls")
        base = f"rediss://127.0.0.1:{server.port}/0"
        verified = f"{base}?ssl_ca_certs={certificate[0]}"
        assert with_client(verified, lambda c: c.mget(["over"])) == [b"tls"]
        unverified = f"{base}?ssl_cert_reqs=none"
        assert with_client(unverified, lambda c: c.mget(["over"])) == [b"tls"]

        # The certificate is self-signed: not trusted by default.
        with pytest.raises(RedisError, match="CERTIFICATE_VERIFY_FAILED"):
            with_client(base, lambda c: c.mget(["over"]))
        # Plain RESP to a TLS port gets no answer it can use, within the limit.
        plain = f"redis://127.0.0.1:{server.port}/0"
        with pytest.raises(RedisError):
            with_client(plain, lambda c: c.mget(["over"]), timeout=TIMEOUT)


def test_a_frozen_redis_fails_every_waiting_command_in_time_and_a_thawed_one_answers(server):
    server.client().set("k", "v")

    async def work(client):
        assert await client.mget(["k"]) == [b"v"]
        server.freeze()
        started = time.monotonic()
        try:
            results = await asyncio.gather(
                *(client.mget(["k"]) for _ in range(50)), return_exceptions=True
            )
            waited = time.monotonic() - started
        finally:
            server.thaw()
        after = await client.mget(["k"])
        return results, waited, after

    results, waited, after = with_client(server.url(), work, timeout=TIMEOUT)
    assert all(isinstance(result, RedisError) for result in results)
    # One limit for all of them, not one after the other (50 x 0.25 s).
    assert waited < 10 * TIMEOUT
    assert after == [b"v"]


def test_it_connects_again_after_redis_is_killed_and_restarted(server):
    async def work(client):
        server.client().set("k", "before")
        assert await client.mget(["k"]) == [b"before"]
        server.kill()
        with pytest.raises(RedisError):
            await client.mget(["k"])
        with pytest.raises(RedisError, match="could not connect"):
            await client.mget(["k"])
        server.start()
        server.client().set("k", "after")
        return await client.mget(["k"])

    assert with_client(server.url(), work) == [b"after"]


def test_it_connects_again_after_redis_drops_its_connection(server):
    server.client().set("k", "v")

    async def work(client):
        assert await client.mget(["k"]) == [b"v"]
        assert server.client().client_kill_filter(_type="normal", skipme=True) >= 1
        answers = []
        for _ in range(2):
            try:
                answers.append(await client.mget(["k"]))
            except RedisError:
                answers.append("failed")
        return answers

    answers = with_client(server.url(), work)
    # The drop may be seen by the first command after it or before; it never answers
    # wrongly, and the next one goes through on a new connection.
    assert answers[0] in ([b"v"], "failed")
    assert answers[1] == [b"v"]


def test_a_caller_that_stops_waiting_leaves_the_others_their_own_answers(server):
    server.client().mset({f"k{i}": f"v{i}" for i in range(20)})

    async def work(client):
        await client.mget(["k0"])
        server.freeze()
        try:
            tasks = [asyncio.ensure_future(client.mget([f"k{i}"])) for i in range(20)]
            await asyncio.sleep(0.1)
            for i in range(0, 20, 3):
                tasks[i].cancel()
        finally:
            server.thaw()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = with_client(server.url(), work)
    for i, result in enumerate(results):
        if i % 3 == 0:
            assert isinstance(result, asyncio.CancelledError)
        else:
            assert result == [f"v{i}".encode()]


def test_it_reads_every_resp_value_only_once_it_has_all_arrived():
    encoded = (
        b"*4\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:42\r\n+OK\r\n$0\r\n\r\n-ERR no such thing\r\n*-1\r\n"
    )
    first = parse(encoded)
    assert first == ([b"abc", None, [42, b"OK"], b""], encoded.index(b"-ERR"))
    error, end = parse(encoded, first[1])
    assert isinstance(error, RedisError) and str(error) == "ERR no such thing"
    assert parse(encoded, end) == (None, len(encoded))
    for cut in range(first[1]):
        assert parse(encoded[:cut]) is None
    with pytest.raises(ValueError):
        parse(b"?what\r\n")


def test_it_writes_commands_as_arrays_of_bulk_strings():
    assert pack("MGET", b"a b", 7) == b"*3\r\n$4\r\nMGET\r\n$3\r\na b\r\n$1\r\n7\r\n"


async def _fake_redis(answer: bytes):
    """A server on a free port that answers every read with ``answer``; (server, URL,
    connections accepted so far)."""
    accepted = []

    async def serve(reader, writer):
        accepted.append(writer)
        while await reader.read(65536):
            writer.write(answer)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"redis://127.0.0.1:{port}/0", accepted


@pytest.mark.parametrize(
    "answer,refusal,timeout",
    [
        (b"?not resp\r\n", "could not be read", PATIENT),
        # An answer that claims more than a megabyte and never ends: the timeout ends it.
        (b"$99999999\r\n" + b"x" * 65536, None, TIMEOUT),
    ],
    ids=["garbage", "endless"],
)
def test_a_server_that_does_not_speak_resp_fails_commands_and_never_hangs(answer, refusal, timeout):
    async def work():
        server, url, accepted = await _fake_redis(answer)
        client = PipelinedRedis(url, timeout=timeout)
        try:
            for _ in range(2):
                with pytest.raises(RedisError, match=refusal):
                    await client.mget(["k"])
        finally:
            await client.aclose()
            server.close()
        return len(accepted)

    # Each failure closed its connection; the next command made a new one.
    assert run(work()) == 2


def test_an_answer_nobody_asked_for_closes_the_connection_after_the_one_asked_for():
    async def work():
        server, url, accepted = await _fake_redis(b"*1\r\n$1\r\nv\r\n+extra\r\n")
        client = PipelinedRedis(url, timeout=PATIENT)
        try:
            answers = [await client.mget(["k"]) for _ in range(2)]
        finally:
            await client.aclose()
            server.close()
        return answers, len(accepted)

    assert run(work()) == ([[b"v"], [b"v"]], 2)
