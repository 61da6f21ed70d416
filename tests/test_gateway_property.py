"""A property test of the gateway's routing: whatever path, query and headers a correctly
signed request carries, the object store receives exactly the bucket and object that
authorize() approved, never another org's bucket, and the gateway never answers 500.

The gateway runs in-process as an ASGI app in front of a recording upstream, a small
HTTP/1.1 server that keeps each request's raw target bytes. authorize() is spied on, not
mocked: every check_access() call that returns records the Operation it let through.
Every request is signed with the owner's own key, so only classification and
authorization decide what reaches the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import socketserver
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, unquote_to_bytes
from xml.sax.saxutils import escape

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, event, given, note
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.models import Organization
from audit.trail import Actor
from gateway import authority, operations, services, sigv4
from gateway.app import Gateway
from gateway.models import Bucket
from gateway.operations import Operation
from keys import revocation
from tests.conftest import new_key

pytestmark = pytest.mark.django_db(transaction=True)

REGION = "us-east-1"
VIRTUAL_HOST = "s3.test"
OWN_BUCKET = "own-bkt"
VICTIM_BUCKET = "victim-bkt"
COPY_SOURCE_HEADER = "x-amz-copy-source"
MAX_EXAMPLES = 400
EMPTY_BUCKET_LIST = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<Owner><ID>x</ID></Owner><Buckets></Buckets></ListAllMyBucketsResult>"
)
# Authority's database reads, each run in a worker thread: wrapped so that every read
# closes its thread's connection, and none outlives the test to block dropping the
# test database.
DATABASE_READS = (
    "_load",
    "_load_key_only",
    "_org_bucket_names",
    "_change",
)

# ---------------------------------------------------------------------------------------
# What a client may send

METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE")
# Bucket segments: the org's own bucket and the victim's, then spellings that a looser
# router would read as one of them.
PLAIN_BUCKETS = (OWN_BUCKET,) * 5 + (VICTIM_BUCKET,)
TRICKY_BUCKETS = (
    "OWN-BKT",
    "own-bkt.",
    "own-bkt%2Fvictim-bkt",
    "own-bkt%2fx",
    "%2E%2E",
    "..",
    "192.168.1.1",
    "xn--abc",
    "",
)
# Raw (percent-encoded) path segments that make a usable name, each of which a looser
# gateway could decode once too often, or forward differently from what it decided on...
ENCODED_SEGMENTS = (
    "%252F",
    "%252E%252E",
    "%2E%2E%2Fvictim-bkt",
    "..%2Fvictim-bkt",
    "a%2Fb",
    "a%2f..%2fb",
    "%5C..%5Cvictim-bkt",
    "%25",
    "%2525",
    "%C3%BC",
    "ü",
    "ファ",
    "a+b",
    "a%20b",
    "%3F",
    "a%23b",
    "~",
    "2F",
)
# ... pieces to build other names of ...
PLAIN_KEY_PIECES = ("a", "b", "key.txt", "%2F", "%25", "%C3%BC", VICTIM_BUCKET)
# ... and pieces that a store could resolve to another name, or that are not a name.
TRICKY_KEY_PIECES = ("/", "//", ".", "..", "%2E", "%2E%2E", "%00", "%", "%ff", "%E3%83")
# Whole path segments that a store, or an HTTP client, could resolve as dot segments.
DOT_SEGMENTS = ("", ".", "..", "%2E", "%2e%2E", ".%2E", "%2E.", "..%2F..", "..%5C..")
# Object names as a DeleteObjects body spells them (XML text, not encoded).
PLAIN_BODY_KEYS = ("a", "b/c", "ü ファ", "%2F", VICTIM_BUCKET, "a&b<c>")
BODY_KEY_PIECES = ("a", "b/", "/", ".", "..", "ü", " ", "%2F", VICTIM_BUCKET, "../victim-bkt/x")
# Values for the query parameters of supported operations (gateway.operations.RULES);
# any other parameter gets "1".
PARAM_VALUES = {"list-type": "2", "uploadId": "x", "partNumber": "1", "prefix": "a+b"}
TRICKY_QUERY_PIECES = (
    "uploads",
    "uploadId=x",
    "partNumber=1",
    "delete",
    "delete=",
    "acl",
    "policy",
    "list-type=2",
    "list-type=1",
    "versionId=1",
    "x-id=PutObject",
    "tagging",
    "location",
    "torrent",
    "versions",
    "prefix=a+b",
    "prefix=%2F..",
    "upload%73",
    "upload%49d=y",
    "list+type=2",
    "X-Amz-Date=1",
)
# The supported operations; those that name more than one object (a copy's source,
# DeleteObjects' body) nine times over.
RULES = operations.RULES + tuple(
    rule for rule in operations.RULES if rule.copy or rule.name == "DeleteObjects" for _ in range(8)
)
COPY_SOURCE_VERSIONS = ("", "", "?versionId=1", "?versionId=a%2Fb", "?other=1")
# Hypothesis favours small integers: odds are spelt out as a choice among equals.
ONE_IN_FOUR = (False, False, False, True)
ONE_IN_TWENTY = (False,) * 19 + (True,)


@dataclass(frozen=True)
class Attempt:
    """One client request, before it is signed."""

    method: str
    raw_path: str
    query: str
    hosts: tuple[str, ...]
    copy_sources: tuple[str, ...]
    body: bytes
    unsigned_payload: bool


@st.composite
def _buckets(draw, spellings: tuple[str, ...]) -> str:
    """One of ``spellings``, or now and then a name no org holds."""
    if draw(st.sampled_from(ONE_IN_FOUR)):
        return draw(st.from_regex(r"[a-z0-9][a-z0-9.-]{1,12}[a-z0-9]", fullmatch=True))
    return draw(st.sampled_from(spellings))


@st.composite
def _plain_keys(draw, segment: st.SearchStrategy[str]) -> str:
    """An object name of usable segments; now and then one dot segment among them, which
    the gateway must refuse rather than forward for a store to resolve."""
    segments = draw(st.lists(segment, min_size=1, max_size=3))
    if draw(st.sampled_from(ONE_IN_FOUR)):
        where = draw(st.integers(0, len(segments)))
        segments.insert(where, draw(st.sampled_from(DOT_SEGMENTS)))
    return "/".join(segments)


class Pieces:
    """Strategies for the parts of a request: plain ones make requests that a careful
    client could send (so that many reach authorize() and the store), tricky ones mix in
    every spelling that a looser gateway would route somewhere else."""

    def __init__(self, tricky: bool) -> None:
        self.tricky = tricky
        self.bucket = _buckets(PLAIN_BUCKETS + (TRICKY_BUCKETS if tricky else ()))
        segment = st.one_of(
            st.sampled_from(ENCODED_SEGMENTS),
            st.lists(st.sampled_from(PLAIN_KEY_PIECES), min_size=1, max_size=3).map("".join),
        )
        if tricky:
            pieces = st.sampled_from(PLAIN_KEY_PIECES + ENCODED_SEGMENTS + TRICKY_KEY_PIECES)
            segment = st.one_of(
                segment,
                st.sampled_from(DOT_SEGMENTS),
                st.lists(pieces, max_size=6).map("".join),
            )
            self.key = st.lists(segment, max_size=4).map("/".join)
        else:
            self.key = _plain_keys(segment)

    def query(self, draw) -> str:
        how_many = draw(st.sampled_from((0, 1, 1, 2, 3)))
        return "&".join(draw(st.sampled_from(TRICKY_QUERY_PIECES)) for _ in range(how_many))

    def target(self, draw, level: str) -> tuple[str, str]:
        """(Host, raw path) of a plain request at this level: path style or virtual-hosted."""
        if level == operations.SERVICE:
            return "127.0.0.1:9000", "/"
        key = "/" + draw(self.key) if level == operations.OBJECT else ""
        bucket = draw(self.bucket)
        if draw(st.booleans()):
            return f"{bucket}.{VIRTUAL_HOST}:9000", key or "/"
        return "127.0.0.1:9000", "/" + bucket + key

    def tricky_target(self, draw) -> tuple[str, str]:
        """(Host, raw path), path style or virtual-hosted or neither."""
        host = draw(
            st.sampled_from(
                (
                    "127.0.0.1:9000",
                    "127.0.0.1:9000",
                    f"{VIRTUAL_HOST}:9000",
                    f"{draw(self.bucket)}.{VIRTUAL_HOST}:9000",
                    f"{draw(self.bucket)}.{VIRTUAL_HOST}",
                )
            )
        )
        lead = draw(st.sampled_from(("/", "/", "/", "", "//", f"http://{VIRTUAL_HOST}/")))
        shape = draw(st.sampled_from(("bucket", "bucket/", "bucket/key", "key")))
        if shape == "key":
            return host, lead + draw(self.key)
        path = lead + draw(self.bucket)
        if shape == "bucket/":
            path += "/"
        elif shape == "bucket/key":
            path += "/" + draw(self.key)
        return host, path

    def copy_source(self, draw) -> str:
        lead = draw(st.sampled_from(("/", "", "//") if self.tricky else ("/", "")))
        version = draw(st.sampled_from(COPY_SOURCE_VERSIONS))
        return lead + draw(self.bucket) + "/" + draw(self.key) + version


def _delete_body(draw, tricky: bool) -> bytes:
    if tricky:
        name = st.lists(st.sampled_from(BODY_KEY_PIECES), max_size=4).map("".join)
        keys = draw(st.lists(name, max_size=3))
    else:
        keys = draw(st.lists(st.sampled_from(PLAIN_BODY_KEYS), min_size=1, max_size=3))
    objects = "".join(f"<Object><Key>{escape(key)}</Key></Object>" for key in keys)
    return f"<Delete>{objects}</Delete>".encode()


def _rule_query(draw, rule: operations.Rule) -> str:
    names = sorted(rule.selector)
    if rule.params and draw(st.booleans()):
        names.append(draw(st.sampled_from(sorted(rule.params))))
    if draw(st.sampled_from(ONE_IN_FOUR)):
        names.append("x-id")
    parts = [name + "=" + PARAM_VALUES[name] if name in PARAM_VALUES else name for name in names]
    return "&".join(draw(st.permutations(parts)))


@st.composite
def attempts(draw) -> Attempt:
    pieces = Pieces(tricky=draw(st.booleans()))
    sources: tuple[str, ...] = ()
    if pieces.tricky:
        method = draw(st.sampled_from(METHODS))
        host, raw_path = pieces.tricky_target(draw)
        hosts: tuple[str, ...] = (host,)
        query = pieces.query(draw)
        if draw(st.sampled_from(ONE_IN_FOUR)):
            sources = (pieces.copy_source(draw),)
        if draw(st.sampled_from(ONE_IN_TWENTY)):
            # A second Host or copy source: the gateway and the store could each read
            # another.
            hosts += (pieces.tricky_target(draw)[0],)
        if sources and draw(st.sampled_from(ONE_IN_TWENTY)):
            sources += (pieces.copy_source(draw),)
    else:
        # A request shaped like one of the supported operations, on plain names.
        rule = draw(st.sampled_from(RULES))
        method = rule.method
        host, raw_path = pieces.target(draw, rule.level)
        hosts = (host,)
        query = _rule_query(draw, rule)
        if rule.copy:
            sources = (pieces.copy_source(draw),)
    if method == "POST":
        body = _delete_body(draw, pieces.tricky)
    elif method == "PUT":
        body = draw(st.sampled_from((b"", b"data")))
    else:
        body = b""
    return Attempt(method, raw_path, query, hosts, sources, body, draw(st.booleans()))


# ---------------------------------------------------------------------------------------
# The recording upstream


@dataclass(frozen=True)
class Received:
    method: str
    target: bytes
    headers: dict[str, list[str]]
    body: bytes

    @property
    def path(self) -> bytes:
        return self.target.partition(b"?")[0]

    @property
    def query(self) -> str:
        return self.target.partition(b"?")[2].decode("ascii")


class _RecordingHandler(socketserver.StreamRequestHandler):
    server: _RecordingServer

    def handle(self) -> None:
        while True:
            line = self.rfile.readline(65537)
            if not line:
                return
            if line in (b"\r\n", b"\n"):
                continue
            method, target, _version = line.rstrip(b"\r\n").split(b" ", 2)
            headers: dict[str, list[str]] = {}
            while True:
                header = self.rfile.readline(65537)
                if header in (b"\r\n", b"\n", b""):
                    break
                name, _, value = header.decode("latin-1").partition(":")
                headers.setdefault(name.strip().lower(), []).append(value.strip())
            body = self._body(headers)
            self.server.received.append(Received(method.decode(), target, headers, body))
            self.wfile.write(self.server.answer(method, target))
            self.wfile.flush()

    def _body(self, headers: dict[str, list[str]]) -> bytes:
        if "chunked" in ",".join(headers.get("transfer-encoding", [])).lower():
            pieces = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                pieces.append(self.rfile.read(size))
                self.rfile.readline()
                if size == 0:
                    return b"".join(pieces)
        length = int((headers.get("content-length") or ["0"])[0])
        return self.rfile.read(length) if length else b""


class _RecordingServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.received: list[Received] = []

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    @staticmethod
    def answer(method: bytes, target: bytes) -> bytes:
        path = target.partition(b"?")[0]
        bucket_only = path.count(b"/") == 1 and len(path) > 1
        status, reason, body = 200, "OK", b""
        if method == b"HEAD" and bucket_only:
            # No such bucket: a CreateBucket may claim the name.
            status, reason = 404, "Not Found"
        elif method == b"GET" and path == b"/":
            body = EMPTY_BUCKET_LIST
        elif method == b"DELETE" and bucket_only:
            status, reason = 204, "No Content"
        head = f"HTTP/1.1 {status} {reason}\r\ncontent-length: {len(body)}\r\n"
        if body:
            head += "content-type: application/xml\r\n"
        return (head + "\r\n").encode() + (b"" if method == b"HEAD" else body)


@pytest.fixture
def recorder() -> Iterator[_RecordingServer]:
    server = _RecordingServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------------
# The gateway in-process, with authorize() spied on


@dataclass
class Approval:
    operation: Operation
    owners: dict[str, int | None]


@dataclass(repr=False)
class World:
    """The gateway under test, its recording upstream, and the owner's key."""

    gateway: Gateway
    loop: asyncio.AbstractEventLoop
    recorder: _RecordingServer
    acme: Organization
    access_key_id: str
    secret: str
    approvals: list[Approval] = field(default_factory=list)

    def reset(self) -> tuple[set[str], set[str]]:
        """Start an example from the same buckets as every other, so that Hypothesis can
        replay it: forget what was recorded, drop the buckets earlier examples created,
        give Acme back the bucket a DeleteBucket took, and answer (Acme's buckets, other
        orgs' buckets)."""
        self.recorder.received.clear()
        self.approvals.clear()
        with transaction.atomic():
            others = Bucket.objects.exclude(name__in=(OWN_BUCKET, VICTIM_BUCKET))
            dropped = list(others.values_list("name", flat=True))
            others.delete()
            if not Bucket.objects.filter(name=OWN_BUCKET).exists():
                services.adopt_bucket(self.acme, OWN_BUCKET, Actor.system())
                dropped.append(OWN_BUCKET)
            # The gateway caches bucket owners until their versions move.
            revocation.announce_change(buckets=dropped)
        ours, theirs = set(), set()
        for name, org_id in Bucket.objects.values_list("name", "org_id"):
            (ours if org_id == self.acme.id else theirs).add(name)
        return ours, theirs

    def scope(self, attempt: Attempt) -> dict[str, Any]:
        """The ASGI scope of the attempt, signed with the owner's key when it can be."""
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        payload = (
            sigv4.UNSIGNED_PAYLOAD
            if attempt.unsigned_payload
            else hashlib.sha256(attempt.body).hexdigest()
        )
        headers = [("host", host) for host in attempt.hosts]
        headers += [(COPY_SOURCE_HEADER, source) for source in attempt.copy_sources]
        headers += [("x-amz-content-sha256", payload), ("x-amz-date", amz_date)]
        if attempt.body or attempt.method in ("PUT", "POST"):
            headers.append(("content-length", str(len(attempt.body))))
        signed = ";".join(
            sorted({name for name, _ in headers if name == "host" or name.startswith("x-amz-")})
        )
        credential = f"{self.access_key_id}/{amz_date[:8]}/{REGION}/s3/aws4_request"
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "scheme": "http",
            "method": attempt.method,
            "path": unquote(attempt.raw_path),
            "raw_path": attempt.raw_path.encode("utf-8"),
            "query_string": attempt.query.encode("utf-8"),
            "root_path": "",
            "client": ("127.0.0.1", 5555),
            "server": ("127.0.0.1", 9000),
        }

        def with_signature(signature: str) -> list[tuple[bytes, bytes]]:
            authorization = (
                f"{sigv4.ALGORITHM} Credential={credential}, SignedHeaders={signed}, "
                f"Signature={signature}"
            )
            return [
                (name.encode(), value.encode("utf-8"))
                for name, value in [*headers, ("authorization", authorization)]
            ]

        scope["headers"] = with_signature("0" * 64)
        try:
            auth = sigv4.parse(sigv4.Request.from_asgi(scope), region=REGION)
            to_sign = sigv4.string_to_sign(auth, sigv4.canonical_request(auth))
        except sigv4.S3Error:
            # Not signable as sent: the gateway must still refuse it cleanly.
            return scope
        key = sigv4.derive_signing_key(self.secret, amz_date[:8], REGION)
        scope["headers"] = with_signature(sigv4.signature(key, to_sign))
        return scope

    def send(self, scope: dict[str, Any], body: bytes) -> tuple[int, bytes]:
        """Run one request through the gateway; (status, response body)."""
        messages: list[dict[str, Any]] = []
        received = False

        async def receive() -> dict[str, Any]:
            nonlocal received
            if received:
                return {"type": "http.disconnect"}
            received = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        self.loop.run_until_complete(self.gateway(scope, receive, send))
        starts = [m for m in messages if m["type"] == "http.response.start"]
        assert len(starts) == 1, messages
        return starts[0]["status"], b"".join(m.get("body", b"") for m in messages[1:])


def _closing(read):
    def wrapper(*args):
        try:
            return read(*args)
        finally:
            connection.close()

    return wrapper


@pytest.fixture
def world(settings, monkeypatch, owner, outsider, recorder) -> Iterator[World]:
    settings.EXCLOUD_S3_UPSTREAM_URL = recorder.url
    settings.EXCLOUD_S3_ENDPOINT = f"http://{VIRTUAL_HOST}:9000"
    settings.EXCLOUD_S3_REGION = REGION
    settings.EXCLOUD_S3_FAILURE_LIMIT = 0
    # Usage is not under test: never flush it to the broker while the test runs.
    settings.EXCLOUD_USAGE_FLUSH_SECONDS = 3600
    for name in DATABASE_READS:
        monkeypatch.setattr(authority, name, _closing(getattr(authority, name)))
    key, secret = new_key(owner)
    services.adopt_bucket(owner.org, OWN_BUCKET, Actor.system())
    services.adopt_bucket(outsider.org, VICTIM_BUCKET, Actor.system())

    loop = asyncio.new_event_loop()
    world = World(Gateway(), loop, recorder, owner.org, key.id, secret)
    real_check_access = authority.check_access

    def spying_check_access(key_info, operation, owners, address=None) -> None:
        real_check_access(key_info, operation, owners, address)
        world.approvals.append(Approval(operation, dict(owners)))

    monkeypatch.setattr(authority, "check_access", spying_check_access)
    try:
        yield world
    finally:
        world.gateway.usage.drain()
        loop.run_until_complete(world.gateway.aclose())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


# ---------------------------------------------------------------------------------------
# The properties


def _query_names(query: str, *, plus_is_space: bool) -> list[str]:
    names = []
    for part in query.split("&"):
        if not part:
            continue
        name = part.partition("=")[0]
        names.append(unquote(name.replace("+", " ") if plus_is_space else name))
    return sorted(name for name in names if name not in sigv4.PRESIGN_PARAMS)


def _first_segment(path: str) -> str:
    """The bucket a store could read into a path: its first segment, decoded."""
    return unquote(path.removeprefix("/").partition("/")[0]).lower()


def _body_keys(body: bytes) -> list[str]:
    root = ET.fromstring(body)
    return [element.text or "" for element in root.iter() if element.tag.endswith("Key")]


def _check_forwarded(
    attempt: Attempt, forwarded: Received, approved: Operation, ours: set[str]
) -> None:
    """The one request the gateway forwarded names exactly what was approved."""
    assert forwarded.method == attempt.method
    assert forwarded.path == approved.upstream_path().encode("ascii")
    if approved.bucket is None:
        assert approved.name == "ListBuckets"
        assert forwarded.path == b"/"
    else:
        bucket, _, rest = forwarded.path[1:].partition(b"/")
        assert bucket.decode("ascii") == approved.bucket
        if approved.key is None:
            assert rest == b""
        else:
            assert unquote_to_bytes(rest).decode("utf-8") == approved.key
    # The store selects the operation from the query: it sees the parameters the
    # classifier saw. (ListBuckets names no bucket, and the gateway may answer its
    # parameters itself from the whole list.)
    sent = _query_names(attempt.query, plus_is_space=True)
    seen = _query_names(forwarded.query, plus_is_space=False)
    if approved.name == "ListBuckets":
        assert set(seen) <= set(sent)
    else:
        assert seen == sent
    sources = forwarded.headers.get(COPY_SOURCE_HEADER, [])
    if approved.copy_source is None:
        assert sources == []
    else:
        assert sources == [approved.copy_source.header()]
        assert approved.copy_source.bucket in ours
    if approved.name == "DeleteObjects":
        assert forwarded.body == attempt.body
        touched = {(touch.bucket, touch.key) for touch in approved.touches}
        for key in _body_keys(forwarded.body):
            assert (approved.bucket, key) in touched


def _check_approved(approval: Approval, ours: set[str], theirs: set[str]) -> None:
    """What authorize() let through touches only Acme's buckets, or claims a free name."""
    operation = approval.operation
    for touch in operation.touches:
        assert touch.bucket != VICTIM_BUCKET
        if operation.name == authority.CREATE_BUCKET and touch.access == operations.ADMIN:
            assert touch.bucket not in theirs
        else:
            assert touch.bucket in ours


@hypothesis_settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(attempt=attempts())
def test_it_forwards_exactly_the_bucket_and_object_it_authorized(world, attempt):
    # Printed with a failure: the report's own line leaves a composite's value out.
    note(repr(attempt))
    ours, theirs = world.reset()
    status, body = world.send(world.scope(attempt), attempt.body)

    assert status != 500, body
    # 503 would mean the store could not be reached: the gateway sent it something the
    # HTTP client refused.
    assert status < 500 or status == 501, body
    received = list(world.recorder.received)
    # Shown by --hypothesis-show-statistics: how far the examples got.
    event(f"status {status}")
    if world.approvals:
        event(f"approved {world.approvals[-1].operation.name}")
    if received:
        assert world.approvals, "a request reached the store without authorize()"
    for approval in world.approvals:
        _check_approved(approval, ours, theirs)
    for request in received:
        assert _first_segment(request.path.decode("ascii")) != VICTIM_BUCKET, request
        for source in request.headers.get(COPY_SOURCE_HEADER, []):
            assert _first_segment(source.partition("?")[0]) != VICTIM_BUCKET, request
    # The last approval is the operation the gateway proxies (DeleteObjects is approved
    # once for its bucket and again with the names its body holds).
    approved = world.approvals[-1].operation if world.approvals else None
    forwarded = received
    if approved is not None and approved.name == authority.CREATE_BUCKET:
        # CreateBucket (a PUT) of a name Acme does not hold: the gateway asks the store
        # about that name itself, before (is it free?) and after (is it empty?).
        forwarded = [r for r in received if r.method not in ("GET", "HEAD")]
        for check in received:
            if check.method in ("GET", "HEAD"):
                assert approved.bucket not in ours
                assert check.path == approved.upstream_path().encode("ascii")
    assert len(forwarded) <= 1, forwarded
    if forwarded:
        assert approved is not None
        _check_forwarded(attempt, forwarded[0], approved, ours)
