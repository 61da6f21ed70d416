"""Browser uploads through the gateway: POST Object forms signed with a SigV4 POST policy,
as boto3's generate_presigned_post makes them, posted as multipart form data.

Every refusal is checked twice: S3's status and error code, and the store's own directory
(``store.root/<bucket>``), which must hold no object afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import requests
import urllib3
from django.conf import settings

from audit.trail import Actor
from gateway import sigv4
from gateway.post_object import PART_BYTES
from keys.scope import READ_ONLY, READ_WRITE, Scope
from keys.services import narrow_key_scope, revoke_key
from tests.conftest import new_key
from tests.gateway_stack import gateway
from tests.test_gateway_e2e import bucket_name, s3_client
from tests.test_gateway_revocation import send_changing_midway

pytestmark = pytest.mark.django_db(transaction=True)

KEY_TEMPLATE = "uploads/${filename}"
PREFIX = "uploads/"
MAX_BYTES = 1000
BIG_FILE_BYTES = 200 * 1000 * 1000
READ_BYTES = 1024 * 1024
# The gateway holds at most one 8 MiB piece of an upload and a copy or two of it on its
# way to the store; a gateway that held the file would grow by the file's 200 MB.
RSS_GROWTH_LIMIT_KB = 40 * 1024
RSS_SAMPLE_SECONDS = 0.2


@pytest.fixture(scope="module")
def gw(tmp_path_factory, store):
    with gateway(tmp_path_factory.mktemp("gw"), store) as running:
        yield running


@pytest.fixture
def own(gw, owner):
    """A key of the owner's, a boto3 client with it, and a bucket of the owner's org."""
    key, secret = new_key(owner)
    s3 = s3_client(gw.url, key.id, secret)
    bucket = bucket_name()
    s3.create_bucket(Bucket=bucket)
    return key, secret, s3, bucket


def _presigned_post(
    s3,
    bucket: str,
    *,
    key: str = KEY_TEMPLATE,
    fields: dict[str, str] | None = None,
    conditions: list | None = None,
    max_bytes: int = MAX_BYTES,
    expires: int = 300,
) -> dict:
    """generate_presigned_post for keys under PREFIX, 1 to ``max_bytes`` long, with the
    extra ``fields`` and ``conditions``."""
    return s3.generate_presigned_post(
        bucket,
        key,
        Fields=fields,
        Conditions=[
            ["starts-with", "$key", PREFIX],
            ["content-length-range", 1, max_bytes],
            *(conditions or []),
        ],
        ExpiresIn=expires,
    )


def _post(
    url: str, fields: dict[str, str], filename: str, body: bytes, **options
) -> requests.Response:
    return requests.post(
        url, data=fields, files={"file": (filename, body)}, allow_redirects=False, **options
    )


def _post_raw(url: str, parts: list[tuple[str, str | tuple[str, bytes]]]) -> requests.Response:
    """Post a multipart form of exactly these parts, in this order (requests would put
    every file after every field)."""
    body, content_type = urllib3.encode_multipart_formdata(parts)
    return requests.post(url, data=body, headers={"Content-Type": content_type})


def _error(answer: requests.Response) -> tuple[int, str, str]:
    """(status, S3 error code, message) of an error answer."""
    root = ET.fromstring(answer.content)
    return answer.status_code, root.findtext("Code") or "", root.findtext("Message") or ""


def _objects(store, bucket: str) -> list[str]:
    """Every file the store holds for ``bucket``, relative to the bucket's directory."""
    root = store.root / bucket
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def _signed_form(
    key_id: str, secret: str, bucket: str, expiration: datetime, object_key: str
) -> dict[str, str]:
    """A form signed here, as boto3 signs one, with a policy expiring at ``expiration``
    (boto3 only signs policies that expire in the future)."""
    amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    region = settings.EXCLOUD_S3_REGION
    credential = f"{key_id}/{date}/{region}/s3/aws4_request"
    document = {
        "expiration": expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "conditions": [
            {"bucket": bucket},
            ["starts-with", "$key", PREFIX],
            {"x-amz-algorithm": sigv4.ALGORITHM},
            {"x-amz-credential": credential},
            {"x-amz-date": amz_date},
        ],
    }
    policy = base64.b64encode(json.dumps(document).encode()).decode()
    signing_key = sigv4.derive_signing_key(secret, date, region)
    return {
        "key": object_key,
        "x-amz-algorithm": sigv4.ALGORITHM,
        "x-amz-credential": credential,
        "x-amz-date": amz_date,
        "policy": policy,
        "x-amz-signature": sigv4.signature(signing_key, policy),
    }


def test_it_stores_a_file_posted_with_a_presigned_post(gw, store, owner):
    key, secret = new_key(owner)
    s3 = s3_client(gw.url, key.id, secret)
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    post = s3.generate_presigned_post(
        name,
        "uploads/${filename}",
        Conditions=[["starts-with", "$key", "uploads/"], ["content-length-range", 1, 1000]],
        ExpiresIn=300,
    )

    answer = requests.post(
        post["url"], data=post["fields"], files={"file": ("hello.txt", b"hello, form")}
    )

    assert answer.status_code == 204, answer.text
    stored = s3.get_object(Bucket=name, Key="uploads/hello.txt")
    assert stored["Body"].read() == b"hello, form"
    assert (store.root / name / "uploads" / "hello.txt").read_bytes() == b"hello, form"


def test_it_stores_a_binary_file_under_a_filename_with_spaces_and_unicode(store, own):
    _, _, s3, bucket = own
    # Every byte value, CR LF and dashes that look like a boundary among them.
    data = bytes(range(256)) * 8 + b"\r\n--\r\n--" + os.urandom(100_000)
    post = _presigned_post(s3, bucket, max_bytes=len(data))

    answer = _post(post["url"], post["fields"], "Ünïcode report 2026 (final).bin", data)

    assert answer.status_code == 204, answer.text
    key = "uploads/Ünïcode report 2026 (final).bin"
    assert answer.headers["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
    assert (store.root / bucket / key).read_bytes() == data
    assert _objects(store, bucket) == [key]


def test_it_answers_201_with_a_post_response_when_asked(store, own):
    _, _, s3, bucket = own
    post = _presigned_post(
        s3,
        bucket,
        fields={"success_action_status": "201"},
        conditions=[{"success_action_status": "201"}],
    )

    answer = _post(post["url"], post["fields"], "created.txt", b"created")

    assert answer.status_code == 201, answer.text
    assert answer.headers["Content-Type"] == "application/xml"
    response = ET.fromstring(answer.content)
    etag = f'"{hashlib.md5(b"created").hexdigest()}"'
    assert response.tag == "PostResponse"
    assert response.findtext("Bucket") == bucket
    assert response.findtext("Key") == "uploads/created.txt"
    assert response.findtext("ETag") == etag
    assert response.findtext("Location").endswith(f"/{bucket}/uploads/created.txt")
    assert s3.head_object(Bucket=bucket, Key="uploads/created.txt")["ETag"] == etag


def test_it_answers_200_with_no_body_when_asked(store, own):
    _, _, s3, bucket = own
    post = _presigned_post(
        s3,
        bucket,
        fields={"success_action_status": "200"},
        conditions=[{"success_action_status": "200"}],
    )

    answer = _post(post["url"], post["fields"], "ok.txt", b"ok")

    assert answer.status_code == 200, answer.text
    assert answer.content == b""
    assert (store.root / bucket / "uploads" / "ok.txt").read_bytes() == b"ok"


def test_it_redirects_to_success_action_redirect_with_bucket_key_and_etag(store, own):
    _, _, s3, bucket = own
    target = "https://app.example/uploaded?from=form"
    post = _presigned_post(
        s3,
        bucket,
        fields={"success_action_redirect": target},
        conditions=[{"success_action_redirect": target}],
    )

    answer = _post(post["url"], post["fields"], "my photo é.jpg", b"jpeg bytes")

    assert answer.status_code == 303, answer.text
    location = urlsplit(answer.headers["Location"])
    assert (location.scheme, location.netloc, location.path) == (
        "https",
        "app.example",
        "/uploaded",
    )
    assert parse_qs(location.query) == {
        "from": ["form"],
        "bucket": [bucket],
        "key": ["uploads/my photo é.jpg"],
        "etag": [f'"{hashlib.md5(b"jpeg bytes").hexdigest()}"'],
    }
    assert (store.root / bucket / "uploads" / "my photo é.jpg").read_bytes() == b"jpeg bytes"


# One size goes to the store in one PUT, the other as a multipart upload of two parts.
@pytest.mark.parametrize("size", [11, PART_BYTES + 1], ids=["put", "multipart"])
def test_it_stores_content_type_and_metadata_fields_with_the_object(store, own, size):
    _, _, s3, bucket = own
    data = os.urandom(size)
    post = _presigned_post(
        s3,
        bucket,
        fields={"Content-Type": "image/png", "x-amz-meta-color": "blue"},
        conditions=[["starts-with", "$Content-Type", "image/"], {"x-amz-meta-color": "blue"}],
        max_bytes=size,
    )

    # The form's Content-Type field wins over the file part's own.
    answer = requests.post(
        post["url"], data=post["fields"], files={"file": ("pixel.png", data, "text/plain")}
    )

    assert answer.status_code == 204, answer.text
    head = s3.head_object(Bucket=bucket, Key="uploads/pixel.png")
    assert head["ContentType"] == "image/png"
    assert head["Metadata"] == {"color": "blue"}
    assert head["ContentLength"] == size
    assert (store.root / bucket / "uploads" / "pixel.png").read_bytes() == data


def post_in_two_parts(s3, bucket: str):
    """POST a file one byte over a part to ``uploads/parts.bin``: (the answer, the data),
    the answer checked to carry a two-part upload's ETag."""
    data = os.urandom(PART_BYTES + 1)
    post = _presigned_post(
        s3,
        bucket,
        fields={"success_action_status": "201"},
        conditions=[{"success_action_status": "201"}],
        max_bytes=len(data),
    )

    answer = _post(post["url"], post["fields"], "parts.bin", data)

    assert answer.status_code == 201, answer.text
    # A multipart upload's ETag: the MD5 of its parts' MD5s, and how many parts.
    assert re.fullmatch(r'"[0-9a-f]{32}-2"', answer.headers["ETag"]), answer.headers["ETag"]
    return answer, data


def test_it_answers_the_etag_of_a_file_stored_in_parts(store, own):
    _, _, s3, bucket = own
    answer, data = post_in_two_parts(s3, bucket)
    assert ET.fromstring(answer.content).findtext("ETag") == answer.headers["ETag"]
    assert (store.root / bucket / "uploads" / "parts.bin").read_bytes() == data


def test_it_refuses_a_file_over_the_content_length_range(store, own):
    _, _, s3, bucket = own
    post = _presigned_post(s3, bucket, max_bytes=10)

    answer = _post(post["url"], post["fields"], "big.txt", b"x" * 11)

    assert _error(answer)[:2] == (400, "EntityTooLarge")
    assert b"<MaxSizeAllowed>10</MaxSizeAllowed>" in answer.content
    assert _objects(store, bucket) == []


def test_it_refuses_a_file_over_the_range_after_a_part_went_to_the_store(store, own):
    _, _, s3, bucket = own
    post = _presigned_post(s3, bucket, max_bytes=PART_BYTES + 10)

    answer = _post(post["url"], post["fields"], "big.bin", os.urandom(PART_BYTES + 11))

    assert _error(answer)[:2] == (400, "EntityTooLarge")
    assert _objects(store, bucket) == []
    assert s3.list_objects_v2(Bucket=bucket).get("Contents", []) == []


def test_it_refuses_a_file_under_the_content_length_range(store, own):
    _, _, s3, bucket = own
    post = s3.generate_presigned_post(
        bucket,
        KEY_TEMPLATE,
        Conditions=[["starts-with", "$key", PREFIX], ["content-length-range", 10, 100]],
    )

    answer = _post(post["url"], post["fields"], "small.txt", b"123456789")

    assert _error(answer)[:2] == (400, "EntityTooSmall")
    assert _objects(store, bucket) == []


def test_it_refuses_a_key_outside_the_policy_prefix(store, own):
    _, _, s3, bucket = own
    post = _presigned_post(s3, bucket)
    fields = {**post["fields"], "key": "elsewhere/${filename}"}

    answer = _post(post["url"], fields, "sneaky.txt", b"sneaky")

    status, code, message = _error(answer)
    assert (status, code) == (403, "AccessDenied")
    assert message.startswith("Invalid according to Policy: Policy Condition failed:")
    assert '"$key"' in message
    assert _objects(store, bucket) == []


def test_it_refuses_an_expired_policy(store, own):
    key, secret, s3, bucket = own
    now = datetime.now(UTC)
    # The same form signed to expire in a minute is taken: only the expiration differs.
    fresh = _signed_form(key.id, secret, bucket, now + timedelta(minutes=1), "uploads/fresh")
    expired = _signed_form(key.id, secret, bucket, now - timedelta(seconds=1), "uploads/stale")

    taken = _post(f"{s3.meta.endpoint_url}/{bucket}", fresh, "f.txt", b"fresh")
    refused = _post(f"{s3.meta.endpoint_url}/{bucket}", expired, "s.txt", b"stale")

    assert taken.status_code == 204, taken.text
    assert _error(refused) == (403, "AccessDenied", "Invalid according to Policy: Policy expired.")
    assert _objects(store, bucket) == ["uploads/fresh"]


def test_it_refuses_a_policy_changed_after_it_was_signed(store, own):
    _, _, s3, bucket = own
    post = _presigned_post(s3, bucket, max_bytes=10)
    document = base64.b64decode(post["fields"]["policy"]).decode()
    # One character: the size limit goes from 10 bytes to 90.
    assert document.count('"content-length-range", 1, 10]') == 1
    raised = document.replace('"content-length-range", 1, 10]', '"content-length-range", 1, 90]')
    tampered = {**post["fields"], "policy": base64.b64encode(raised.encode()).decode()}

    honest = _post(post["url"], post["fields"], "big.txt", b"x" * 50)
    answer = _post(post["url"], tampered, "big.txt", b"x" * 50)

    assert _error(honest)[:2] == (400, "EntityTooLarge")
    assert _error(answer)[:2] == (403, "SignatureDoesNotMatch")
    assert _objects(store, bucket) == []


def test_it_refuses_a_policy_that_is_not_base64_json(store, own):
    _, _, s3, bucket = own
    post = _presigned_post(s3, bucket)
    fields = {**post["fields"], "policy": "!" + post["fields"]["policy"][1:]}

    answer = _post(post["url"], fields, "x.txt", b"x")

    assert _error(answer)[:2] == (400, "InvalidPolicyDocument")
    assert _objects(store, bucket) == []


def test_it_refuses_a_field_the_policy_does_not_name(store, own):
    _, _, s3, bucket = own
    post = _presigned_post(s3, bucket)
    fields = {**post["fields"], "x-amz-meta-color": "red"}

    answer = _post(post["url"], fields, "x.txt", b"x")

    assert _error(answer) == (
        403,
        "AccessDenied",
        "Invalid according to Policy: Extra input fields: x-amz-meta-color",
    )
    assert _objects(store, bucket) == []


def test_it_refuses_fields_over_20_kb_before_the_file(store, own):
    _, _, s3, bucket = own
    post = _presigned_post(s3, bucket)
    # x-ignore- fields need no condition: only their size is refused.
    fields = {**post["fields"], "x-ignore-padding": "p" * (20 * 1024)}

    answer = _post(post["url"], fields, "x.txt", b"x")

    assert _error(answer)[:2] == (400, "MaxPostPreDataLengthExceeded")
    assert _objects(store, bucket) == []


def test_it_refuses_a_form_signed_with_a_revoked_key(store, own, owner):
    key, _, s3, bucket = own
    post = _presigned_post(s3, bucket)
    revoke_key(owner, Actor.for_user(owner.user), key)

    answer = _post(post["url"], post["fields"], "x.txt", b"x")

    assert _error(answer)[:2] == (403, "InvalidAccessKeyId")
    assert _objects(store, bucket) == []


def _post_while(post: dict, change) -> httpx.Response:
    """Post a 1 MiB file with the form ``post``, calling ``change()`` once the first
    quarter of the file has reached the gateway and sending the rest after it returned."""
    piece = b"x" * (256 * 1024)
    parts = [*post["fields"].items(), ("file", ("slow.bin", piece * 4))]
    body, content_type = urllib3.encode_multipart_formdata(parts)
    head, tail = body.split(piece * 4)
    headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
    return send_changing_midway(
        [head, *[piece] * 4, tail],
        1,
        change,
        lambda content: httpx.post(post["url"], headers=headers, content=content, timeout=60),
    )


@pytest.mark.parametrize(
    "narrowed,refusal",
    [
        # Narrowed to a scope that still allows the upload: it completes.
        ((READ_WRITE, ""), None),
        ((READ_ONLY, ""), "AccessDenied"),
        ((READ_WRITE, "elsewhere/"), "AccessDenied"),
        (None, "InvalidAccessKeyId"),
    ],
    ids=["still-allowed", "read-only", "other-prefix", "revoked"],
)
def test_it_decides_the_end_of_a_form_upload_on_the_key_as_it_is_then(
    store, own, owner, narrowed, refusal
):
    key, _, s3, bucket = own
    post = _presigned_post(s3, bucket, max_bytes=2 * 1024 * 1024)
    actor = Actor.for_user(owner.user)

    def change() -> None:
        if narrowed is None:
            revoke_key(owner, actor, key)
            return
        permission, prefix = narrowed
        scope = Scope.build(permission=permission, buckets=[(bucket, prefix)])
        narrow_key_scope(owner, actor, key, scope)

    answer = _post_while(post, change)

    if refusal is None:
        assert answer.status_code == 204, answer.text
        assert _objects(store, bucket) == ["uploads/slow.bin"]
        return
    assert answer.status_code == 403, answer.text
    assert f"<Code>{refusal}</Code>".encode() in answer.content
    assert _objects(store, bucket) == []


def test_it_refuses_a_form_for_another_orgs_bucket(gw, store, own, outsider):
    _, _, s3, _ = own
    their_key, their_secret = new_key(outsider)
    theirs = bucket_name()
    s3_client(gw.url, their_key.id, their_secret).create_bucket(Bucket=theirs)
    post = _presigned_post(s3, theirs)

    answer = _post(post["url"], post["fields"], "x.txt", b"x")

    assert _error(answer)[:2] == (403, "AccessDenied")
    assert _objects(store, theirs) == []


def test_it_answers_no_such_bucket_for_a_bucket_nobody_owns(store, own):
    _, _, s3, _ = own
    nobodys = bucket_name()
    post = _presigned_post(s3, nobodys)

    answer = _post(post["url"], post["fields"], "x.txt", b"x")

    assert _error(answer)[:2] == (404, "NoSuchBucket")
    assert not (store.root / nobodys).exists()


def test_it_refuses_a_form_without_a_file(store, own):
    _, _, s3, bucket = own
    post = _presigned_post(s3, bucket)

    answer = _post_raw(post["url"], list(post["fields"].items()))

    status, code, _ = _error(answer)
    assert status == 400
    assert code == "IncorrectNumberOfFilesInPostRequest"
    assert _objects(store, bucket) == []


def test_it_refuses_a_form_without_a_key(store, own):
    _, _, s3, bucket = own
    post = _presigned_post(s3, bucket)
    fields = [(name, value) for name, value in post["fields"].items() if name != "key"]

    answer = _post_raw(post["url"], [*fields, ("file", ("x.txt", b"x"))])

    assert _error(answer) == (
        400,
        "InvalidArgument",
        "Bucket POST must contain a field named 'key'.",
    )
    assert _objects(store, bucket) == []


def test_it_refuses_a_signature_v2_form(store, own):
    key, secret, s3, bucket = own
    document = {
        "expiration": (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "conditions": [{"bucket": bucket}, ["starts-with", "$key", PREFIX]],
    }
    policy = base64.b64encode(json.dumps(document).encode()).decode()
    fields = {
        "key": "uploads/${filename}",
        "AWSAccessKeyId": key.id,
        "policy": policy,
        "signature": base64.b64encode(
            hashlib.sha1(secret.encode() + policy.encode()).digest()
        ).decode(),
    }

    answer = _post(f"{s3.meta.endpoint_url}/{bucket}", fields, "v2.txt", b"v2")

    assert _error(answer)[:2] == (400, "InvalidRequest")
    assert _objects(store, bucket) == []


def test_it_refuses_a_public_acl(store, own):
    _, _, s3, bucket = own
    post = _presigned_post(
        s3, bucket, fields={"acl": "public-read"}, conditions=[{"acl": "public-read"}]
    )

    answer = _post(post["url"], post["fields"], "public.txt", b"public")

    assert _error(answer)[:2] == (501, "NotImplemented")
    assert _objects(store, bucket) == []


def test_it_refuses_a_form_posted_to_an_object(store, own):
    _, _, s3, bucket = own
    post = _presigned_post(s3, bucket)

    answer = _post(f"{post['url']}/uploads/x.txt", post["fields"], "x.txt", b"x")

    assert _error(answer)[:2] == (501, "NotImplemented")
    assert _objects(store, bucket) == []


class _StreamedForm:
    """A multipart form whose file is read from disk while it is sent: requests sends an
    object with ``__len__`` and ``__iter__`` piece by piece, with that Content-Length."""

    def __init__(self, fields: dict[str, str], filename: str, path: Path) -> None:
        boundary = uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={boundary}"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in fields.items()
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        self.head = "".join(parts).encode()
        self.tail = f"\r\n--{boundary}--\r\n".encode()
        self.path = path

    def __len__(self) -> int:
        return len(self.head) + self.path.stat().st_size + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        with open(self.path, "rb") as file:
            while piece := file.read(READ_BYTES):
                yield piece
        yield self.tail


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == "VmRSS":
            return int(value.split()[0])
    raise AssertionError(f"no VmRSS for {pid}")


def test_it_streams_a_200_mb_file_with_flat_memory(gw, store, own, tmp_path):
    _, _, s3, bucket = own
    path = tmp_path / "big.bin"
    sent = hashlib.sha256()
    with open(path, "wb") as file:
        for _ in range(BIG_FILE_BYTES // READ_BYTES):
            piece = os.urandom(READ_BYTES)
            sent.update(piece)
            file.write(piece)
        piece = os.urandom(BIG_FILE_BYTES % READ_BYTES)
        sent.update(piece)
        file.write(piece)
    post = _presigned_post(s3, bucket, max_bytes=BIG_FILE_BYTES)
    # A small upload first, so what it takes to serve one at all is in the baseline.
    assert _post(post["url"], post["fields"], "warm-up.txt", b"warm").status_code == 204
    baseline = _rss_kb(gw.pid)
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(_rss_kb(gw.pid))
            done.wait(RSS_SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample)
    sampler.start()
    form = _StreamedForm(post["fields"], "big.bin", path)
    try:
        started = time.monotonic()
        answer = requests.post(
            post["url"], data=form, headers={"Content-Type": form.content_type}, timeout=120
        )
        elapsed = time.monotonic() - started
    finally:
        done.set()
        sampler.join()

    assert answer.status_code == 204, answer.text
    stored = store.root / bucket / "uploads" / "big.bin"
    assert stored.stat().st_size == BIG_FILE_BYTES
    received = hashlib.sha256()
    with open(stored, "rb") as file:
        while piece := file.read(READ_BYTES):
            received.update(piece)
    assert received.hexdigest() == sent.hexdigest()
    assert len(samples) >= 3, (samples, elapsed)
    assert max(samples) - baseline < RSS_GROWTH_LIMIT_KB, (baseline, max(samples), elapsed)
