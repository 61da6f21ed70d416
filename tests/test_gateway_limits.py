"""Hostile input the gateway must bound before it costs memory or counts against anyone:
oversized header values, user metadata and request heads, 100 MB headers, and requests
forged in another org's key's name.

Every test runs under both uvicorn HTTP parsers (httptools and h11), which cap a request
head each in their own way.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db.models import Sum

from gateway.models import Bucket
from keys.models import KeyUsage
from tests.conftest import new_key
from tests.gateway_stack import gateway, worker
from tests.s3_raw import Connection, Signer, error_code
from tests.test_gateway_e2e import s3_client

pytestmark = pytest.mark.django_db(transaction=True)

KiB = 1024
MB = 1024 * 1024
# What each parser answers to a request head over the gateway's 64 KiB cap. h11 answers
# 400 itself when the head comes in pieces; when it comes in one read, h11 hands it on
# whole and the gateway answers 431.
HEAD_TOO_LARGE = {"httptools": {431}, "h11": {400, 431}}
HUGE_HEADER_BYTES = 100 * MB
HUGE_HEADER_REQUESTS = 4
RSS_TOLERANCE_KB = 20 * 1024
FORGED_REQUESTS = 20
WAIT_SECONDS = 30
OWN_OBJECT = b"acme's own object"


@pytest.fixture(scope="module")
def var(tmp_path_factory):
    return tmp_path_factory.mktemp("var")


@pytest.fixture(scope="module", params=["httptools", "h11"])
def gw(request, tmp_path_factory, store, var):
    with gateway(
        tmp_path_factory.mktemp("gw"),
        store,
        var=var,
        http=request.param,
        EXCLOUD_USAGE_FLUSH_SECONDS="1",
        # These tests fail requests on purpose: keep the per-IP failure limit out of reach.
        EXCLOUD_S3_FAILURE_LIMIT="1000",
    ) as running:
        yield running


@pytest.fixture
def http(request, gw) -> str:
    return request.node.callspec.params["gw"]


@pytest.fixture(scope="module")
def celery_worker(tmp_path_factory, store, var):
    with worker(tmp_path_factory.mktemp("worker"), store, var=var) as log:
        yield log


def _port(gw) -> int:
    return int(gw.url.rsplit(":", 1)[1])


def _bucket() -> str:
    return "acme-" + uuid.uuid4().hex[:12]


@pytest.fixture
def own(gw, owner) -> tuple[Signer, str]:
    """A signer for an Acme key and an Acme bucket holding mine.txt."""
    key, secret = new_key(owner)
    name = _bucket()
    s3 = s3_client(gw.url, key.id, secret)
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="mine.txt", Body=OWN_OBJECT)
    return Signer(_port(gw), key.id, secret), name


def _memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (resident at its peak) of a process, in kB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def test_it_refuses_a_header_value_over_8_kib(gw, store, own):
    signer, bucket = own
    over = "v" * (8 * KiB + 1)

    signed = signer.request(
        "PUT", f"/{bucket}/meta.txt", body=b"meta", headers=[("x-amz-meta-note", over)]
    )
    unsigned = signer.request("GET", f"/{bucket}/mine.txt", unsigned=[("X-Filler", over)])

    assert (signed.status, error_code(signed.body)) == (400, "RequestHeaderSectionTooLarge")
    assert (unsigned.status, error_code(unsigned.body)) == (400, "RequestHeaderSectionTooLarge")
    assert not (store.root / bucket / "meta.txt").exists()
    # A long header under the cap is served. (Not much longer: the gateway forwards it, and
    # rclone serve s3 takes about 8 KiB of head in all.)
    under = signer.request("GET", f"/{bucket}/mine.txt", unsigned=[("X-Filler", "v" * 4000)])
    assert (under.status, under.body) == (200, OWN_OBJECT)


def test_it_refuses_more_than_16_kib_of_user_metadata(gw, store, own):
    signer, bucket = own
    value = "m" * 6000  # each header well under 8 KiB; three of them over 16 KiB

    over = signer.request(
        "PUT",
        f"/{bucket}/meta.txt",
        body=b"meta",
        headers=[(f"x-amz-meta-part{n}", value) for n in range(3)],
    )

    assert (over.status, error_code(over.body)) == (400, "MetadataTooLarge")
    assert not (store.root / bucket / "meta.txt").exists()
    # Some metadata is stored. (Kept under 2 KB: rclone serve s3 takes no more.)
    under = signer.request(
        "PUT",
        f"/{bucket}/meta.txt",
        body=b"meta",
        headers=[(f"x-amz-meta-part{n}", "m" * 500) for n in range(2)],
    )
    assert under.status == 200, error_code(under.body)
    assert (store.root / bucket / "meta.txt").read_bytes() == b"meta"


def test_it_closes_the_connection_after_a_request_head_over_64_kib(gw, own, http):
    signer, bucket = own
    filler = "f" * 7000
    connection = Connection(_port(gw))
    try:
        # Under the cap (six headers of 7000 bytes): answered by the gateway itself (a bucket
        # no org owns, so nothing goes to rclone, which takes about 8 KiB of head), and the
        # connection stays open.
        under = signer.build(
            "GET", f"/{bucket}-none/x", unsigned=[(f"X-Filler-{n}", filler) for n in range(6)]
        )
        answer = connection.send(under)
        assert (answer.status, error_code(answer.body)) == (404, "NoSuchBucket")
        assert not connection.closed()

        # Over it on the same connection (ten of them): refused, and the connection closed.
        over = signer.build(
            "GET", f"/{bucket}/mine.txt", unsigned=[(f"X-Filler-{n}", filler) for n in range(10)]
        )
        refused = connection.send(over)
        assert refused.status in HEAD_TOO_LARGE[http]
        assert connection.closed()
    finally:
        connection.close()


def _huge_header(port: int, host: str, bucket: str) -> int | None:
    """Send one request whose header is 100 MB, streamed; the answer's status, or None
    when the gateway closed the connection without one."""
    connection = Connection(port, timeout=60)
    try:
        head = f"GET /{bucket}/mine.txt HTTP/1.1\r\nHost: {host}\r\nX-Huge: ".encode()
        chunk = b"h" * MB
        try:
            connection.sock.sendall(head)
            for _ in range(HUGE_HEADER_BYTES // MB):
                connection.sock.sendall(chunk)
            connection.sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass  # the gateway stopped listening early, as it should
        return connection.receive().status
    finally:
        connection.close()


def test_it_keeps_memory_flat_under_four_100_mb_headers(gw, own):
    signer, bucket = own
    port = _port(gw)
    # Warm up: one honest request and one over-long head, so that what the first ones of
    # each kind allocate is in the baseline.
    assert signer.request("GET", f"/{bucket}/mine.txt").status == 200
    small = Connection(port)
    try:
        small.send(signer.build("GET", f"/{bucket}/mine.txt", unsigned=[("X-A", "a" * 70000)]))
    finally:
        small.close()
    before = _memory_kb(gw.pid)

    with ThreadPoolExecutor(HUGE_HEADER_REQUESTS) as pool:
        statuses = list(
            pool.map(lambda _: _huge_header(port, signer.host, bucket), range(HUGE_HEADER_REQUESTS))
        )

    after = _memory_kb(gw.pid)
    assert all(status is None or 400 <= status < 500 for status in statuses), statuses
    assert after["VmRSS"] - before["VmRSS"] < RSS_TOLERANCE_KB, (before, after)
    # Resident memory at its peak, too: a gateway that held the headers and let go of
    # them would be back down by now.
    assert after["VmHWM"] - before["VmHWM"] < RSS_TOLERANCE_KB, (before, after)
    # And it still serves.
    assert signer.request("GET", f"/{bucket}/mine.txt").body == OWN_OBJECT


def _usage(key) -> dict[str, int | None]:
    """The key's counts over every hour (a test may straddle two)."""
    return KeyUsage.objects.filter(access_key=key).aggregate(
        requests=Sum("requests"), errors=Sum("errors")
    )


def test_it_does_not_count_forged_requests_against_the_key_they_name(
    gw, store, celery_worker, owner, outsider
):
    """Twenty requests naming Globex's key ID, signed with a made-up secret, by Acme."""
    victim_key, victim_secret = new_key(outsider, "victim")
    attacker_key, attacker_secret = new_key(owner, "attacker")
    # The buckets are made in the store and the database directly, so that no request
    # counts for either key.
    direct = s3_client(store.url, store.access_key_id, store.secret_access_key)
    theirs, mine = _bucket(), _bucket()
    for name, key in ((theirs, victim_key), (mine, attacker_key)):
        direct.create_bucket(Bucket=name)
        Bucket.objects.create(name=name, org_id=key.org_id, created_by_key=key)
    direct.put_object(Bucket=theirs, Key="pwned.txt", Body=b"globex")
    direct.put_object(Bucket=mine, Key="mine.txt", Body=OWN_OBJECT)
    port = _port(gw)
    forger = Signer(port, victim_key.id, "forged" + "x" * 34)
    targets = [
        ("GET", f"/{theirs}/pwned.txt"),
        ("PUT", f"/{theirs}/forged.txt"),
        ("GET", f"/{theirs}?list-type=2"),
        ("GET", "/"),
        ("GET", f"/{mine}/mine.txt"),
    ]

    answers = [
        forger.request(method, target)
        for _ in range(FORGED_REQUESTS // len(targets))
        for method, target in targets
    ]

    assert len(answers) == FORGED_REQUESTS
    assert {(a.status, error_code(a.body)) for a in answers} == {(403, "SignatureDoesNotMatch")}
    honest = Signer(port, victim_key.id, victim_secret).request("GET", f"/{theirs}/pwned.txt")
    assert (honest.status, honest.body) == (200, b"globex")
    attacker = Signer(port, attacker_key.id, attacker_secret).request("GET", f"/{mine}/mine.txt")
    assert attacker.status == 200
    # The attacker's request came last: once it is counted, every batch before it (any
    # forged request included) has been flushed too.
    deadline = time.monotonic() + WAIT_SECONDS
    while _usage(attacker_key)["requests"] is None or _usage(victim_key)["requests"] is None:
        assert time.monotonic() < deadline, celery_worker.read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    time.sleep(2)  # one more flush period, for a batch still on its way
    assert _usage(victim_key) == {"requests": 1, "errors": 0}
    assert _usage(attacker_key)["requests"] == 1
    assert not (store.root / theirs / "forged.txt").exists()
