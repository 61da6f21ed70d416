"""Every wait at the gateway has a limit: on the object store (connect, each read or
write), on a request body that stops, on a request head that never ends, on an idle
keep-alive connection; a body too large for one request is refused before it is sent; and
past the concurrency limit a request gets S3's SlowDown.

The gateway runs with its timeouts shortened to LIMIT_SECONDS, in front of an object
store of this module's own, which the tests freeze (SIGSTOP) and thaw. Nothing here
measures time: each test waits at most CLIENT_TIMEOUT, far past every limit, for what
must happen. Every test runs under both uvicorn HTTP parsers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import new_key
from tests.gateway_stack import Upstream, freeze, gateway, group_pids, thaw, upstream
from tests.s3_raw import UNSIGNED_PAYLOAD, Connection, Signer, error_code, send
from tests.test_gateway_e2e import s3_client

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT_SECONDS = "2"
# The test's own patience, far past every limit of the gateway under test.
CLIENT_TIMEOUT = 30.0
GATEWAY_LIMITS = {
    "EXCLOUD_S3_UPSTREAM_CONNECT_TIMEOUT_SECONDS": LIMIT_SECONDS,
    "EXCLOUD_S3_UPSTREAM_TIMEOUT_SECONDS": LIMIT_SECONDS,
    "EXCLOUD_S3_BODY_TIMEOUT_SECONDS": LIMIT_SECONDS,
    "EXCLOUD_S3_HEAD_TIMEOUT_SECONDS": LIMIT_SECONDS,
    "EXCLOUD_S3_KEEPALIVE_SECONDS": "1",
    # These tests fail requests on purpose: keep the per-IP failure limit out of reach.
    "EXCLOUD_S3_FAILURE_LIMIT": "1000",
}
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
OWN_OBJECT = b"acme's own object"
# Large enough that what the sockets between store, gateway and client buffer cannot hold
# all of it once the store is frozen.
LARGE_OBJECT_BYTES = 64 * MiB


@pytest.fixture(scope="module")
def own_store(tmp_path_factory, django_db_setup):
    """rclone serve s3 of this module's own, to freeze."""
    with upstream(tmp_path_factory.mktemp("own-store")) as running:
        yield running


@pytest.fixture(scope="module", params=["httptools", "h11"])
def gw(request, tmp_path_factory, own_store):
    with gateway(
        tmp_path_factory.mktemp("gw"), own_store, http=request.param, **GATEWAY_LIMITS
    ) as running:
        yield running


def _port(gw) -> int:
    return int(gw.url.rsplit(":", 1)[1])


@pytest.fixture
def own(gw, owner) -> tuple[Signer, str]:
    """A signer for an Acme key and an Acme bucket holding mine.txt."""
    key, secret = new_key(owner)
    bucket = "acme-" + uuid.uuid4().hex[:12]
    s3 = s3_client(gw.url, key.id, secret)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="mine.txt", Body=OWN_OBJECT)
    return Signer(_port(gw), key.id, secret), bucket


@contextlib.contextmanager
def frozen(store: Upstream):
    """The store's processes stopped (SIGSTOP): connections open, nothing answers."""
    processes = group_pids(store.pid)
    freeze(*processes)
    try:
        yield
    finally:
        thaw(*processes)


def _in_store(store: Upstream, bucket: str, name: str) -> bool:
    """Does the store itself hold the object (HEAD with the store's own credentials)?"""
    s3 = boto3.client(
        "s3",
        endpoint_url=store.url,
        aws_access_key_id=store.access_key_id,
        aws_secret_access_key=store.secret_access_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    try:
        s3.head_object(Bucket=bucket, Key=name)
    except ClientError as error:
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        return False
    return True


def _send_head(signer: Signer, method: str, target: str, **options) -> Connection:
    """A connection that has sent one request's head (and ``body``, if given) and no more."""
    connection = Connection(signer.port, CLIENT_TIMEOUT)
    connection.sock.sendall(signer.build(method, target, **options))
    return connection


# --- the object store ---------------------------------------------------------------


def test_it_answers_503_while_the_store_is_frozen_and_recovers_after(gw, own, own_store):
    signer, bucket = own
    request = signer.build("GET", f"/{bucket}/mine.txt")

    with frozen(own_store):
        answer = send(signer.port, request, timeout=CLIENT_TIMEOUT)
    after = send(signer.port, signer.build("GET", f"/{bucket}/mine.txt"), timeout=CLIENT_TIMEOUT)

    assert answer.status == 503, answer
    assert error_code(answer.body) == "ServiceUnavailable"
    assert answer.header("content-type") == "application/xml"
    assert answer.header("retry-after") == "1"
    assert (after.status, after.body) == (200, OWN_OBJECT)


def test_it_cuts_a_download_when_the_store_freezes_mid_way(gw, own, own_store):
    signer, bucket = own
    s3 = s3_client(gw.url, signer.key_id, signer.secret)
    s3.put_object(Bucket=bucket, Key="large.bin", Body=os.urandom(LARGE_OBJECT_BYTES))
    sock = socket.create_connection(("127.0.0.1", signer.port), timeout=CLIENT_TIMEOUT)
    sock.sendall(signer.build("GET", f"/{bucket}/large.bin"))
    received = b""
    while b"\r\n\r\n" not in received or len(received) < MiB:
        received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert f"content-length: {LARGE_OBJECT_BYTES}".encode() in head.lower()

    with frozen(own_store):
        # Whatever the sockets held arrives, then the gateway gives up on the store and
        # closes the connection: a recv timing out here would mean the client hangs.
        while data := sock.recv(65536):
            body += data
    sock.close()

    assert len(body) < LARGE_OBJECT_BYTES


def test_it_cuts_an_upload_when_the_store_freezes_mid_way(gw, own, own_store):
    signer, bucket = own
    first = MiB
    connection = _send_head(
        signer,
        "PUT",
        f"/{bucket}/cut-upload.bin",
        body=os.urandom(first),
        payload_hash=UNSIGNED_PAYLOAD,
        content_length=LARGE_OBJECT_BYTES,
    )
    rest = os.urandom(LARGE_OBJECT_BYTES - first)

    def send_the_rest() -> None:
        # Blocks once the sockets are full; ends when the gateway closes the connection.
        with contextlib.suppress(OSError):
            connection.sock.sendall(rest)

    with frozen(own_store):
        sender = threading.Thread(target=send_the_rest, daemon=True)
        sender.start()
        answer = connection.receive()
        closed = connection.closed(CLIENT_TIMEOUT)
    sender.join(CLIENT_TIMEOUT)

    assert answer.status == 503, answer
    assert error_code(answer.body) == "ServiceUnavailable"
    assert closed
    assert not sender.is_alive()
    assert not _in_store(own_store, bucket, "cut-upload.bin")
    assert _in_store(own_store, bucket, "mine.txt")


def test_it_closes_a_download_the_client_stops_reading(gw, own):
    signer, bucket = own
    s3 = s3_client(gw.url, signer.key_id, signer.secret)
    s3.put_object(Bucket=bucket, Key="unread.bin", Body=os.urandom(LARGE_OBJECT_BYTES))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KiB)
    sock.settimeout(CLIENT_TIMEOUT)
    sock.connect(("127.0.0.1", signer.port))
    sock.sendall(signer.build("GET", f"/{bucket}/unread.bin"))
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")

    # The client reads nothing for a while: the gateway's sends stall once the sockets'
    # buffers are full, until it gives up on the client.
    time.sleep(3 * int(LIMIT_SECONDS))
    while data := sock.recv(65536):
        body += data
    sock.close()

    assert len(body) < LARGE_OBJECT_BYTES


# --- request bodies -----------------------------------------------------------------


def test_it_cuts_a_body_that_stops_and_writes_nothing(gw, own, own_store):
    signer, bucket = own
    connection = _send_head(
        signer,
        "PUT",
        f"/{bucket}/stalled.bin",
        body=b"x" * 100,
        payload_hash=UNSIGNED_PAYLOAD,
        content_length=MiB,
    )

    answer = connection.receive()

    assert answer.status == 400, answer
    assert error_code(answer.body) == "RequestTimeout"
    assert b"not read from or written to within the timeout period" in answer.body
    assert connection.closed(CLIENT_TIMEOUT)
    assert not _in_store(own_store, bucket, "stalled.bin")
    assert _in_store(own_store, bucket, "mine.txt")


def test_it_cuts_an_aws_chunked_body_that_stops_and_writes_nothing(gw, own, own_store):
    signer, bucket = own
    first_chunk = b"64\r\n" + b"x" * 100 + b"\r\n"
    connection = _send_head(
        signer,
        "PUT",
        f"/{bucket}/stalled-chunked.bin",
        headers=[
            ("Content-Encoding", "aws-chunked"),
            ("X-Amz-Decoded-Content-Length", str(MiB)),
            ("X-Amz-Trailer", "x-amz-checksum-crc32"),
        ],
        body=first_chunk,
        payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        content_length=MiB + 200,
    )

    answer = connection.receive()

    assert answer.status == 400, answer
    assert error_code(answer.body) == "RequestTimeout"
    assert connection.closed(CLIENT_TIMEOUT)
    assert not _in_store(own_store, bucket, "stalled-chunked.bin")


def test_it_takes_a_slow_but_steady_upload_longer_than_every_limit(gw, own, own_store):
    signer, bucket = own
    pieces = [bytes([65 + n]) * KiB for n in range(8)]
    connection = _send_head(
        signer,
        "PUT",
        f"/{bucket}/steady.bin",
        payload_hash=UNSIGNED_PAYLOAD,
        content_length=sum(map(len, pieces)),
    )
    # Each pause is shorter than the body timeout, all of them together much longer than
    # it and than the store's timeout.
    for piece in pieces:
        time.sleep(0.5)
        connection.sock.sendall(piece)

    answer = connection.receive()

    assert answer.status == 200, answer
    assert _in_store(own_store, bucket, "steady.bin")
    stored = s3_client(gw.url, signer.key_id, signer.secret).get_object(
        Bucket=bucket, Key="steady.bin"
    )
    assert stored["Body"].read() == b"".join(pieces)


# --- sizes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    ["/{bucket}/huge.bin", "/{bucket}/huge.bin?partNumber=1&uploadId=abc"],
    ids=["PutObject", "UploadPart"],
)
def test_it_refuses_a_body_over_5_gib_before_it_is_sent(gw, own, own_store, target):
    signer, bucket = own
    connection = _send_head(
        signer,
        "PUT",
        target.format(bucket=bucket),
        payload_hash=UNSIGNED_PAYLOAD,
        content_length=6 * GiB,
    )

    answer = connection.receive()

    assert answer.status == 400, answer
    assert error_code(answer.body) == "EntityTooLarge"
    assert f"<MaxSizeAllowed>{5 * GiB}</MaxSizeAllowed>".encode() in answer.body
    assert f"<ProposedSize>{6 * GiB}</ProposedSize>".encode() in answer.body
    assert connection.closed(CLIENT_TIMEOUT)
    assert not _in_store(own_store, bucket, "huge.bin")


def test_it_refuses_an_aws_chunked_body_decoding_to_over_5_gib(gw, own):
    signer, bucket = own
    connection = _send_head(
        signer,
        "PUT",
        f"/{bucket}/huge-chunked.bin",
        headers=[
            ("Content-Encoding", "aws-chunked"),
            ("X-Amz-Decoded-Content-Length", str(6 * GiB)),
            ("X-Amz-Trailer", "x-amz-checksum-crc32"),
        ],
        payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        content_length=6 * GiB + 1024,
    )

    answer = connection.receive()

    assert answer.status == 400, answer
    assert error_code(answer.body) == "EntityTooLarge"


def test_it_refuses_a_post_form_over_5_gib_before_it_is_sent(gw, own):
    signer, bucket = own
    connection = Connection(signer.port, CLIENT_TIMEOUT)
    connection.sock.sendall(
        f"POST /{bucket} HTTP/1.1\r\nHost: {signer.host}\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\n"
        f"Content-Length: {6 * GiB}\r\n\r\n".encode()
    )

    answer = connection.receive()

    assert answer.status == 400, answer
    assert error_code(answer.body) == "EntityTooLarge"


def test_it_waits_for_the_body_of_exactly_5_gib(gw, own, own_store):
    signer, bucket = own
    connection = _send_head(
        signer,
        "PUT",
        f"/{bucket}/five.bin",
        payload_hash=UNSIGNED_PAYLOAD,
        content_length=5 * GiB,
    )

    answer = connection.receive()

    # Not too large: the gateway waited for the body, which never came.
    assert answer.status == 400, answer
    assert error_code(answer.body) == "RequestTimeout"
    assert not _in_store(own_store, bucket, "five.bin")


# --- connections --------------------------------------------------------------------


def test_it_closes_an_idle_keep_alive_connection(gw, own):
    signer, bucket = own
    connection = Connection(signer.port, CLIENT_TIMEOUT)

    answer = connection.send(signer.build("GET", f"/{bucket}/mine.txt"))

    assert (answer.status, answer.body) == (200, OWN_OBJECT)
    assert answer.header("connection") != "close"
    assert connection.closed(CLIENT_TIMEOUT)


def test_it_closes_a_connection_that_never_sends_a_request(gw):
    connection = Connection(_port(gw), CLIENT_TIMEOUT)

    assert connection.closed(CLIENT_TIMEOUT)


def test_it_cuts_a_request_head_that_trickles_forever(gw, own):
    signer, bucket = own
    sock = socket.create_connection(("127.0.0.1", signer.port), timeout=0.5)
    sock.sendall(f"GET /{bucket}/mine.txt HTTP/1.1\r\nHost: {signer.host}\r\nX-Slow: ".encode())
    closed = False
    deadline = time.monotonic() + CLIENT_TIMEOUT
    # One more byte of a header every half second, each well within the keep-alive and
    # head timeouts on its own: only a limit on the whole head stops it.
    while not closed and time.monotonic() < deadline:
        try:
            sock.sendall(b"a")
            closed = sock.recv(1024) == b""
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            closed = True
    sock.close()

    assert closed


# --- concurrency --------------------------------------------------------------------


@pytest.fixture(params=["httptools", "h11"])
def gw_of_two(request, tmp_path_factory, own_store):
    """A gateway that serves two connections at once."""
    with gateway(
        tmp_path_factory.mktemp("gw2"),
        own_store,
        http=request.param,
        EXCLOUD_S3_MAX_CONCURRENCY="2",
    ) as running:
        yield running


def test_it_answers_slow_down_past_the_concurrency_limit(gw_of_two, owner):
    key, secret = new_key(owner)
    signer = Signer(_port(gw_of_two), key.id, secret)
    alone = signer.request("GET", "/")
    others = [Connection(signer.port, CLIENT_TIMEOUT) for _ in range(2)]
    try:
        crowded = signer.request("GET", "/")
        crowded_head = send(signer.port, signer.build("HEAD", "/"), head_only=True)
    finally:
        for connection in others:
            connection.close()

    assert alone.status == 200, alone
    assert crowded.status == 503, crowded
    assert error_code(crowded.body) == "SlowDown"
    assert crowded.header("content-type") == "application/xml"
    assert crowded.header("retry-after") == "1"
    assert crowded.header("connection") == "close"
    assert crowded_head.status == 503
