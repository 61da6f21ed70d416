"""Bucket CORS configurations end to end: rclone serve s3 upstream, the gateway under
uvicorn, the configuration set and read with the aws CLI and boto3, and preflight and
actual requests sent as a browser sends them (httpx, with Origin)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from audit.models import AuditEvent
from tests.conftest import audit_mark, events_since, new_key
from tests.gateway_stack import gateway
from tests.s3_raw import error_code
from tests.test_gateway_e2e import _aws, _run_aws, bucket_name, s3_client

pytestmark = pytest.mark.django_db(transaction=True)

APP_ORIGIN = "https://app.example.com"
OTHER_ORIGIN = "https://evil.example.net"
APP_RULE = {
    "ID": "app",
    "AllowedHeaders": ["content-type", "x-amz-meta-*"],
    "AllowedMethods": ["GET", "PUT"],
    "AllowedOrigins": [APP_ORIGIN],
    "ExposeHeaders": ["ETag", "x-amz-meta-color"],
    "MaxAgeSeconds": 600,
}
ANYONE_RULE = {"AllowedMethods": ["HEAD"], "AllowedOrigins": ["*"]}
RULES = [APP_RULE, ANYONE_RULE]
# What the gateway sends to an origin a rule names (not "*"): S3's headers.
NAMED_ORIGIN_VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"
NOT_ALLOWED = "CORSResponse: This CORS request is not allowed."
NOT_ENABLED = "CORSResponse: CORS is not enabled for this bucket."
S3_XMLNS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
CORS_HEADERS = (
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "access-control-max-age",
    "vary",
)


@pytest.fixture(scope="module")
def gw(tmp_path_factory, store):
    with gateway(tmp_path_factory.mktemp("gw"), store) as running:
        yield running


@dataclass
class _Acme:
    key_id: str
    secret: str
    s3: Any
    bucket: str


@pytest.fixture
def acme(gw, owner) -> _Acme:
    """Acme's key, its boto3 client, and a bucket of Acme's with one object in it."""
    key, secret = new_key(owner)
    s3 = s3_client(gw.url, key.id, secret)
    name = bucket_name()
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="photo.jpg", Body=b"jpeg bytes", Metadata={"color": "red"})
    return _Acme(key.id, secret, s3, name)


@pytest.fixture
def configured(acme) -> _Acme:
    """Acme's bucket with RULES, set with boto3 (the aws CLI is slow to start, and is
    used where setting the configuration is what is tested)."""
    answer = acme.s3.put_bucket_cors(Bucket=acme.bucket, CORSConfiguration={"CORSRules": RULES})
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    return acme


def _put_cors_with_aws_cli(tmp_path, gw, acme: _Acme, rules: list[dict]) -> None:
    _aws(
        tmp_path,
        gw.url,
        acme.key_id,
        acme.secret,
        "s3api",
        "put-bucket-cors",
        "--bucket",
        acme.bucket,
        "--cors-configuration",
        json.dumps({"CORSRules": rules}),
    )


def _preflight(
    gw, path: str, origin: str | None, method: str | None, headers: str | None = None
) -> httpx.Response:
    """An OPTIONS request as a browser sends it: no credentials, no signature."""
    sent = {}
    if origin is not None:
        sent["Origin"] = origin
    if method is not None:
        sent["Access-Control-Request-Method"] = method
    if headers is not None:
        sent["Access-Control-Request-Headers"] = headers
    return httpx.request("OPTIONS", gw.url + path, headers=sent, timeout=10)


def _cors_headers(response: httpx.Response) -> dict[str, str]:
    return {name: response.headers[name] for name in CORS_HEADERS if name in response.headers}


def _message(response: httpx.Response) -> str | None:
    found = re.search(rb"<Message>([^<]*)</Message>", response.content)
    return found.group(1).decode() if found else None


def _signed_put_cors(gw, acme: _Acme, body: bytes) -> httpx.Response:
    """PutBucketCors with a body no SDK would send, signed with Acme's key."""
    request = AWSRequest(method="PUT", url=f"{gw.url}/{acme.bucket}?cors", data=body)
    request.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    request.headers["Content-Type"] = "application/xml"
    S3SigV4Auth(Credentials(acme.key_id, acme.secret), "s3", "us-east-1").add_auth(request)
    return httpx.put(request.url, content=body, headers=dict(request.headers.items()), timeout=10)


def _client_error(call) -> tuple[str, int]:
    with pytest.raises(ClientError) as excinfo:
        call()
    response = excinfo.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_it_keeps_the_configuration_set_with_the_aws_cli(gw, acme, owner, tmp_path):
    mark = audit_mark()

    _put_cors_with_aws_cli(tmp_path, gw, acme, RULES)

    read = _aws(
        tmp_path,
        gw.url,
        acme.key_id,
        acme.secret,
        "s3api",
        "get-bucket-cors",
        "--bucket",
        acme.bucket,
    )
    assert json.loads(read) == {"CORSRules": RULES}
    answer = acme.s3.get_bucket_cors(Bucket=acme.bucket)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert answer["CORSRules"] == RULES
    [event] = [e for e in events_since(mark) if e.action == "bucket.cors_changed"]
    assert event.org == owner.org
    assert (event.actor_type, event.actor_label) == ("access_key", acme.key_id)
    assert (event.target_type, event.target_id) == ("bucket", acme.bucket)
    assert event.source_ip == "127.0.0.1"
    assert event.details == {"name": acme.bucket, "access_key": acme.key_id, "rules": 2}

    # A second configuration replaces the first whole.
    replaced = acme.s3.put_bucket_cors(
        Bucket=acme.bucket, CORSConfiguration={"CORSRules": [ANYONE_RULE]}
    )
    assert replaced["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert acme.s3.get_bucket_cors(Bucket=acme.bucket)["CORSRules"] == [ANYONE_RULE]
    assert (
        AuditEvent.objects.filter(
            org=owner.org, action="bucket.cors_changed", target_id=acme.bucket
        ).count()
        == 2
    )


def test_it_answers_preflights_that_a_rule_allows(gw, configured):
    allowed = _preflight(
        gw, f"/{configured.bucket}/photo.jpg", APP_ORIGIN, "PUT", "Content-Type, X-Amz-Meta-Color"
    )
    assert allowed.status_code == 200
    assert _cors_headers(allowed) == {
        "access-control-allow-origin": APP_ORIGIN,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, PUT",
        "access-control-allow-headers": "content-type, x-amz-meta-color",
        "access-control-max-age": "600",
        "vary": NAMED_ORIGIN_VARY,
    }
    assert allowed.content == b""

    # A preflight for the bucket itself (a listing) is answered from the same rules.
    listing = _preflight(gw, f"/{configured.bucket}", APP_ORIGIN, "GET")
    assert listing.status_code == 200
    assert _cors_headers(listing) == {
        "access-control-allow-origin": APP_ORIGIN,
        "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, PUT",
        "access-control-max-age": "600",
        "vary": NAMED_ORIGIN_VARY,
    }

    # HEAD is allowed to any origin by the "*" rule: the answer says "*", not the origin.
    anyone = _preflight(gw, f"/{configured.bucket}/photo.jpg", OTHER_ORIGIN, "HEAD")
    assert anyone.status_code == 200
    assert _cors_headers(anyone) == {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "HEAD",
        "vary": "Origin",
    }


@pytest.mark.parametrize(
    ("origin", "method", "headers"),
    [
        pytest.param(OTHER_ORIGIN, "GET", None, id="origin-not-allowed"),
        pytest.param("https://app.example.com.evil.net", "GET", None, id="origin-suffixed"),
        pytest.param(APP_ORIGIN, "DELETE", None, id="method-not-allowed"),
        pytest.param(APP_ORIGIN, "PUT", "content-type, authorization", id="header-not-allowed"),
    ],
)
def test_it_refuses_preflights_no_rule_allows(gw, configured, origin, method, headers):
    refused = _preflight(gw, f"/{configured.bucket}/photo.jpg", origin, method, headers)

    assert refused.status_code == 403
    assert error_code(refused.content) == "AccessForbidden"
    assert _message(refused) == NOT_ALLOWED
    assert b"<Method>OPTIONS</Method>" in refused.content
    assert _cors_headers(refused) == {}


@pytest.mark.parametrize(
    ("origin", "method", "message"),
    [
        pytest.param(
            None, "GET", "Insufficient information. Origin request header needed.", id="no-origin"
        ),
        pytest.param(APP_ORIGIN, None, "Invalid Access-Control-Request-Method.", id="no-method"),
        pytest.param(
            APP_ORIGIN, "PATCH", "Invalid Access-Control-Request-Method.", id="unknown-method"
        ),
    ],
)
def test_it_answers_bad_request_to_incomplete_preflights(gw, configured, origin, method, message):
    refused = _preflight(gw, f"/{configured.bucket}/photo.jpg", origin, method)

    assert refused.status_code == 400
    assert error_code(refused.content) == "BadRequest"
    assert _message(refused) == message
    assert _cors_headers(refused) == {}


def test_it_adds_cors_headers_to_answers_for_an_allowed_origin_only(gw, configured):
    get_url = configured.s3.generate_presigned_url(
        "get_object", Params={"Bucket": configured.bucket, "Key": "photo.jpg"}, ExpiresIn=300
    )
    head_url = configured.s3.generate_presigned_url(
        "head_object", Params={"Bucket": configured.bucket, "Key": "photo.jpg"}, ExpiresIn=300
    )

    allowed = httpx.get(get_url, headers={"Origin": APP_ORIGIN}, timeout=10)
    assert allowed.status_code == 200
    assert allowed.content == b"jpeg bytes"
    assert _cors_headers(allowed) == {
        "access-control-allow-origin": APP_ORIGIN,
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": "ETag, x-amz-meta-color",
        "vary": NAMED_ORIGIN_VARY,
    }
    assert allowed.headers["x-amz-meta-color"] == "red"

    # The "*" rule allows HEAD only; a GET from another origin gets its answer, without
    # the headers that would let a page read it.
    other = httpx.get(get_url, headers={"Origin": OTHER_ORIGIN}, timeout=10)
    assert other.status_code == 200
    assert other.content == b"jpeg bytes"
    assert _cors_headers(other) == {}
    anyone = httpx.head(head_url, headers={"Origin": OTHER_ORIGIN}, timeout=10)
    assert anyone.status_code == 200
    assert _cors_headers(anyone) == {"access-control-allow-origin": "*", "vary": "Origin"}

    without_origin = httpx.get(get_url, timeout=10)
    assert without_origin.status_code == 200
    assert _cors_headers(without_origin) == {}


def test_it_keeps_the_configuration_from_other_orgs(gw, configured, outsider, tmp_path):
    their_key, their_secret = new_key(outsider, "globex-laptop")
    theirs = s3_client(gw.url, their_key.id, their_secret)
    mark = audit_mark()

    assert _client_error(lambda: theirs.get_bucket_cors(Bucket=configured.bucket)) == (
        "AccessDenied",
        403,
    )
    assert _client_error(
        lambda: theirs.put_bucket_cors(
            Bucket=configured.bucket,
            CORSConfiguration={
                "CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": [OTHER_ORIGIN]}]
            },
        )
    ) == ("AccessDenied", 403)
    assert _client_error(lambda: theirs.delete_bucket_cors(Bucket=configured.bucket)) == (
        "AccessDenied",
        403,
    )
    cli = _run_aws(
        tmp_path,
        gw.url,
        their_key.id,
        their_secret,
        "s3api",
        "get-bucket-cors",
        "--bucket",
        configured.bucket,
    )
    assert cli.returncode != 0
    assert "AccessDenied" in cli.stderr, cli.stderr

    assert configured.s3.get_bucket_cors(Bucket=configured.bucket)["CORSRules"] == RULES
    assert [e.action for e in events_since(mark) if e.action == "bucket.cors_changed"] == []


def test_it_answers_no_such_bucket_for_a_name_no_org_holds(gw, acme):
    missing = bucket_name()
    mark = audit_mark()

    assert _client_error(lambda: acme.s3.get_bucket_cors(Bucket=missing)) == ("NoSuchBucket", 404)
    assert _client_error(
        lambda: acme.s3.put_bucket_cors(
            Bucket=missing, CORSConfiguration={"CORSRules": [ANYONE_RULE]}
        )
    ) == ("NoSuchBucket", 404)
    assert _client_error(lambda: acme.s3.delete_bucket_cors(Bucket=missing)) == (
        "NoSuchBucket",
        404,
    )
    # A preflight carries no credentials: a name nobody holds answers as a bucket without
    # rules, telling nothing about it.
    refused = _preflight(gw, f"/{missing}/photo.jpg", APP_ORIGIN, "GET")
    assert refused.status_code == 403
    assert error_code(refused.content) == "AccessForbidden"
    assert _message(refused) == NOT_ENABLED
    assert [e.action for e in events_since(mark) if e.action == "bucket.cors_changed"] == []


def test_it_deletes_the_configuration(gw, acme, owner, tmp_path):
    # No configuration yet: S3's own 404, and preflights find CORS not enabled.
    assert _client_error(lambda: acme.s3.get_bucket_cors(Bucket=acme.bucket)) == (
        "NoSuchCORSConfiguration",
        404,
    )
    _put_cors_with_aws_cli(tmp_path, gw, acme, RULES)
    assert _preflight(gw, f"/{acme.bucket}/photo.jpg", APP_ORIGIN, "GET").status_code == 200
    mark = audit_mark()

    _aws(
        tmp_path,
        gw.url,
        acme.key_id,
        acme.secret,
        "s3api",
        "delete-bucket-cors",
        "--bucket",
        acme.bucket,
    )

    read = _run_aws(
        tmp_path,
        gw.url,
        acme.key_id,
        acme.secret,
        "s3api",
        "get-bucket-cors",
        "--bucket",
        acme.bucket,
    )
    assert read.returncode != 0
    assert "NoSuchCORSConfiguration" in read.stderr, read.stderr
    assert _client_error(lambda: acme.s3.get_bucket_cors(Bucket=acme.bucket)) == (
        "NoSuchCORSConfiguration",
        404,
    )
    refused = _preflight(gw, f"/{acme.bucket}/photo.jpg", APP_ORIGIN, "GET")
    assert refused.status_code == 403
    assert error_code(refused.content) == "AccessForbidden"
    assert _message(refused) == NOT_ENABLED
    get_url = acme.s3.generate_presigned_url(
        "get_object", Params={"Bucket": acme.bucket, "Key": "photo.jpg"}, ExpiresIn=300
    )
    assert _cors_headers(httpx.get(get_url, headers={"Origin": APP_ORIGIN}, timeout=10)) == {}
    [event] = [e for e in events_since(mark) if e.action == "bucket.cors_changed"]
    assert (event.org, event.target_id) == (owner.org, acme.bucket)
    assert event.details == {"name": acme.bucket, "access_key": acme.key_id, "rules": 0}

    # Deleting again is idempotent, as in S3.
    again = acme.s3.delete_bucket_cors(Bucket=acme.bucket)
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 204


def _configuration(*rules: str) -> bytes:
    return (
        f"<CORSConfiguration {S3_XMLNS}>".encode()
        + b"".join(f"<CORSRule>{rule}</CORSRule>".encode() for rule in rules)
        + b"</CORSConfiguration>"
    )


GET_ANYWHERE = "<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param(
            _configuration("<AllowedMethod>GET</AllowedMethod>"),
            "MalformedXML",
            id="no-allowed-origin",
        ),
        pytest.param(
            _configuration(
                f"<AllowedOrigin>{APP_ORIGIN}</AllowedOrigin><AllowedMethod>PATCH</AllowedMethod>"
            ),
            "InvalidRequest",
            id="method-patch",
        ),
        pytest.param(
            _configuration(
                "<AllowedOrigin>https://*.example.*</AllowedOrigin>"
                "<AllowedMethod>GET</AllowedMethod>"
            ),
            "InvalidRequest",
            id="two-wildcards-in-an-origin",
        ),
        pytest.param(_configuration(*[GET_ANYWHERE] * 101), "MalformedXML", id="101-rules"),
        pytest.param(
            b'<?xml version="1.0"?>\n<!DOCTYPE CORSConfiguration [<!ENTITY o "*">]>\n'
            + _configuration(
                "<AllowedOrigin>&o;</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
            ),
            "MalformedXML",
            id="doctype",
        ),
        pytest.param(_configuration(), "MalformedXML", id="no-rules"),
        pytest.param(b"<CORSConfiguration><CORSRule>", "MalformedXML", id="not-xml"),
    ],
)
def test_it_refuses_malformed_configurations_and_keeps_the_stored_one(gw, configured, body, code):
    mark = audit_mark()

    refused = _signed_put_cors(gw, configured, body)

    assert refused.status_code == 400, refused.content
    assert error_code(refused.content) == code
    assert configured.s3.get_bucket_cors(Bucket=configured.bucket)["CORSRules"] == RULES
    assert [e.action for e in events_since(mark) if e.action == "bucket.cors_changed"] == []


def test_it_refuses_a_malformed_configuration_sent_by_the_aws_cli(gw, configured, tmp_path):
    patch = _run_aws(
        tmp_path,
        gw.url,
        configured.key_id,
        configured.secret,
        "s3api",
        "put-bucket-cors",
        "--bucket",
        configured.bucket,
        "--cors-configuration",
        json.dumps({"CORSRules": [{"AllowedMethods": ["PATCH"], "AllowedOrigins": ["*"]}]}),
    )

    assert patch.returncode != 0
    assert "InvalidRequest" in patch.stderr, patch.stderr
    assert "Unsupported method is PATCH" in patch.stderr, patch.stderr
    assert configured.s3.get_bucket_cors(Bucket=configured.bucket)["CORSRules"] == RULES
