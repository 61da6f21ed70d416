"""POST /internal/v1/s3/verify: the gateway's key authority for other S3 front ends, with
strings to sign computed by botocore for real requests."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import botocore.auth
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.tokens import create_api_token
from audit.trail import Actor
from excloud_portal.settings import parse_service_tokens
from gateway import usage, verify_api
from gateway.models import Bucket, SigningKeyGrant
from gateway.sigv4 import derive_signing_key, signature
from gateway.tasks import record_usage
from keys.models import AccessKey, KeyUsage
from keys.scope import Scope
from keys.services import create_key, deactivate_key, narrow_key_scope, revoke_key
from tests.conftest import new_key

URL = "/internal/v1/s3/verify"
TOKEN = "svc-" + "t" * 40
SECOND_TOKEN = "svc-" + "u" * 40
# A front end that serves Acme (and an org that does not exist here) only.
ACME_TOKEN = "svc-" + "v" * 40
UNKNOWN_KEY_ID = "EXC" + "A" * 17
BUCKET = "acme-photos"


@pytest.fixture(autouse=True)
def service_tokens(settings) -> None:
    settings.EXCLOUD_VERIFY_SERVICE_TOKENS = parse_service_tokens(
        [TOKEN, SECOND_TOKEN, f"{ACME_TOKEN}@acme|initech"]
    )
    settings.EXCLOUD_S3_REGION = "us-east-1"


@pytest.fixture(autouse=True)
def fresh_usage(monkeypatch):
    """Each test starts and ends with no counted usage in this process, and no flush
    happens unless the test asks for one."""
    monkeypatch.setattr(verify_api, "_next_flush", float("inf"))
    verify_api.USAGE.drain()
    yield
    verify_api.USAGE.drain()


@pytest.fixture
def bucket(owner) -> Bucket:
    return Bucket.objects.create(name=BUCKET, org=owner.org)


class _Capturing(S3SigV4Auth):
    """botocore's S3 signer, keeping the string to sign it signed."""

    string_to_sign_seen = ""

    def signature(self, string_to_sign, request):
        self.string_to_sign_seen = string_to_sign
        return super().signature(string_to_sign, request)


def botocore_signed(
    key_id: str, secret: str, path: str = f"/{BUCKET}/photo.jpg", region: str = "us-east-1"
) -> tuple[str, str]:
    """(string to sign, signature) of a GET that botocore signs as aws-cli would send it."""
    request = AWSRequest(method="GET", url="http://127.0.0.1:9000" + path)
    auth = _Capturing(Credentials(key_id, secret), "s3", region)
    auth.add_auth(request)
    authorization = request.headers["Authorization"]
    return auth.string_to_sign_seen, authorization.rsplit("Signature=", 1)[1]


def call(body, token: str | None = TOKEN, raw: bytes | None = None):
    headers = {} if token is None else {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    data = raw if raw is not None else json.dumps(body)
    return Client().post(URL, data, content_type="application/json", **headers)


def request_for(key_id: str, secret: str, **context) -> dict:
    string_to_sign, sig = botocore_signed(key_id, secret, **context.pop("sign", {}))
    return {
        "access_key_id": key_id,
        "string_to_sign": string_to_sign,
        "signature": sig,
        "action": "read",
        "bucket": BUCKET,
        "source_ip": "203.0.113.7",
        **context,
    }


def assert_denied(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["allow"] is False and body["code"] == code, body
    assert "signing_key" not in body
    return body


def test_it_allows_a_botocore_signed_get_and_hands_out_the_signing_key_only(owner, bucket):
    key, secret = new_key(owner)
    body = request_for(key.id, secret)

    response = call(body)

    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    answer = response.json()
    date = body["string_to_sign"].split("\n")[1][:8]
    assert answer == {
        "allow": True,
        "org": "acme",
        "access_key_id": key.id,
        "scope": f"{date}/us-east-1/s3/aws4_request",
        "signing_key": derive_signing_key(secret, date, "us-east-1").hex(),
    }
    # With it, the front end can check signatures of that scope (chunks, say) by itself.
    assert (
        signature(bytes.fromhex(answer["signing_key"]), body["string_to_sign"])
        == (body["signature"])
    )
    assert secret.encode() not in response.content
    assert secret.encode().hex().encode() not in response.content


def test_it_accepts_any_of_the_service_tokens(owner, bucket):
    key, secret = new_key(owner)

    assert call(request_for(key.id, secret), token=SECOND_TOKEN).json()["allow"] is True


def test_it_refuses_a_wrong_signature(owner, bucket):
    key, secret = new_key(owner)
    body = request_for(key.id, secret)
    wrong = request_for(key.id, "x" * 40)

    assert_denied(call({**body, "signature": wrong["signature"]}), 403, "SignatureDoesNotMatch")
    assert_denied(call({**body, "signature": "z" * 64}), 403, "SignatureDoesNotMatch")
    assert_denied(call({**body, "signature": "é" * 64}), 403, "SignatureDoesNotMatch")
    # The signature covers the string to sign: another canonical request hash fails it.
    lines = body["string_to_sign"].split("\n")
    lines[3] = "0" * 64
    tampered = {**body, "string_to_sign": "\n".join(lines)}
    denied = assert_denied(call(tampered), 403, "SignatureDoesNotMatch")
    assert secret not in json.dumps(denied)


# A well-formed ID is counted under its name; anything else (a secret pasted in the ID's
# place, say) under no key, so it is never stored.
@pytest.mark.parametrize(
    ("key_id", "counted_as"),
    [(UNKNOWN_KEY_ID, UNKNOWN_KEY_ID), ("X" * 128, ""), ("ünï/cødé key", "")],
)
def test_it_refuses_an_unknown_key(db, key_id, counted_as):
    response = call(request_for(key_id, "s" * 40))

    body = assert_denied(response, 403, "InvalidAccessKeyId")
    assert body["details"] == {"AWSAccessKeyId": key_id}
    batch = verify_api.USAGE.drain()
    assert (batch["counts"], batch["signing_keys"]) == ([], [])
    assert [row[:2] for row in batch["denied_attempts"]] == [[counted_as, "203.0.113.7"]]


@pytest.mark.parametrize("change", [revoke_key, deactivate_key])
def test_it_refuses_a_key_on_the_call_after_it_is_revoked_or_deactivated(owner, bucket, change):
    key, secret = new_key(owner)
    assert call(request_for(key.id, secret)).json()["allow"] is True

    change(owner, Actor.for_user(owner.user), key)

    assert_denied(call(request_for(key.id, secret)), 403, "InvalidAccessKeyId")
    # Signed with the key's secret, the refused call counts as the key's denied use, as
    # in the gateway; with a wrong signature it is only a denied attempt.
    wrong = request_for(key.id, "x" * 40)
    assert_denied(call(wrong), 403, "InvalidAccessKeyId")
    batch = verify_api.USAGE.drain()
    assert [row[0] for row in batch["counts"]] == [key.id]
    assert batch["counts"][0][2:] == [2, 0, 0, 1, 1]  # requests, in, out, errors, denied
    assert [row[:2] for row in batch["denied_attempts"]] == [[key.id, "203.0.113.7"]]


def test_it_refuses_an_expired_key(owner, bucket):
    key, secret = new_key(owner)
    AccessKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert_denied(call(request_for(key.id, secret)), 403, "InvalidAccessKeyId")


def test_it_refuses_another_orgs_bucket_and_a_bucket_nobody_owns(owner, outsider, bucket):
    key, secret = new_key(outsider, "globex-laptop")
    theirs = request_for(key.id, secret)

    for action in ("read", "write", "DeleteBucket"):
        assert_denied(call({**theirs, "action": action}), 403, "AccessDenied")
    # S3's answers: creating another org's bucket, and a name nobody holds.
    assert_denied(call({**theirs, "action": "CreateBucket"}), 409, "BucketAlreadyExists")
    assert_denied(call({**theirs, "bucket": "nobody-owns-this"}), 404, "NoSuchBucket")
    # Copying out of Acme's bucket into a bucket of one's own is a read of Acme's.
    Bucket.objects.create(name="globex-own", org=outsider.org)
    copy = {**theirs, "action": "write", "bucket": "globex-own"}
    assert call(copy).json()["allow"] is True
    assert_denied(call({**copy, "copy_source_bucket": BUCKET}), 403, "AccessDenied")
    # ListBuckets names no bucket (its answer is filtered to the org's own).
    listing = {**theirs, "action": "ListBuckets"}
    assert_denied(call(listing), 403, "AccessDenied")
    del listing["bucket"]
    assert call(listing).json()["allow"] is True


def test_it_refuses_a_scope_in_another_region(owner, bucket):
    key, secret = new_key(owner)

    response = call(request_for(key.id, secret, sign={"region": "eu-west-1"}))

    body = assert_denied(response, 400, "AuthorizationHeaderMalformed")
    assert body["details"] == {"Region": "us-east-1"}


@pytest.mark.parametrize(("minutes", "allowed"), [(14, True), (16, False), (-16, False)])
def test_it_applies_the_gateways_fifteen_minutes_to_the_date(
    owner, bucket, monkeypatch, minutes, allowed
):
    key, secret = new_key(owner)
    then = datetime.now(UTC) - timedelta(minutes=minutes)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: then.replace(tzinfo=None))

    response = call(request_for(key.id, secret))

    if allowed:
        assert response.json()["allow"] is True
    else:
        body = assert_denied(response, 403, "RequestTimeTooSkewed")
        assert body["details"]["MaxAllowedSkewMilliseconds"] == "900000"


@pytest.mark.parametrize(
    "string_to_sign",
    [
        "garbage",
        "AWS4-HMAC-SHA1\n20250101T000000Z\n20250101/us-east-1/s3/aws4_request\n" + "0" * 64,
        "AWS4-HMAC-SHA256\n2025-01-01\n20250101/us-east-1/s3/aws4_request\n" + "0" * 64,
        "AWS4-HMAC-SHA256\n20250101T000000Z\n20250101/us-east-1/s3/aws4_request\nnot-hex",
        "AWS4-HMAC-SHA256\n20250101T000000Z\n20250101/us-east-1/s3/aws4_request\n"
        + "0" * 64
        + "\n",
    ],
)
def test_it_answers_400_with_an_s3_code_for_a_malformed_string_to_sign(owner, string_to_sign):
    key, secret = new_key(owner)
    body = {**request_for(key.id, secret), "string_to_sign": string_to_sign}

    assert_denied(call(body), 400, "InvalidRequest")


@pytest.mark.parametrize(
    "scope",
    [
        "20250101/us-east-1/sts/aws4_request",
        "20250101/us-east-1/s3/aws5_request",
        "20250102/us-east-1/s3/aws4_request",  # not the date of x-amz-date
        "2025-1-1/us-east-1/s3/aws4_request",
        "us-east-1/s3/aws4_request",
    ],
)
def test_it_answers_400_for_a_malformed_scope(owner, scope):
    key, secret = new_key(owner)
    string_to_sign = f"AWS4-HMAC-SHA256\n20250101T000000Z\n{scope}\n" + "0" * 64
    body = {**request_for(key.id, secret), "string_to_sign": string_to_sign}

    assert_denied(call(body), 400, "AuthorizationHeaderMalformed")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"HTTP_AUTHORIZATION": "Bearer "},
        {"HTTP_AUTHORIZATION": "Bearer wrong-token"},
        {"HTTP_AUTHORIZATION": TOKEN},
        {"HTTP_AUTHORIZATION": f"Basic {TOKEN}"},
        {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}x"},
        {"HTTP_AUTHORIZATION": f"Bearer {TOKEN[:-1]}"},
    ],
)
def test_it_requires_a_service_token(owner, bucket, headers):
    key, secret = new_key(owner)
    body = json.dumps(request_for(key.id, secret))

    response = Client().post(URL, body, content_type="application/json", **headers)

    assert_denied(response, 401, "unauthorized")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert verify_api.USAGE.drain() is None


def test_it_refuses_a_users_api_token(owner, bucket):
    key, secret = new_key(owner)
    user_token = create_api_token(owner, Actor.for_user(owner.user), "cli").plaintext

    assert_denied(call(request_for(key.id, secret), token=user_token), 401, "unauthorized")


def test_it_refuses_other_methods_with_json(db):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    for response in (client.get(URL), client.put(URL, "{}", content_type="application/json")):
        assert_denied(response, 405, "method_not_allowed")
        assert response["Allow"] == "POST"


GOOD = {
    "access_key_id": UNKNOWN_KEY_ID,
    "string_to_sign": "AWS4-HMAC-SHA256\n20250101T000000Z\n20250101/us-east-1/s3/aws4_request\n"
    + "0" * 64,
    "signature": "0" * 64,
    "action": "read",
}


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'"text"',
        b"{}",
        b"[" * 10_000,
        b"{" + b" " * 20_000 + b"}",
        json.dumps({k: v for k, v in GOOD.items() if k != "signature"}).encode(),
        json.dumps({k: v for k, v in GOOD.items() if k != "access_key_id"}).encode(),
        json.dumps({**GOOD, "access_key_id": 5}).encode(),
        json.dumps({**GOOD, "access_key_id": ""}).encode(),
        json.dumps({**GOOD, "access_key_id": "EXC\u0000"}).encode(),
        json.dumps({**GOOD, "access_key_id": "A" * 500}).encode(),
        json.dumps({**GOOD, "signature": "\ud800"}).encode(),
        json.dumps({**GOOD, "string_to_sign": ["a"]}).encode(),
        json.dumps({**GOOD, "action": "GetObject"}).encode(),
        json.dumps({**GOOD, "bucket": ""}).encode(),
        json.dumps({**GOOD, "bucket": {"name": "x"}}).encode(),
        json.dumps({**GOOD, "source_ip": "not an address"}).encode(),
        json.dumps({**GOOD, "secret_access_key": "x"}).encode(),
    ],
)
def test_it_answers_400_json_for_a_body_that_is_not_a_verify_request(db, raw):
    response = call(None, raw=raw)

    assert_denied(response, 400, "bad_request")
    assert response.json()["message"]


def test_it_counts_usage_and_writes_nothing_to_the_database(owner, bucket):
    key, secret = new_key(owner)
    body = request_for(key.id, secret)

    with CaptureQueriesContext(connection) as queries:
        assert call(body).json()["allow"] is True
        assert_denied(call({**body, "bucket": "nobody-owns-this"}), 404, "NoSuchBucket")

    statements = [q["sql"].lstrip().split()[0].upper() for q in queries.captured_queries]
    assert statements and set(statements) == {"SELECT"}, statements
    batch = verify_api.USAGE.drain()
    assert batch["counts"][0][0] == key.id
    assert batch["counts"][0][2:] == [2, 0, 0, 1, 0]
    [[key_id, _at, ip, operation, used_bucket, _agent]] = batch["last_used"]
    assert (key_id, ip, operation, used_bucket) == (
        key.id,
        "203.0.113.7",
        "read",
        "nobody-owns-this",
    )


def test_it_sends_usage_to_the_worker_once_a_flush_is_due(owner, bucket, monkeypatch):
    key, secret = new_key(owner)
    sent = []
    # The worker's part (the task on the database) runs here; the broker is not under test.
    monkeypatch.setattr(record_usage, "delay", lambda batch: sent.append(record_usage(batch)))
    monkeypatch.setattr(verify_api, "_next_flush", 0.0)

    assert call(request_for(key.id, secret)).json()["allow"] is True

    assert sent == [1]
    assert verify_api.USAGE.drain() is None
    usage = KeyUsage.objects.get(access_key=key)
    assert (usage.requests, usage.errors, usage.denied) == (1, 0, 0)
    key.refresh_from_db()
    assert key.last_used_ip == "203.0.113.7"


def test_it_answers_a_token_limited_to_some_orgs_as_if_other_orgs_keys_did_not_exist(
    owner, outsider, bucket
):
    ours, our_secret = new_key(owner)
    theirs, their_secret = new_key(outsider, "globex-laptop")
    Bucket.objects.create(name="globex-own", org=outsider.org)
    correct = request_for(theirs.id, their_secret, bucket="globex-own")
    unknown_key = call(request_for(UNKNOWN_KEY_ID, "s" * 40), token=ACME_TOKEN)
    unknown = assert_denied(unknown_key, 403, "InvalidAccessKeyId")
    verify_api.USAGE.drain()

    assert call(request_for(ours.id, our_secret), token=ACME_TOKEN).json()["allow"] is True
    answers = [
        call(correct, token=ACME_TOKEN),
        call({**correct, "signature": "0" * 64}, token=ACME_TOKEN),
        call({**correct, "action": "ListBuckets", "bucket": None}, token=ACME_TOKEN),
    ]

    for response in answers:
        body = assert_denied(response, 403, "InvalidAccessKeyId")
        assert body == {**unknown, "details": {"AWSAccessKeyId": theirs.id}}
        assert response.status_code == unknown_key.status_code
    # Named but not let in: denied attempts, nothing toward Globex's key.
    batch = verify_api.USAGE.drain()
    assert [row[0] for row in batch["counts"]] == [ours.id]
    assert [row[0] for row in batch["last_used"]] == [ours.id]
    assert [row[0] for row in batch["signing_keys"]] == [verify_api.token_label(ACME_TOKEN)]
    assert [(row[0], row[3]) for row in batch["denied_attempts"]] == [(theirs.id, 3)]
    # The signature was right: a token for every org is let in with it.
    assert call(correct).json()["allow"] is True


def test_it_reads_service_tokens_with_the_orgs_each_may_verify_for():
    tokens = parse_service_tokens(
        ["a" * 32, "b" * 32 + "@acme", "c" * 40 + "@acme|globex-2|3m|acme_corp"]
    )

    assert tokens == [
        ("a" * 32, None),
        ("b" * 32, frozenset({"acme"})),
        ("c" * 40, frozenset({"acme", "globex-2", "3m", "acme_corp"})),
    ]


@pytest.mark.parametrize(
    "entries",
    [
        ["a" * 31],
        ["a" * 31 + "@acme"],
        ["a" * 16 + " " + "a" * 16],
        ["a" * 32 + "@"],
        ["a" * 32 + "@acme|"],
        ["a" * 32 + "@|acme"],
        ["a" * 32 + "@Acme"],
        ["a" * 32 + "@acme corp"],
        ["a" * 32 + "@acme,globex"],
        ["a" * 32 + "@acme@globex"],
        ["a" * 32 + "@acme;globex"],
        ["a" * 32, "a" * 32 + "@acme"],
    ],
)
def test_it_refuses_a_malformed_service_token_entry_without_showing_the_token(entries):
    with pytest.raises(ImproperlyConfigured) as refused:
        parse_service_tokens(entries)

    assert "EXCLOUD_VERIFY_SERVICE_TOKENS entry" in str(refused.value)
    assert "a" * 16 not in str(refused.value)


def test_it_labels_a_service_token_by_a_fingerprint():
    label = verify_api.token_label(TOKEN)

    assert label.startswith("token ") and len(label) == 18
    assert label != verify_api.token_label(SECOND_TOKEN)
    assert TOKEN not in label and "t" * 8 not in label


def test_it_counts_the_signing_keys_it_hands_out_per_token_and_key(owner, bucket):
    laptop, laptop_secret = new_key(owner)
    server, server_secret = new_key(owner, "server")
    for token, key_id, secret, times in [
        (TOKEN, laptop.id, laptop_secret, 3),
        (SECOND_TOKEN, laptop.id, laptop_secret, 2),
        (ACME_TOKEN, server.id, server_secret, 1),
    ]:
        for _ in range(times):
            assert call(request_for(key_id, secret), token=token).json()["allow"] is True
    # Refusals hand out no signing key and are not counted as one.
    denied = request_for(laptop.id, laptop_secret, bucket="nobody-owns-this")
    assert_denied(call(denied), 404, "NoSuchBucket")

    batch = verify_api.USAGE.drain()
    record_usage(batch)
    record_usage(batch)  # the same batch delivered twice counts once
    record_usage({**batch, "id": uuid.uuid4().hex})  # another with the same totals adds up

    expected = {
        (verify_api.token_label(TOKEN), laptop.id): 3,
        (verify_api.token_label(SECOND_TOKEN), laptop.id): 2,
        (verify_api.token_label(ACME_TOKEN), server.id): 1,
    }
    counted: dict[tuple[str, str], int] = {}
    for label, key_id, _hour, count in batch["signing_keys"]:
        counted[(label, key_id)] = counted.get((label, key_id), 0) + count
    assert counted == expected
    stored: dict[tuple[str, str], int] = {}
    for grant in SigningKeyGrant.objects.all():
        pair = (grant.token_label, grant.access_key_id)
        stored[pair] = stored.get(pair, 0) + grant.count
    assert stored == {pair: 2 * count for pair, count in expected.items()}
    rows = json.dumps(list(SigningKeyGrant.objects.values()), default=str)
    for token in (TOKEN, SECOND_TOKEN, ACME_TOKEN):
        assert token not in rows and token[4:12] not in rows


def test_it_skips_signing_key_counts_of_keys_it_does_not_know(owner):
    key, _ = new_key(owner)
    hour = 1_800_000_000 // 3600 * 3600
    label = verify_api.token_label(TOKEN)

    record_usage(
        {
            "counts": [],
            "last_used": [],
            "signing_keys": [[label, key.id, hour, 4], [label, UNKNOWN_KEY_ID, hour, 2]],
        }
    )

    grant = SigningKeyGrant.objects.get()
    assert (grant.token_label, grant.access_key_id, grant.count) == (label, key.id, 4)
    assert grant.hour == datetime.fromtimestamp(hour, UTC)


def test_it_keeps_the_signing_key_counts_when_the_broker_is_down(owner, bucket, monkeypatch):
    key, secret = new_key(owner)

    def broker_down(batch):
        raise ConnectionError("no broker")

    monkeypatch.setattr(record_usage, "delay", broker_down)
    assert call(request_for(key.id, secret)).json()["allow"] is True
    verify_api.flush_usage()
    assert call(request_for(key.id, secret)).json()["allow"] is True

    # The batch the broker did not take goes again as it was, then the newer one.
    unsent, newer = verify_api.USAGE.outgoing()
    assert unsent["id"] != newer["id"]
    for batch in (unsent, newer):
        [[label, key_id, _hour, count]] = batch["signing_keys"]
        assert (label, key_id, count) == (verify_api.token_label(TOKEN), key.id, 1)


def test_it_bounds_the_signing_key_counts_it_holds(monkeypatch):
    monkeypatch.setattr(usage, "MAX_SIGNING_KEY_ENTRIES", 2)
    recorder = usage.UsageRecorder()
    for number in range(5):
        recorder.record_signing_key("token a", f"EXC{number:017d}", at=7200)

    batch = recorder.drain()

    assert len(batch["signing_keys"]) == 3
    assert ["token a", usage.ANY_KEY, 7200, 3] in batch["signing_keys"]


def test_it_counts_a_wrong_signature_as_a_denied_attempt_not_as_the_keys_use(owner, bucket):
    key, secret = new_key(owner)
    body = request_for(key.id, secret)

    assert_denied(call({**body, "signature": "0" * 64}), 403, "SignatureDoesNotMatch")

    batch = verify_api.USAGE.drain()
    assert (batch["counts"], batch["last_used"], batch["signing_keys"]) == ([], [], [])
    [[key_id, ip, _hour, count]] = batch["denied_attempts"]
    assert (key_id, ip, count) == (key.id, "203.0.113.7", 1)


# ---------------------------------------------------------------------------------------
# Scoped keys: decided by the gateway's own refusal(), with the names the call gives


def scoped_key(owner, name: str = "scoped", **scope):
    created = create_key(owner, Actor.for_user(owner.user), name, scope=Scope.build(**scope))
    return created.key, created.secret


SCOPED_MESSAGE = (
    f"Access Denied. This access key may do read-write on {BUCKET}/photos/*, "
    "from 203.0.113.0/24, 2001:db8::/32."
)


@pytest.mark.parametrize(
    ("fields", "allowed"),
    [
        ({"key": "photos/cat.jpg"}, True),
        ({"key": "photos/cat.jpg", "source_ip": "2001:db8::1"}, True),
        ({"key": "other/cat.jpg"}, False),
        ({"key": "photos/cat.jpg", "source_ip": "198.51.100.7"}, False),
        ({"key": "photos/cat.jpg", "source_ip": None}, False),
        # Without the object, the question is about every object of the bucket.
        ({}, False),
        ({"prefix": "photos/"}, True),
        ({"prefix": "photos/2024/"}, True),
        ({"prefix": "pho"}, False),
        ({"action": "write", "key": "photos/new.jpg"}, True),
        ({"action": "write", "key": "secret/new.jpg"}, False),
        ({"action": "write"}, False),
        (
            {
                "action": "write",
                "key": "photos/copy.jpg",
                "copy_source_bucket": BUCKET,
                "copy_source_key": "photos/cat.jpg",
            },
            True,
        ),
        (
            {
                "action": "write",
                "key": "photos/copy.jpg",
                "copy_source_bucket": BUCKET,
                "copy_source_key": "secret/cat.jpg",
            },
            False,
        ),
        ({"action": "write", "key": "photos/copy.jpg", "copy_source_bucket": BUCKET}, False),
        ({"action": "DeleteBucket", "key": None}, False),
        ({"action": "ListBuckets", "bucket": None}, True),
    ],
)
def test_it_decides_a_scoped_key_on_the_names_and_address_it_is_given(
    owner, bucket, fields, allowed
):
    key, secret = scoped_key(
        owner,
        permission="read-write",
        buckets=[(BUCKET, "photos/")],
        networks=["203.0.113.0/24", "2001:db8::/32"],
    )
    body = {k: v for k, v in {**request_for(key.id, secret), **fields}.items() if v is not None}

    response = call(body)

    if allowed:
        assert response.status_code == 200, response.content
        assert response.json()["allow"] is True
    else:
        answer = assert_denied(response, 403, "AccessDenied")
        assert answer["message"] == SCOPED_MESSAGE


def test_it_answers_a_key_of_the_default_scope_as_before(owner, bucket):
    key, secret = new_key(owner)
    for fields in ({}, {"key": "any/thing"}, {"prefix": "x"}, {"source_ip": None}):
        body = {k: v for k, v in {**request_for(key.id, secret), **fields}.items() if v is not None}
        assert call(body).status_code == 200, fields


def test_it_sees_a_narrowed_scope_on_the_next_call(owner, bucket):
    key, secret = new_key(owner)
    body = request_for(key.id, secret, action="write", key="photos/a.jpg")
    assert call(body).status_code == 200

    narrow_key_scope(owner, Actor.for_user(owner.user), key, Scope.build(permission="read-only"))

    answer = assert_denied(call(body), 403, "AccessDenied")
    assert answer["message"] == (
        "Access Denied. This access key may do read-only on all of the organisation's buckets."
    )
    assert call({**body, "action": "read"}).status_code == 200


@pytest.mark.parametrize(
    "fields",
    [
        {"action": "ListBuckets", "bucket": None, "key": "a"},
        {"action": "CreateBucket", "key": "a"},
        {"action": "write", "prefix": "a/"},
        {"key": "a", "prefix": "a/"},
        {"copy_source_key": "a"},
        {"key": ""},
        {"key": "k" * 1025},
        {"prefix": 5},
        {"copy_source_bucket": BUCKET, "copy_source_key": ["a"]},
    ],
)
def test_it_answers_400_for_names_that_do_not_fit_the_action(owner, bucket, fields):
    key, secret = new_key(owner)
    body = {k: v for k, v in {**request_for(key.id, secret), **fields}.items() if v is not None}

    assert_denied(call(body), 400, "bad_request")


def test_it_answers_an_object_name_s3_refuses_as_the_gateway_does(owner, bucket):
    key, secret = new_key(owner)

    response = call(request_for(key.id, secret, key="a/../b"))

    assert_denied(response, 400, "InvalidArgument")
