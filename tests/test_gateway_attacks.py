"""Attacks on the gateway's isolation between organisations, sent as raw requests.

Every request here is correctly signed by the attacker's own key (tests/s3_raw.py signs
and sends the target bytes exactly as written), so only the gateway's routing, name
rules and authorization stand between the attacker (Acme) and the victim (Globex). The
victim's bucket is named like the attacker's with one character more, so a gateway that
joins a bucket and a path without a "/" lands in it. After each test the ``world``
fixture checks that nothing of the victim was written, read, listed or deleted.

Runs under both uvicorn HTTP parsers (httptools and h11): they hand the application
different raw targets for the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from audit.models import AuditEvent
from gateway.models import Bucket
from tests.conftest import audit_mark, new_key
from tests.gateway_stack import Upstream, gateway
from tests.s3_raw import UNSIGNED_PAYLOAD, Response, Signer, error_code, send
from tests.test_gateway_e2e import s3_client

pytestmark = pytest.mark.django_db(transaction=True)

# The gateway's public host name: <bucket>.s3.test is virtual-hosted style. Requests go
# to 127.0.0.1 whatever the Host header says.
VIRTUAL_HOST = "s3.test"
# A well-formed access key ID that no key has.
MADE_UP_KEY_ID = "EXC" + "A" * 17
VICTIM_OBJECTS = {
    "pwned.txt": b"globex secret: pwned.txt",
    "a/b.txt": b"globex secret: a/b.txt",
    "with space.txt": b"globex secret: with space.txt",
}
VICTIM_UPLOAD_KEY = "mp.bin"
VICTIM_PART = b"globex secret part " * 64
OWN_OBJECTS = {"mine.txt": b"acme's own object"}
DIRECTORY = None  # a directory in a files() listing

ACCESS_DENIED = (403, "AccessDenied")
INVALID_ARGUMENT = (400, "InvalidArgument")
INVALID_BUCKET_NAME = (400, "InvalidBucketName")


@pytest.fixture(scope="module", params=["httptools", "h11"])
def gw(request, tmp_path_factory, store):
    with gateway(
        tmp_path_factory.mktemp("gw"),
        store,
        endpoint_host=VIRTUAL_HOST,
        http=request.param,
        # Every request here fails on purpose: keep the per-IP failure limit out of the way.
        EXCLOUD_S3_FAILURE_LIMIT="100000",
    ) as running:
        yield running


@dataclass
class World:
    """The attacker's and the victim's keys and buckets, as the gateway sees them."""

    store: Upstream
    port: int
    attacker: Signer
    victim: Signer
    mine: str  # the attacker's bucket
    theirs: str  # the victim's: the attacker's name and one more character
    upload_id: str  # the victim's multipart upload in progress
    victim_parts: list[tuple[int, str, int]]

    def virtual_host(self, bucket: str) -> str:
        return f"{bucket}.{VIRTUAL_HOST}:{self.port}"


def files(root: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and directory (None) under ``root``, by relative path."""
    return {
        path.relative_to(root).as_posix(): DIRECTORY if path.is_dir() else path.read_bytes()
        for path in sorted(root.rglob("*"))
    }


def expected_victim_files() -> dict[str, bytes | None]:
    return {"a": DIRECTORY, **VICTIM_OBJECTS}


def outcome(response: Response) -> tuple[int | None, str | None]:
    return response.status, error_code(response.body)


def refused(response: Response) -> bool:
    """A 4xx answer, or the connection closed without one."""
    return response.status is None or 400 <= response.status < 500


def leaks(response: Response) -> bool:
    return any(secret in response.body for secret in (*VICTIM_OBJECTS.values(), VICTIM_PART))


def delete_body(*keys: str) -> bytes:
    objects = "".join(f"<Object><Key>{escape(key)}</Key></Object>" for key in keys)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{objects}</Delete>'
    ).encode()


def md5_header(body: bytes) -> tuple[str, str]:
    return ("Content-MD5", base64.b64encode(hashlib.md5(body).digest()).decode())


def complete_body(parts: list[tuple[int, str]]) -> bytes:
    inner = "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>" for n, etag in parts
    )
    return f"<CompleteMultipartUpload>{inner}</CompleteMultipartUpload>".encode()


def _victim_parts(s3, bucket: str, upload_id: str) -> list[tuple[int, str, int]]:
    listed = s3.list_parts(Bucket=bucket, Key=VICTIM_UPLOAD_KEY, UploadId=upload_id)
    return [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed.get("Parts", [])]


@pytest.fixture
def world(gw, store, owner, outsider):
    """Acme attacks Globex. Globex's bucket, objects and multipart upload are made through
    the gateway with its own key; on the way out, everything of Globex is checked."""
    attacker_key, attacker_secret = new_key(owner, "attacker")
    victim_key, victim_secret = new_key(outsider, "victim")
    port = int(gw.url.rsplit(":", 1)[1])
    mine = "acme-" + uuid.uuid4().hex[:12]
    theirs = mine + "2"
    victim_s3 = s3_client(gw.url, victim_key.id, victim_secret)
    victim_s3.create_bucket(Bucket=theirs)
    for name, content in VICTIM_OBJECTS.items():
        victim_s3.put_object(Bucket=theirs, Key=name, Body=content)
    upload_id = victim_s3.create_multipart_upload(Bucket=theirs, Key=VICTIM_UPLOAD_KEY)["UploadId"]
    victim_s3.upload_part(
        Bucket=theirs, Key=VICTIM_UPLOAD_KEY, UploadId=upload_id, PartNumber=1, Body=VICTIM_PART
    )
    attacker_s3 = s3_client(gw.url, attacker_key.id, attacker_secret)
    attacker_s3.create_bucket(Bucket=mine)
    for name, content in OWN_OBJECTS.items():
        attacker_s3.put_object(Bucket=mine, Key=name, Body=content)
    victim_row = Bucket.objects.values().get(name=theirs)
    assert files(store.root / theirs) == expected_victim_files()
    assert files(store.root / mine) == OWN_OBJECTS
    world = World(
        store=store,
        port=port,
        attacker=Signer(port, attacker_key.id, attacker_secret),
        victim=Signer(port, victim_key.id, victim_secret),
        mine=mine,
        theirs=theirs,
        upload_id=upload_id,
        victim_parts=_victim_parts(victim_s3, theirs, upload_id),
    )
    assert [(number, size) for number, _, size in world.victim_parts] == [(1, len(VICTIM_PART))]
    mark = audit_mark()

    yield world

    # Nothing of the victim's was written or deleted: the files in the store, the objects
    # through the gateway, the multipart upload in progress, the bucket rows, the trail.
    assert files(store.root / theirs) == expected_victim_files()
    for name, content in VICTIM_OBJECTS.items():
        assert victim_s3.get_object(Bucket=theirs, Key=name)["Body"].read() == content
    assert _victim_parts(victim_s3, theirs, upload_id) == world.victim_parts
    assert Bucket.objects.values().get(name=theirs) == victim_row
    assert sorted(Bucket.objects.values_list("name", "org")) == sorted(
        [(mine, owner.org.pk), (theirs, outsider.org.pk)]
    )
    # Nothing landed in the attacker's bucket either (no copy of the victim's objects).
    assert files(store.root / mine) == OWN_OBJECTS
    # No audit event about the victim's bucket, in the attacker's org or any other: the
    # victim did nothing during the test.
    about_victim = [
        (event.org_id, event.action, event.target_id)
        for event in AuditEvent.objects.filter(pk__gt=mark)
        if theirs in event.target_id or theirs in str(event.details)
    ]
    assert about_victim == []


def _mismatches(world: World, cases, expected, signer: Signer | None = None) -> dict:
    """Send each (method, target[, options]) and collect those not answered ``expected``
    (one (status, code) pair or a set of them; a HEAD answer has no code), or leaking
    any of the victim's bytes. The result names each case by its index and request line."""
    accepted = expected if isinstance(expected, set) else {expected}
    signer = signer or world.attacker
    wrong = {}
    for index, (method, target, *options) in enumerate(cases):
        response = signer.request(method, target, **(options[0] if options else {}))
        got = outcome(response)
        if method == "HEAD":
            accepted_here = {(status, None) for status, _ in accepted}
        else:
            accepted_here = accepted
        if got not in accepted_here or leaks(response):
            wrong[f"{index}: {method} {target}"] = (*got, "LEAKED" if leaks(response) else "")
    return wrong


def test_it_refuses_encoded_separators_in_the_bucket_segment(world):
    mine, theirs = world.mine, world.theirs
    body = delete_body("pwned.txt")
    cases = [
        ("GET", f"/{theirs}%2Fpwned.txt"),
        ("GET", f"/{theirs}%2fpwned.txt"),
        ("HEAD", f"/{theirs}%2Fpwned.txt"),
        ("GET", f"/{mine}%2F..%2F{theirs}/pwned.txt"),
        ("GET", f"/{mine}%2f..%2f{theirs}%2fpwned.txt"),
        ("GET", f"/{mine}%2F%2E%2E%2F{theirs}/pwned.txt"),
        ("PUT", f"/{mine}%2F..%2F{theirs}/planted.txt", {"body": b"planted"}),
        ("PUT", f"/{mine}%2F..%2F{theirs}"),
        ("DELETE", f"/{mine}%2F..%2F{theirs}/pwned.txt"),
        ("DELETE", f"/{mine}%2F..%2F{theirs}"),
        ("POST", f"/{mine}%2F..%2F{theirs}?delete", {"body": body, "headers": [md5_header(body)]}),
        ("GET", f"/{theirs}%5Cpwned.txt"),
        ("GET", f"/{theirs}%00/pwned.txt"),
        ("GET", f"/{mine}%00/mine.txt"),
        ("GET", f"/..%2F{theirs}/pwned.txt"),
        ("GET", f"/../{theirs}/pwned.txt"),
        ("GET", f"/%2E%2E/{theirs}/pwned.txt"),
        ("GET", f"/./{theirs}/pwned.txt"),
    ]

    assert _mismatches(world, cases, INVALID_BUCKET_NAME) == {}


def test_it_refuses_dot_segments_in_object_names_literal_or_encoded(world):
    mine, theirs = world.mine, world.theirs
    planted = {"body": b"planted"}
    cases = [
        ("GET", f"/{mine}/../{theirs}/pwned.txt"),
        ("HEAD", f"/{mine}/../{theirs}/pwned.txt"),
        ("GET", f"/{mine}/%2E%2E/{theirs}/pwned.txt"),
        ("GET", f"/{mine}/%2e%2e/{theirs}/pwned.txt"),
        ("GET", f"/{mine}/..%2F{theirs}%2Fpwned.txt"),
        ("GET", f"/{mine}/..%2f{theirs}%2fpwned.txt"),
        ("GET", f"/{mine}/%2E%2E%2F{theirs}%2Fa%2Fb.txt"),
        ("GET", f"/{mine}/x/../../{theirs}/pwned.txt"),
        ("GET", f"/{mine}/x/%2E%2E/%2E%2E/{theirs}/pwned.txt"),
        ("GET", f"/{mine}/./mine.txt"),
        ("GET", f"/{mine}/%2E/mine.txt"),
        ("GET", f"/{mine}/.%2Fmine.txt"),
        ("GET", f"/{mine}/.."),
        ("GET", f"/{mine}/%2E%2E"),
        ("PUT", f"/{mine}/../{theirs}/planted.txt", planted),
        ("PUT", f"/{mine}/..%2F{theirs}%2Fplanted.txt", planted),
        ("PUT", f"/{mine}/%2E%2E/{theirs}/pwned.txt", planted),
        ("PUT", f"/{mine}/./planted.txt", planted),
        ("DELETE", f"/{mine}/../{theirs}/pwned.txt"),
        ("DELETE", f"/{mine}/..%2F{theirs}%2Fa%2Fb.txt"),
        ("POST", f"/{mine}/..%2F{theirs}%2F{VICTIM_UPLOAD_KEY}?uploads"),
        ("GET", f"/{mine}/..%2F{theirs}%2F{VICTIM_UPLOAD_KEY}?uploadId={world.upload_id}"),
    ]

    assert _mismatches(world, cases, INVALID_ARGUMENT) == {}


def test_it_refuses_empty_segments_nul_and_invalid_utf8_in_object_names(world):
    mine = world.mine
    planted = {"body": b"planted"}
    cases = [
        ("PUT", f"/{mine}//mine.txt", planted),
        ("GET", f"/{mine}//mine.txt"),
        ("PUT", f"/{mine}/a//b.txt", planted),
        ("PUT", f"/{mine}/a%2F%2Fb.txt", planted),
        ("PUT", f"/{mine}/x%00y.txt", planted),
        ("PUT", f"/{mine}/%00", planted),
        ("GET", f"/{mine}/mine.txt%00"),
        ("PUT", f"/{mine}/%FF%FE.txt", planted),
        # Overlong UTF-8 for ".." and "/": a decoder that tolerates them finds a dot segment.
        ("PUT", f"/{mine}/%C0%AE%C0%AE%C0%AFplanted.txt", planted),
    ]

    assert _mismatches(world, cases, INVALID_ARGUMENT) == {}


def test_it_refuses_object_names_longer_than_1024_bytes(world):
    mine = world.mine
    long_ascii = "k" * 1025
    long_utf8 = "%C3%A9" * 513  # "é" is two bytes: 1026 in all
    cases = [
        ("PUT", f"/{mine}/{long_ascii}", {"body": b"x"}),
        ("GET", f"/{mine}/{long_ascii}"),
        ("PUT", f"/{mine}/{long_utf8}", {"body": b"x"}),
    ]

    assert _mismatches(world, cases, (400, "KeyTooLongError")) == {}


def test_it_refuses_a_trailing_slash_name_the_store_would_keep_as_another(world):
    # The embedded store keeps "dir/" as the file "dir": one object under two names.
    mine = world.mine
    cases = [
        ("PUT", f"/{mine}/dir/", {"body": b"folder marker"}),
        ("PUT", f"/{mine}/dir%2F", {"body": b"folder marker"}),
        ("GET", f"/{mine}/dir/"),
        ("DELETE", f"/{mine}/dir/"),
    ]
    assert _mismatches(world, cases, (400, "InvalidArgument")) == {}
    assert world.attacker.request("GET", f"/{mine}/dir").status == 404
    mine_listed = world.attacker.request("GET", f"/{mine}?list-type=2")
    assert mine_listed.status == 200
    assert re.findall(rb"<Key>([^<]*)</Key>", mine_listed.body) == [b"mine.txt"]


INVALID_NAMES = [
    "{theirs_upper}",
    "{mine_upper}",
    "{theirs}.",
    "{theirs}-",
    "-{theirs}",
    ".{theirs}",
    "{theirs_dots}",
    "{theirs}_x",
    "192.168.5.4",
    "10.0.0.1",
    "xn--{theirs}",
    "{theirs}-s3alias",
    "ab",
    "a" * 64,
    "{theirs}%41",
]


def _invalid_names(world: World) -> list[str]:
    values = {
        "mine": world.mine,
        "theirs": world.theirs,
        "theirs_upper": world.theirs.upper(),
        "mine_upper": world.mine.upper(),
        "theirs_dots": world.theirs.replace("-", ".."),
    }
    return [name.format(**values) for name in INVALID_NAMES]


def test_it_refuses_invalid_bucket_names(world):
    cases = []
    for name in _invalid_names(world):
        cases += [
            ("GET", f"/{name}/pwned.txt"),
            ("PUT", f"/{name}/planted.txt", {"body": b"planted"}),
            ("PUT", f"/{name}"),
            ("GET", f"/{name}"),
        ]
    host = world.virtual_host
    cases += [
        ("GET", "/pwned.txt", {"headers": [("Host", host(world.theirs + "."))]}),
        ("PUT", "/", {"headers": [("Host", host(world.theirs + "."))]}),
        ("GET", "/x", {"headers": [("Host", host("192.168.5.4"))]}),
        ("GET", "/x", {"headers": [("Host", host("xn--" + world.theirs))]}),
    ]

    assert _mismatches(world, cases, INVALID_BUCKET_NAME) == {}
    made = {path.name for path in world.store.root.iterdir()}
    assert not made & {name for name in _invalid_names(world)}


def test_it_refuses_invalid_bucket_names_before_looking_the_key_up(world):
    nobody = Signer(world.port, MADE_UP_KEY_ID, "x" * 40)
    cases = [("GET", f"/{name}/pwned.txt") for name in _invalid_names(world)[:6] + ["192.168.5.4"]]
    cases += [
        ("GET", f"/{world.theirs}%2Fpwned.txt"),
        ("PUT", f"/{world.mine}%2F..%2F{world.theirs}"),
    ]

    assert _mismatches(world, cases, INVALID_BUCKET_NAME, signer=nobody) == {}


def test_it_never_serves_a_request_target_without_a_leading_slash(world):
    """``PUT 2/g.txt`` to <mine>.s3.test: joined without a "/", that is <mine>2/g.txt, the
    victim's bucket."""
    own_host = world.virtual_host(world.mine)
    path_host = world.attacker.host
    absolute = f"http://{own_host}"
    cases = [
        ("PUT", "2/g.txt", own_host, b"planted"),
        ("GET", "2/pwned.txt", own_host, b""),
        ("DELETE", "2/pwned.txt", own_host, b""),
        ("PUT", "2", own_host, b""),
        ("GET", f"{world.theirs}/pwned.txt", path_host, b""),
        ("PUT", f"{world.theirs}/g.txt", path_host, b"planted"),
        ("GET", f"{absolute}/../{world.theirs}/pwned.txt", own_host, b""),
        ("GET", f"http://{path_host}/{world.theirs}/pwned.txt", path_host, b""),
    ]
    wrong = {}
    for method, target, host, body in cases:
        response = world.attacker.request(method, target, headers=[("Host", host)], body=body)
        if not refused(response) or leaks(response):
            wrong[f"{method} {target}"] = (*outcome(response), "LEAKED" if leaks(response) else "")

    assert wrong == {}
    assert not (world.store.root / world.theirs / "g.txt").exists()


def test_it_refuses_virtual_hosted_requests_for_another_orgs_bucket(world):
    host = [("Host", world.virtual_host(world.theirs))]
    body = delete_body("pwned.txt")
    upload = f"uploadId={world.upload_id}"
    cases = [
        ("GET", "/pwned.txt", {"headers": host}),
        ("HEAD", "/pwned.txt", {"headers": host}),
        ("GET", "/a/b.txt", {"headers": host}),
        ("PUT", "/planted.txt", {"headers": host, "body": b"planted"}),
        ("PUT", "/pwned.txt", {"headers": host, "body": b"overwritten"}),
        ("DELETE", "/pwned.txt", {"headers": host}),
        ("GET", "/", {"headers": host}),
        ("GET", "/?list-type=2", {"headers": host}),
        ("GET", "/?uploads", {"headers": host}),
        ("HEAD", "/", {"headers": host}),
        ("POST", "/?delete", {"headers": [*host, md5_header(body)], "body": body}),
        ("DELETE", "/", {"headers": host}),
        ("POST", f"/{VICTIM_UPLOAD_KEY}?uploads", {"headers": host}),
        ("GET", f"/{VICTIM_UPLOAD_KEY}?{upload}", {"headers": host}),
        ("DELETE", f"/{VICTIM_UPLOAD_KEY}?{upload}", {"headers": host}),
    ]
    assert _mismatches(world, cases, ACCESS_DENIED) == {}

    creates = [("PUT", "/", {"headers": host})]
    assert _mismatches(world, creates, (409, "BucketAlreadyExists")) == {}
    # Host names are case-insensitive: an upper-case one is the same bucket, or refused.
    upper = [
        ("GET", "/pwned.txt", {"headers": [("Host", world.virtual_host(world.theirs.upper()))]})
    ]
    assert _mismatches(world, upper, {ACCESS_DENIED, INVALID_BUCKET_NAME}) == {}
    # From the attacker's own virtual host, a dot segment climbs to the victim's bucket.
    own = [("Host", world.virtual_host(world.mine))]
    climbs = [
        ("GET", f"/../{world.theirs}/pwned.txt", {"headers": own}),
        ("GET", f"/%2E%2E%2F{world.theirs}%2Fpwned.txt", {"headers": own}),
        ("PUT", f"/../{world.theirs}/planted.txt", {"headers": own, "body": b"planted"}),
    ]
    assert _mismatches(world, climbs, INVALID_ARGUMENT) == {}


def test_it_refuses_every_operation_on_another_orgs_bucket(world):
    theirs = world.theirs
    body = delete_body("pwned.txt", "a/b.txt")
    cases = [
        ("GET", f"/{theirs}/pwned.txt"),
        ("GET", f"/{theirs}/pwned.txt", {"headers": [("Range", "bytes=0-5")]}),
        ("HEAD", f"/{theirs}/pwned.txt"),
        ("GET", f"/{theirs}/with%20space.txt"),
        ("GET", f"/{theirs}/a/b.txt"),
        ("PUT", f"/{theirs}/planted.txt", {"body": b"planted"}),
        ("PUT", f"/{theirs}/pwned.txt", {"body": b"overwritten"}),
        (
            "PUT",
            f"/{theirs}/pwned.txt",
            {"body": b"overwritten", "payload_hash": UNSIGNED_PAYLOAD},
        ),
        ("DELETE", f"/{theirs}/pwned.txt"),
        ("DELETE", f"/{theirs}/a/b.txt"),
        ("GET", f"/{theirs}"),
        ("GET", f"/{theirs}/"),
        ("GET", f"/{theirs}?list-type=2"),
        ("GET", f"/{theirs}?list-type=2&prefix=a%2F"),
        ("GET", f"/{theirs}?uploads"),
        ("HEAD", f"/{theirs}"),
        ("POST", f"/{theirs}?delete", {"body": body, "headers": [md5_header(body)]}),
        ("DELETE", f"/{theirs}"),
        ("POST", f"/{theirs}/planted.bin?uploads"),
    ]
    assert _mismatches(world, cases, ACCESS_DENIED) == {}

    creates = [("PUT", f"/{theirs}"), ("PUT", f"/{theirs}/")]
    assert _mismatches(world, creates, (409, "BucketAlreadyExists")) == {}


def test_it_refuses_multipart_calls_on_another_orgs_upload(world):
    theirs, mine, upload = world.theirs, world.mine, world.upload_id
    etag = world.victim_parts[0][1]
    complete = complete_body([(1, etag)])
    cases = [
        (
            "PUT",
            f"/{theirs}/{VICTIM_UPLOAD_KEY}?partNumber=2&uploadId={upload}",
            {"body": b"p" * 64},
        ),
        ("PUT", f"/{theirs}/{VICTIM_UPLOAD_KEY}?partNumber=1&uploadId={upload}", {"body": b"p"}),
        ("POST", f"/{theirs}/{VICTIM_UPLOAD_KEY}?uploadId={upload}", {"body": complete}),
        ("DELETE", f"/{theirs}/{VICTIM_UPLOAD_KEY}?uploadId={upload}"),
        ("GET", f"/{theirs}/{VICTIM_UPLOAD_KEY}?uploadId={upload}"),
        ("GET", f"/{theirs}?uploads"),
    ]
    assert _mismatches(world, cases, ACCESS_DENIED) == {}

    # The victim's upload ID used on the attacker's own bucket: the store must not find
    # the upload there (an upload ID is no capability).
    wrong = {}
    for method, target, body in [
        ("GET", f"/{mine}/{VICTIM_UPLOAD_KEY}?uploadId={upload}", b""),
        ("PUT", f"/{mine}/{VICTIM_UPLOAD_KEY}?partNumber=2&uploadId={upload}", b"p" * 64),
        ("POST", f"/{mine}/{VICTIM_UPLOAD_KEY}?uploadId={upload}", complete),
        ("DELETE", f"/{mine}/{VICTIM_UPLOAD_KEY}?uploadId={upload}", b""),
    ]:
        response = world.attacker.request(method, target, body=body)
        if not refused(response) or leaks(response) or etag.strip('"').encode() in response.body:
            wrong[f"{method} {target}"] = outcome(response)
    assert wrong == {}


def test_it_refuses_copies_across_orgs(world):
    mine, theirs = world.mine, world.theirs

    def copy(source: str, target: str = f"/{mine}/stolen.txt"):
        return ("PUT", target, {"headers": [("x-amz-copy-source", source)]})

    denied = [
        copy(f"/{theirs}/pwned.txt"),
        copy(f"{theirs}/pwned.txt"),
        copy(f"/{theirs}/a%2Fb.txt"),
        copy(f"/{theirs}/a/b.txt"),
        copy(f"/{theirs}/with%20space.txt"),
        copy(f"/{theirs}/pwned.txt?versionId=null"),
        # Into the victim's bucket from the attacker's own object.
        copy(f"/{mine}/mine.txt", f"/{theirs}/planted.txt"),
        copy(f"/{mine}/mine.txt", f"/{theirs}/pwned.txt"),
        # The victim's object onto itself, with new metadata.
        (
            "PUT",
            f"/{theirs}/pwned.txt",
            {
                "headers": [
                    ("x-amz-copy-source", f"/{theirs}/pwned.txt"),
                    ("x-amz-metadata-directive", "REPLACE"),
                ]
            },
        ),
    ]
    assert _mismatches(world, denied, ACCESS_DENIED) == {}

    bad_names = [copy(f"/{theirs.upper()}/pwned.txt"), copy(f"/{theirs}./pwned.txt")]
    assert _mismatches(world, bad_names, INVALID_BUCKET_NAME) == {}

    # Climbing out of the attacker's bucket in the copy source: refused, however spelled.
    climbs = [
        copy(f"/{mine}/../{theirs}/pwned.txt"),
        copy(f"/{mine}/..%2F{theirs}%2Fpwned.txt"),
        copy(f"/{mine}/%2E%2E/{theirs}/pwned.txt"),
        copy(f"/{mine}%2F..%2F{theirs}/pwned.txt"),
        copy(f"/{theirs}%2Fpwned.txt"),
    ]
    wrong = {}
    for method, target, options in climbs:
        response = world.attacker.request(method, target, **options)
        if response.status not in (400, 403) or leaks(response):
            wrong[options["headers"][0][1]] = outcome(response)
    assert wrong == {}

    # UploadPartCopy into the attacker's own upload, from the victim's object.
    created = world.attacker.request("POST", f"/{mine}/own.bin?uploads")
    assert created.status == 200, outcome(created)
    own_upload = re.search(rb"<UploadId>([^<]+)</UploadId>", created.body).group(1).decode()
    part_copies = [
        copy(f"/{theirs}/pwned.txt", f"/{mine}/own.bin?partNumber=1&uploadId={own_upload}"),
        copy(
            f"/{theirs}/{VICTIM_UPLOAD_KEY}", f"/{mine}/own.bin?partNumber=2&uploadId={own_upload}"
        ),
    ]
    assert _mismatches(world, part_copies, ACCESS_DENIED) == {}
    aborted = world.attacker.request("DELETE", f"/{mine}/own.bin?uploadId={own_upload}")
    assert aborted.status == 204, outcome(aborted)


DELETE_OBJECTS_CLIMBS = [
    "../{theirs}/pwned.txt",
    "/../{theirs}/pwned.txt",
    "./../{theirs}/a/b.txt",
    "a/../../{theirs}/with space.txt",
    "%2F../{theirs}/pwned.txt",
    "..%2F{theirs}%2Fpwned.txt",
    "%2F..%2F{theirs}%2Fpwned.txt",
    "%2E%2E/{theirs}/pwned.txt",
    "..\\{theirs}\\pwned.txt",
    "../{theirs}",
    "../{theirs}/a",
]


def test_it_deletes_nothing_of_another_org_through_delete_objects_keys(world):
    mine, theirs = world.mine, world.theirs
    victim_dir = world.store.root / theirs
    wrong = {}
    for template in DELETE_OBJECTS_CLIMBS:
        key = template.format(theirs=theirs)
        body = delete_body(key)
        response = world.attacker.request(
            "POST", f"/{mine}?delete", body=body, headers=[md5_header(body)]
        )
        intact = files(victim_dir) == expected_victim_files()
        if response.status not in (200, 400) or not intact:
            wrong[key] = (outcome(response), intact)
    assert wrong == {}

    # The same request with an honest key does delete, so the refusals above are about
    # the keys and not the request.
    assert world.attacker.request("PUT", f"/{mine}/scratch.txt", body=b"scratch").status == 200
    body = delete_body("scratch.txt")
    deleted = world.attacker.request(
        "POST", f"/{mine}?delete", body=body, headers=[md5_header(body)]
    )
    assert deleted.status == 200, outcome(deleted)
    assert re.search(rb"<Deleted>\s*<Key>scratch.txt</Key>", deleted.body)
    assert not (world.store.root / mine / "scratch.txt").exists()


def test_it_keeps_a_store_bucket_that_no_org_owns_closed(world):
    stray = world.mine + "-stray"
    (world.store.root / stray).mkdir()
    (world.store.root / stray / "left.txt").write_bytes(b"left behind")

    created = world.attacker.request("PUT", f"/{stray}")
    assert outcome(created) == (409, "BucketAlreadyExists")
    hosted = world.attacker.request("PUT", "/", headers=[("Host", world.virtual_host(stray))])
    assert outcome(hosted) == (409, "BucketAlreadyExists")
    assert not Bucket.objects.filter(name=stray).exists()
    cases = [
        ("GET", f"/{stray}/left.txt"),
        ("HEAD", f"/{stray}/left.txt"),
        ("GET", f"/{stray}"),
        ("GET", f"/{stray}?list-type=2"),
        ("HEAD", f"/{stray}"),
        ("PUT", f"/{stray}/planted.txt", {"body": b"planted"}),
        ("DELETE", f"/{stray}/left.txt"),
        ("DELETE", f"/{stray}"),
    ]
    # A name no org holds is NoSuchBucket to everyone, whatever the store has under it.
    wrong = _mismatches(world, cases, (404, "NoSuchBucket"))
    assert wrong == {}
    assert b"left behind" not in created.body
    assert files(world.store.root / stray) == {"left.txt": b"left behind"}

    # The victim's own bucket, asked for by the attacker.
    taken = world.attacker.request("PUT", f"/{world.theirs}")
    assert outcome(taken) == (409, "BucketAlreadyExists")


def test_it_refuses_repeated_single_value_headers(world):
    mine, theirs = world.mine, world.theirs
    now = world.attacker.build("GET", f"/{mine}/mine.txt")
    signed_auth = re.search(rb"Authorization: ([^\r]+)", now).group(1).decode()
    amz_date = re.search(rb"X-Amz-Date: ([^\r]+)", now).group(1).decode()
    earlier = amz_date[:9] + "000000Z"
    body = b"duplicate"
    body_hash = hashlib.sha256(body).hexdigest()

    def twice(name: str, first: str, second: str) -> list[tuple[str, str]]:
        return [(name, first), (name, second)]

    cases = [
        ("GET", f"/{mine}/mine.txt", {"unsigned": [("Authorization", signed_auth)]}),
        ("GET", f"/{mine}/mine.txt", {"headers": twice("X-Amz-Date", amz_date, earlier)}),
        (
            "PUT",
            f"/{mine}/duplicate.txt",
            {
                "body": body,
                "headers": twice("X-Amz-Content-Sha256", body_hash, UNSIGNED_PAYLOAD),
                "payload_hash": body_hash,
            },
        ),
        (
            "PUT",
            f"/{mine}/stolen.txt",
            {"headers": twice("x-amz-copy-source", f"/{mine}/mine.txt", f"/{theirs}/pwned.txt")},
        ),
        (
            "PUT",
            f"/{mine}/stolen.txt",
            {"headers": twice("x-amz-copy-source", f"/{theirs}/pwned.txt", f"/{mine}/mine.txt")},
        ),
    ]
    assert _mismatches(world, cases, INVALID_ARGUMENT) == {}

    hosts = [
        (
            "GET",
            "/pwned.txt",
            {"headers": twice("Host", world.virtual_host(mine), world.virtual_host(theirs))},
        ),
        (
            "GET",
            f"/{mine}/mine.txt",
            {"headers": twice("Host", world.attacker.host, world.virtual_host(theirs))},
        ),
    ]
    # h11 refuses a second Host header itself, with a plain 400 and no S3 code.
    assert _mismatches(world, hosts, {INVALID_ARGUMENT, (400, None)}) == {}


def test_it_answers_not_implemented_for_unsupported_operations(world):
    mine = world.mine
    policy = (
        b'{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*",'
        b'"Action":"s3:*","Resource":"arn:aws:s3:::*"}]}'
    )
    public = {"headers": [("x-amz-acl", "public-read-write")]}
    cases = [
        ("PUT", f"/{mine}?policy", {"body": policy}),
        ("DELETE", f"/{mine}?policy"),
        ("PUT", f"/{mine}?acl", public),
        ("PUT", f"/{mine}/mine.txt?acl", public),
        ("POST", f"/{mine}/mine.txt", {"body": b"posted"}),
        ("POST", f"/{mine}/new.txt", {"body": b"posted"}),
        ("GET", f"/{mine}/mine.txt?torrent"),
        ("GET", f"/{mine}?torrent"),
        ("PUT", f"/{mine}?website", {"body": b"<WebsiteConfiguration/>"}),
    ]

    assert _mismatches(world, cases, (501, "NotImplemented")) == {}
    mine_listed = world.attacker.request("GET", f"/{mine}?list-type=2")
    assert re.findall(rb"<Key>([^<]*)</Key>", mine_listed.body) == [b"mine.txt"]


def test_it_answers_the_same_raw_requests_honestly_for_their_owner(world):
    """The raw client itself works: the victim's own key reads what the attacker cannot."""
    got = world.victim.request("GET", f"/{world.theirs}/with%20space.txt")
    assert (got.status, got.body) == (200, VICTIM_OBJECTS["with space.txt"])
    hosted = world.victim.request(
        "GET", "/a/b.txt", headers=[("Host", world.virtual_host(world.theirs))]
    )
    assert (hosted.status, hosted.body) == (200, VICTIM_OBJECTS["a/b.txt"])
    listed = world.victim.request("GET", f"/{world.theirs}?list-type=2")
    assert listed.status == 200
    assert b"<Key>pwned.txt</Key>" in listed.body
    mine = world.attacker.request("GET", f"/{world.mine}/mine.txt", payload_hash=UNSIGNED_PAYLOAD)
    assert (mine.status, mine.body) == (200, OWN_OBJECTS["mine.txt"])
    nothing = send(world.port, b"GET /" + world.theirs.encode() + b"/pwned.txt HTTP/1.1\r\n\r\n")
    assert refused(nothing) and not leaks(nothing)
