"""POST /internal/v1/s3/verify: the gateway's key authority for other S3 front ends, with
strings to sign computed by botocore for real requests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import botocore.auth
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.services import create_api_token
from audit.trail import Actor
from gateway import verify_api
from gateway.models import Bucket, KeyUsage
from gateway.sigv4 import derive_signing_key, signature
from gateway.tasks import record_usage
from keys.models import AccessKey
from keys.services import deactivate_key, revoke_key
from tests.conftest import new_key

URL = "/internal/v1/s3/verify"
TOKEN = "svc-" + "t" * 40
SECOND_TOKEN = "svc-" + "u" * 40
UNKNOWN_KEY_ID = "EXC" + "A" * 17
BUCKET = "acme-photos"


@pytest.fixture(autouse=True)
def service_tokens(settings) -> None:
    settings.EXCLOUD_VERIFY_SERVICE_TOKENS = [TOKEN, SECOND_TOKEN]
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


@pytest.mark.parametrize("key_id", [UNKNOWN_KEY_ID, "X" * 128, "ünï/cødé key"])
def test_it_refuses_an_unknown_key(db, key_id):
    response = call(request_for(key_id, "s" * 40))

    body = assert_denied(response, 403, "InvalidAccessKeyId")
    assert body["details"] == {"AWSAccessKeyId": key_id}


@pytest.mark.parametrize("change", [revoke_key, deactivate_key])
def test_it_refuses_a_key_on_the_call_after_it_is_revoked_or_deactivated(owner, bucket, change):
    key, secret = new_key(owner)
    assert call(request_for(key.id, secret)).json()["allow"] is True

    change(owner, Actor.for_user(owner.user), key)

    assert_denied(call(request_for(key.id, secret)), 403, "InvalidAccessKeyId")
    # Denials with a known key count as denied attempts of that key, as in the gateway.
    batch = verify_api.USAGE.drain()
    assert [row[0] for row in batch["counts"]] == [key.id]
    assert batch["counts"][0][2:] == [2, 0, 0, 1, 1]  # requests, in, out, errors, denied


def test_it_refuses_an_expired_key(owner, bucket):
    key, secret = new_key(owner)
    AccessKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert_denied(call(request_for(key.id, secret)), 403, "InvalidAccessKeyId")


def test_it_refuses_another_orgs_bucket_and_a_bucket_nobody_owns(owner, outsider, bucket):
    key, secret = new_key(outsider, "globex-laptop")
    theirs = request_for(key.id, secret)

    for action in ("read", "write", "DeleteBucket", "CreateBucket"):
        assert_denied(call({**theirs, "action": action}), 403, "AccessDenied")
    assert_denied(call({**theirs, "bucket": "nobody-owns-this"}), 403, "AccessDenied")
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
        assert_denied(call({**body, "bucket": "nobody-owns-this"}), 403, "AccessDenied")

    statements = [q["sql"].lstrip().split()[0].upper() for q in queries.captured_queries]
    assert statements and set(statements) == {"SELECT"}, statements
    batch = verify_api.USAGE.drain()
    assert batch["counts"][0][0] == key.id
    assert batch["counts"][0][2:] == [2, 0, 0, 1, 0]
    [[key_id, _at, ip, operation, used_bucket]] = batch["last_used"]
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
