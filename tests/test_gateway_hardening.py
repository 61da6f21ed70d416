"""The gateway's hardening, end to end: header names and ACL headers it refuses, the
headers it forwards, malformed access key IDs, X-Forwarded-For, racing CreateBuckets,
ListBuckets answered whole, and CreateBucket bodies that do not match their signature.

The gateway runs under gateway.serve in front of rclone serve s3, except where what it
sends upstream is the point: there the upstream is a small recording HTTP server.
Requests an SDK will not send go out through tests/s3_raw.py.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from botocore.exceptions import ClientError

from audit.trail import Actor
from gateway.models import Bucket
from gateway.services import adopt_bucket
from keys.credentials import ACCESS_KEY_ID_RE
from keys.models import DeniedAttempt, KeyUsage
from tests.conftest import new_key
from tests.gateway_stack import (
    Gateway,
    Upstream,
    gateway,
    worker,
)
from tests.s3_raw import Response, Signer, error_code, send
from tests.test_gateway_e2e import s3_client

pytestmark = pytest.mark.django_db(transaction=True)

INVALID_ARGUMENT = (400, "InvalidArgument")
NOT_IMPLEMENTED = (501, "NotImplemented")
INVALID_ACCESS_KEY_ID = (403, "InvalidAccessKeyId")
SIGNATURE_DOES_NOT_MATCH = (403, "SignatureDoesNotMatch")
SLOW_DOWN = (503, "SlowDown")
SHA256_MISMATCH = (400, "XAmzContentSHA256Mismatch")
ALL_USERS = 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'
SECRET_OBJECT = b"globex secret"
OWN_OBJECT = b"acme's own object"
FAILURE_LIMIT = 5
RACERS = 8
RACED_NAMES = 10
WAIT_SECONDS = 30
# Headers the gateway sets itself on every request it sends upstream.
GATEWAY_OWN_HEADERS = {
    "host",
    "authorization",
    "x-amz-date",
    "x-amz-content-sha256",
    "content-length",
    "accept-encoding",
}
# Headers a client may send that S3 reads, and that must reach the store as sent.
S3_HEADERS = [
    ("Content-Type", "text/plain"),
    ("Cache-Control", "no-cache"),
    ("x-amz-meta-a", "b"),
    ("x-amz-storage-class", "STANDARD"),
]
# Headers that could make the store (or a proxy before it) read another request than
# the one authorized, or that are none of its business.
FOREIGN_HEADERS = [
    ("X-Forwarded-Host", "evil.test"),
    ("Forwarded", "for=192.0.2.1;host=evil.test;proto=https"),
    ("X-Original-URL", "/someone-elses-bucket/secret.txt"),
    ("X-HTTP-Method-Override", "DELETE"),
    ("Cookie", "session=stolen"),
    ("User-Agent", "hardening-test/1.0"),
]
UNSIGNED_FOREIGN_HEADERS = [("X-Rewrite-URL", "/someone-elses-bucket"), ("X-Forwarded-Proto", "x")]
ODD_KEY = "dir/with space+ü~.txt"
ODD_KEY_ENCODED = "dir/with%20space%2B%C3%BC~.txt"
EMPTY_BUCKET_LIST = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<Owner><ID>recorder</ID><DisplayName>recorder</DisplayName></Owner>"
    b"<Buckets></Buckets></ListAllMyBucketsResult>"
)
EMPTY_OBJECT_LIST = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<Name>any</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1</MaxKeys>"
    b"<IsTruncated>false</IsTruncated></ListBucketResult>"
)


@pytest.fixture(scope="module")
def gw(tmp_path_factory, store):
    with gateway(
        tmp_path_factory.mktemp("gw"),
        store,
        # Some tests here fail authentication on purpose: keep SlowDown out of their way.
        EXCLOUD_S3_FAILURE_LIMIT="100000",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def h11_gw(tmp_path_factory, store):
    with gateway(
        tmp_path_factory.mktemp("gw-h11"), store, http="h11", EXCLOUD_S3_FAILURE_LIMIT="100000"
    ) as running:
        yield running


@pytest.fixture(params=["httptools", "h11"])
def any_gw(request) -> Gateway:
    """The gateway under each uvicorn HTTP parser: they hand over header names apart."""
    return request.getfixturevalue("gw" if request.param == "httptools" else "h11_gw")


def _port(gw: Gateway) -> int:
    return int(gw.url.rsplit(":", 1)[1])


def _name(prefix: str = "hard") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def outcome(response) -> tuple[int | None, str | None]:
    return response.status, error_code(response.body)


def client_error(call) -> tuple[int, str]:
    """The (status, S3 code) a boto3 call failed with."""
    with pytest.raises(ClientError) as raised:
        call()
    error = raised.value.response
    return error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]


@dataclass
class Orgs:
    """Acme's key and bucket (holding mine.txt), and Globex's (holding secret.txt)."""

    acme: Signer
    acme_s3: Any  # boto3 S3 clients
    mine: str
    globex_s3: Any
    theirs: str


@pytest.fixture
def orgs(any_gw, owner, outsider) -> Orgs:
    acme_key, acme_secret = new_key(owner, "acme")
    globex_key, globex_secret = new_key(outsider, "globex")
    acme_s3 = s3_client(any_gw.url, acme_key.id, acme_secret)
    globex_s3 = s3_client(any_gw.url, globex_key.id, globex_secret)
    mine, theirs = _name("acme"), _name("globex")
    acme_s3.create_bucket(Bucket=mine)
    acme_s3.put_object(Bucket=mine, Key="mine.txt", Body=OWN_OBJECT)
    globex_s3.create_bucket(Bucket=theirs)
    globex_s3.put_object(Bucket=theirs, Key="secret.txt", Body=SECRET_OBJECT)
    return Orgs(Signer(_port(any_gw), acme_key.id, acme_secret), acme_s3, mine, globex_s3, theirs)


# ---------------------------------------------------------------------------------------
# 1. Header rules


def test_it_refuses_header_names_with_an_underscore(orgs, store):
    mine, theirs = orgs.mine, orgs.theirs
    source = f"/{theirs}/secret.txt"

    signed = orgs.acme.request(
        "PUT", f"/{mine}/stolen.txt", headers=[("x_amz_copy_source", source)]
    )
    unsigned = orgs.acme.request(
        "PUT", f"/{mine}/stolen-unsigned.txt", unsigned=[("X_Amz_Copy_Source", source)]
    )
    harmless = orgs.acme.request("GET", f"/{mine}/mine.txt", headers=[("x_custom", "1")])

    assert outcome(signed) == INVALID_ARGUMENT
    assert outcome(unsigned) == INVALID_ARGUMENT
    assert outcome(harmless) == INVALID_ARGUMENT
    assert SECRET_OBJECT not in signed.body + unsigned.body
    assert sorted(path.name for path in (store.root / mine).iterdir()) == ["mine.txt"]
    # The same copy, spelled with dashes, of the org's own object: the route works.
    copied = orgs.acme.request(
        "PUT", f"/{mine}/copied.txt", headers=[("x-amz-copy-source", f"/{mine}/mine.txt")]
    )
    assert copied.status == 200, outcome(copied)
    assert (store.root / mine / "copied.txt").read_bytes() == OWN_OBJECT


def test_it_refuses_acl_headers_other_than_private(orgs, store):
    mine = orgs.mine
    s3 = orgs.acme_s3
    new_bucket = _name("acl")

    refusals = {
        "put public-read": client_error(
            lambda: s3.put_object(Bucket=mine, Key="public.txt", Body=b"x", ACL="public-read")
        ),
        "put grant-read": client_error(
            lambda: s3.put_object(Bucket=mine, Key="public.txt", Body=b"x", GrantRead=ALL_USERS)
        ),
        "create public-read": client_error(
            lambda: s3.create_bucket(Bucket=new_bucket, ACL="public-read")
        ),
        "create grant-read": client_error(
            lambda: s3.create_bucket(Bucket=new_bucket, GrantRead=ALL_USERS)
        ),
        "create grant-full-control": client_error(
            lambda: s3.create_bucket(Bucket=new_bucket, GrantFullControl=ALL_USERS)
        ),
    }
    # Two x-amz-acl headers, the first private: every value counts, not the first.
    twice = orgs.acme.request(
        "PUT",
        f"/{mine}/public.txt",
        body=b"x",
        headers=[("x-amz-acl", "private"), ("x-amz-acl", "public-read")],
    )

    assert refusals == dict.fromkeys(refusals, NOT_IMPLEMENTED)
    assert outcome(twice) == NOT_IMPLEMENTED
    assert sorted(path.name for path in (store.root / mine).iterdir()) == ["mine.txt"]
    assert not Bucket.objects.filter(name=new_bucket).exists()
    assert not (store.root / new_bucket).exists()


def test_it_accepts_a_private_acl(orgs, store, owner):
    s3 = orgs.acme_s3
    new_bucket = _name("private")

    put = s3.put_object(Bucket=orgs.mine, Key="private.txt", Body=b"private", ACL="private")
    created = s3.create_bucket(Bucket=new_bucket, ACL="private")

    assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert (store.root / orgs.mine / "private.txt").read_bytes() == b"private"
    assert Bucket.objects.get(name=new_bucket).org_id == owner.org_id
    assert (store.root / new_bucket).is_dir()


# ---------------------------------------------------------------------------------------
# 2. What goes upstream: a recording store


@dataclass
class Recorded:
    method: str
    target: str
    headers: list[tuple[str, str]]  # names in lower case
    body: bytes

    def names(self) -> set[str]:
        return {name for name, _ in self.headers}

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


class _RecordingHandler(BaseHTTPRequestHandler):
    """Records each request and answers as an empty store that creates anything."""

    protocol_version = "HTTP/1.1"
    server: _RecordingServer

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.records.append(
            Recorded(
                self.command,
                self.path,
                [(name.lower(), value) for name, value in self.headers.items()],
                body,
            )
        )
        path, _, query = self.path.partition("?")
        status, payload = 200, b""
        if self.command == "HEAD" and path.count("/") == 1 and path != "/":
            status = 404  # HeadBucket: no such bucket yet, so CreateBucket goes ahead
        elif self.command == "GET" and path == "/":
            payload = EMPTY_BUCKET_LIST
        elif self.command == "GET" and "list-type=2" in query:
            payload = EMPTY_OBJECT_LIST
        self.send_response(status)
        if payload:
            self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base's name
        pass


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.records: list[Recorded] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@dataclass
class Recording:
    server: _RecordingServer
    gw: Gateway

    def requests(self, method: str) -> list[Recorded]:
        return [record for record in self.server.records if record.method == method]


@pytest.fixture(scope="module")
def recording(tmp_path_factory, django_db_setup) -> Iterator[Recording]:
    server = _RecordingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    tmp = tmp_path_factory.mktemp("recorded")
    store = Upstream(url=server.url, access_key_id="X", secret_access_key="Y", root=tmp)
    try:
        with gateway(tmp, store, EXCLOUD_S3_FAILURE_LIMIT="100000") as running:
            yield Recording(server, running)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def recorded(recording, owner) -> tuple[Recording, Signer, str]:
    """The recording gateway, a signer for an Acme key, and a bucket adopted for Acme."""
    key, secret = new_key(owner)
    bucket = _name("rec")
    adopt_bucket(owner.org, bucket, Actor.system())
    recording.server.records.clear()
    return recording, Signer(_port(recording.gw), key.id, secret), bucket


def _client_headers(record: Recorded) -> set[str]:
    return record.names() - GATEWAY_OWN_HEADERS


def test_it_forwards_only_s3_headers_upstream(recorded):
    recording, signer, bucket = recorded

    put = signer.request(
        "PUT",
        f"/{bucket}/{ODD_KEY_ENCODED}",
        body=b"recorded body",
        headers=[*S3_HEADERS, *FOREIGN_HEADERS],
        unsigned=UNSIGNED_FOREIGN_HEADERS,
    )

    assert put.status == 200, outcome(put)
    [forwarded] = recording.requests("PUT")
    assert forwarded.target == f"/{bucket}/{ODD_KEY_ENCODED}"
    assert quote(ODD_KEY, safe="/~") == ODD_KEY_ENCODED
    assert _client_headers(forwarded) == {name.lower() for name, _ in S3_HEADERS}
    # None of the others, by name or by value.
    foreign = FOREIGN_HEADERS + UNSIGNED_FOREIGN_HEADERS
    assert not forwarded.names() & {name.lower() for name, _ in foreign}
    assert not [value for _, value in forwarded.headers if value in dict(foreign).values()]
    for name, value in S3_HEADERS:
        assert forwarded.header(name.lower()) == [value]
    assert forwarded.body == b"recorded body"
    assert forwarded.header("host") == [recording.server.url.removeprefix("http://")]


def test_it_forwards_only_s3_headers_of_a_create_bucket(recorded, owner):
    recording, signer, _ = recorded
    bucket = _name("rec-new")

    created = signer.request("PUT", f"/{bucket}", headers=[*S3_HEADERS[:2], *FOREIGN_HEADERS])

    assert created.status == 200, outcome(created)
    [forwarded] = recording.requests("PUT")
    assert forwarded.target == f"/{bucket}"
    assert _client_headers(forwarded) == {"content-type", "cache-control"}
    assert Bucket.objects.get(name=bucket).org_id == owner.org_id


def test_it_asks_the_store_for_the_whole_bucket_list(recorded):
    recording, signer, _ = recorded

    listed = signer.request(
        "GET",
        "/?continuation-token=abc&max-buckets=1&prefix=rec-",
        headers=FOREIGN_HEADERS,
    )

    assert listed.status == 200, outcome(listed)
    [forwarded] = recording.requests("GET")
    assert forwarded.target == "/"
    assert _client_headers(forwarded) == set()


# ---------------------------------------------------------------------------------------
# 3. Malformed access key IDs


def _presigned_get(target: str, key_id: str) -> str:
    """A presigned GET of ``target`` naming ``key_id`` (the signature is never checked)."""
    amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    credential = f"{key_id}/{amz_date[:8]}/us-east-1/s3/aws4_request"
    return (
        f"{target}?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        f"&X-Amz-Credential={quote(credential, safe='%')}"
        f"&X-Amz-Date={amz_date}&X-Amz-Expires=300&X-Amz-SignedHeaders=host"
        f"&X-Amz-Signature={'0' * 64}"
    )


def _send_presigned(port: int, target: str) -> Response:
    """A presigned request as a browser sends it: no Authorization header."""
    return send(port, f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())


def test_it_answers_invalid_access_key_id_to_malformed_key_ids(gw, owner):
    key, secret = new_key(owner)
    bucket = _name("keyid")
    s3_client(gw.url, key.id, secret).create_bucket(Bucket=bucket)
    signer = Signer(_port(gw), key.id, secret)
    cases = {
        "60,000 characters": _presigned_get(f"/{bucket}/x.txt", "EXC" + "A" * 59_997),
        # A NUL the database would refuse to even compare: looked up, it is a 500.
        "NUL": _presigned_get(f"/{bucket}/x.txt", "AB%00CD"),
        "NUL, well-formed around it": _presigned_get(f"/{bucket}/x.txt", f"{key.id[:10]}%00"),
        "lower case": _presigned_get(f"/{bucket}/x.txt", key.id.lower()),
        "21 characters": _presigned_get(f"/{bucket}/x.txt", key.id + "A"),
    }

    answers = {name: outcome(_send_presigned(_port(gw), target)) for name, target in cases.items()}
    in_header = Signer(_port(gw), "EXC" + "1" * 17, secret).request("GET", f"/{bucket}/x.txt")

    assert answers == dict.fromkeys(cases, INVALID_ACCESS_KEY_ID)
    assert outcome(in_header) == INVALID_ACCESS_KEY_ID
    # Still serving, and the key still works.
    assert signer.request("GET", f"/{bucket}?list-type=2").status == 200


def _wait_for(condition, log: Path) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, log.read_text(errors="replace")[-3000:]
        time.sleep(0.2)


def test_it_never_stores_a_malformed_key_id_as_a_denied_attempt(tmp_path, store, owner):
    key, secret = new_key(owner)
    bucket = _name("denied")
    var = tmp_path / "var"
    var.mkdir()
    with (
        gateway(tmp_path, store, var=var, EXCLOUD_USAGE_FLUSH_SECONDS="1") as running,
        worker(tmp_path, store, var=var) as log,
    ):
        s3_client(store.url, store.access_key_id, store.secret_access_key).create_bucket(
            Bucket=bucket
        )
        adopt_bucket(owner.org, bucket, Actor.system())
        port = _port(running)
        # The key's secret pasted where its ID goes, in a header and in a presigned URL.
        pasted = Signer(port, secret, secret).request("GET", f"/{bucket}?list-type=2")
        presigned = _send_presigned(port, _presigned_get(f"/{bucket}/x.txt", secret))
        honest = Signer(port, key.id, secret).request("GET", f"/{bucket}?list-type=2")
        assert outcome(pasted) == INVALID_ACCESS_KEY_ID
        assert outcome(presigned) == INVALID_ACCESS_KEY_ID
        assert honest.status == 200, outcome(honest)
        # The honest request came last: once it is counted, so is every batch before it.
        _wait_for(lambda: KeyUsage.objects.filter(access_key=key).exists(), log)
        time.sleep(2)  # one more flush period, for a batch still on its way

    attempts = list(DeniedAttempt.objects.values_list("access_key_id", "source_ip", "count"))
    assert all(a == "" or ACCESS_KEY_ID_RE.match(a) for a, _, _ in attempts), attempts
    assert not [a for a, _, _ in attempts if a and (a in secret or secret in a)]
    # Both were counted, under no key.
    assert attempts == [("", "127.0.0.1", 2)]


# ---------------------------------------------------------------------------------------
# 4. X-Forwarded-For


def test_it_does_not_believe_x_forwarded_for_by_default(tmp_path, store, owner):
    key, secret = new_key(owner)
    with gateway(tmp_path, store, EXCLOUD_S3_FAILURE_LIMIT=str(FAILURE_LIMIT)) as running:
        port = _port(running)
        forger = Signer(port, key.id, "wrong" * 8)
        failed = [
            outcome(forger.request("GET", "/", headers=[("X-Forwarded-For", f"203.0.113.{n + 1}")]))
            for n in range(FAILURE_LIMIT + 1)
        ]
        honest = Signer(port, key.id, secret).request(
            "GET", "/", headers=[("X-Forwarded-For", "198.51.100.7")]
        )

    assert failed == [SIGNATURE_DOES_NOT_MATCH] * FAILURE_LIMIT + [SLOW_DOWN]
    assert outcome(honest) == SLOW_DOWN
    assert int(honest.header("retry-after")) >= 1


def _behind_a_proxy(tmp_path, store):
    """A gateway that believes X-Forwarded-For from 127.0.0.1, with the failure limit."""
    return gateway(
        tmp_path,
        store,
        forwarded_allow_ips="127.0.0.1",
        EXCLOUD_S3_FAILURE_LIMIT=str(FAILURE_LIMIT),
    )


def test_it_believes_x_forwarded_for_from_a_named_proxy(tmp_path, store, owner):
    key, secret = new_key(owner)
    with _behind_a_proxy(tmp_path, store) as running:
        port = _port(running)
        forger = Signer(port, key.id, "wrong" * 8)
        honest = Signer(port, key.id, secret)

        def xff(address: str) -> list[tuple[str, str]]:
            return [("X-Forwarded-For", address)]

        spread = [
            outcome(forger.request("GET", "/", headers=xff(f"203.0.113.{n + 1}")))
            for n in range(FAILURE_LIMIT + 1)
        ]
        fresh = honest.request("GET", "/", headers=xff("198.51.100.7"))
        one_source = [
            outcome(forger.request("GET", "/", headers=xff("203.0.113.200")))
            for _ in range(FAILURE_LIMIT)
        ]
        blocked = honest.request("GET", "/", headers=xff("203.0.113.200"))
        other = honest.request("GET", "/", headers=xff("198.51.100.8"))

    assert spread == [SIGNATURE_DOES_NOT_MATCH] * (FAILURE_LIMIT + 1)
    assert fresh.status == 200, outcome(fresh)
    assert one_source == [SIGNATURE_DOES_NOT_MATCH] * FAILURE_LIMIT
    assert outcome(blocked) == SLOW_DOWN
    assert other.status == 200, outcome(other)


def test_it_counts_a_proxied_client_by_the_address_its_proxy_saw(tmp_path, store, owner):
    """A client behind the proxy may write X-Forwarded-For itself; the proxy appends the
    address it saw, and the rightmost address not of a named proxy is the source, so
    varying the rest does not spread failures over made-up sources."""
    key, _ = new_key(owner)
    with _behind_a_proxy(tmp_path, store) as running:
        forger = Signer(_port(running), key.id, "wrong" * 8)
        failed = [
            outcome(
                forger.request(
                    "GET", "/", headers=[("X-Forwarded-For", f"192.0.2.{n + 1}, 203.0.113.201")]
                )
            )
            for n in range(FAILURE_LIMIT + 1)
        ]

    assert failed == [SIGNATURE_DOES_NOT_MATCH] * FAILURE_LIMIT + [SLOW_DOWN]


# ---------------------------------------------------------------------------------------
# 5. CreateBucket racing itself in one org


def test_it_creates_a_bucket_once_when_one_org_races_for_it(gw, store, owner):
    key, secret = new_key(owner)
    clients = [s3_client(gw.url, key.id, secret) for _ in range(RACERS)]
    names = [_name("race") for _ in range(RACED_NAMES)]
    allowed = {200, (409, "BucketAlreadyOwnedByYou"), (409, "BucketAlreadyExists")}

    def race(name: str) -> list:
        barrier = threading.Barrier(RACERS)

        def create(client) -> object:
            barrier.wait()
            try:
                return client.create_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"]
            except ClientError as error:
                answer = error.response
                return answer["ResponseMetadata"]["HTTPStatusCode"], answer["Error"]["Code"]

        with ThreadPoolExecutor(RACERS) as pool:
            return list(pool.map(create, clients))

    answers = {name: race(name) for name in names}

    unexpected = {name: got for name, got in answers.items() if not set(got) <= allowed}
    assert unexpected == {}
    assert all(200 in got for got in answers.values()), answers
    owners = dict(Bucket.objects.filter(name__in=names).values_list("name", "org_id"))
    assert owners == dict.fromkeys(names, owner.org_id)
    assert [name for name in names if not (store.root / name).is_dir()] == []
    for name in names:
        put = clients[0].put_object(Bucket=name, Key="after-the-race.txt", Body=b"raced")
        assert put["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert (store.root / name / "after-the-race.txt").read_bytes() == b"raced"


# ---------------------------------------------------------------------------------------
# 6. ListBuckets


def _listed_names(body: bytes) -> list[str]:
    return [name.decode() for name in re.findall(rb"<Name>([^<]*)</Name>", body)]


def test_it_lists_exactly_the_orgs_own_buckets_whole(gw, owner, outsider):
    acme_key, acme_secret = new_key(owner)
    globex_key, globex_secret = new_key(outsider)
    acme = s3_client(gw.url, acme_key.id, acme_secret)
    globex = s3_client(gw.url, globex_key.id, globex_secret)
    prefix = _name("ls")
    acme_buckets = [f"{prefix}-alpha-1", f"{prefix}-alpha-2", f"{prefix}-beta"]
    globex_buckets = [f"{prefix}-alpha-3", f"{prefix}-gamma"]
    for name in acme_buckets:
        acme.create_bucket(Bucket=name)
    for name in globex_buckets:
        globex.create_bucket(Bucket=name)

    listed = acme.list_buckets()
    prefixed = acme.list_buckets(Prefix=f"{prefix}-alpha")
    one_asked = acme.list_buckets(MaxBuckets=1)
    theirs = globex.list_buckets()
    signer = Signer(_port(gw), acme_key.id, acme_secret)
    raw = signer.request("GET", "/")
    raw_paged = signer.request("GET", f"/?max-buckets=1&prefix={prefix}-alpha")

    def names(answer) -> list[str]:
        return [bucket["Name"] for bucket in answer["Buckets"]]

    assert names(listed) == acme_buckets
    assert names(prefixed) == acme_buckets[:2]
    assert names(theirs) == globex_buckets
    # Answered whole, whatever was asked: no page, no token to a next one.
    assert names(one_asked) == acme_buckets
    assert "ContinuationToken" not in one_asked
    assert (raw.status, _listed_names(raw.body)) == (200, acme_buckets)
    assert (raw_paged.status, _listed_names(raw_paged.body)) == (200, acme_buckets[:2])
    for body in (raw.body, raw_paged.body):
        assert b"ContinuationToken" not in body
        assert not [name for name in globex_buckets if name.encode() in body]


# ---------------------------------------------------------------------------------------
# 7. CreateBucket bodies that do not match their signature


CREATE_BUCKET_CONFIGURATION = (
    b'<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<LocationConstraint>us-east-1</LocationConstraint></CreateBucketConfiguration>"
)
OTHER_HASH = hashlib.sha256(b"other bytes").hexdigest()


def _mismatched_creates(signer: Signer) -> dict[str, tuple[int | None, str | None]]:
    """CreateBucket of two fresh names, signed for other bytes than sent: one with a
    configuration body, one empty. Their answers, by name."""
    with_body, empty = _name("mismatch"), _name("mismatch")
    return {
        with_body: outcome(
            signer.request(
                "PUT", f"/{with_body}", body=CREATE_BUCKET_CONFIGURATION, payload_hash=OTHER_HASH
            )
        ),
        empty: outcome(signer.request("PUT", f"/{empty}", payload_hash=OTHER_HASH)),
    }


def test_it_refuses_a_create_bucket_whose_body_does_not_match_its_hash(gw, owner):
    key, secret = new_key(owner)

    answers = _mismatched_creates(Signer(_port(gw), key.id, secret))

    assert answers == dict.fromkeys(answers, SHA256_MISMATCH)
    assert not Bucket.objects.filter(name__in=answers).exists()


def test_it_leaves_the_name_free_after_a_create_bucket_whose_body_does_not_match(gw, store, owner):
    key, secret = new_key(owner)

    answers = _mismatched_creates(Signer(_port(gw), key.id, secret))

    assert answers == dict.fromkeys(answers, SHA256_MISMATCH)
    # A refused CreateBucket creates nothing in the store either: a bucket left there would
    # be nobody's, and the org's honest CreateBucket would answer BucketAlreadyExists.
    assert [name for name in answers if (store.root / name).exists()] == []
    s3 = s3_client(gw.url, key.id, secret)
    for name in answers:
        assert s3.create_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert Bucket.objects.get(name=name).org_id == owner.org_id
