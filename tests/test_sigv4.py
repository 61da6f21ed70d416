"""SigV4 verification (gateway/sigv4.py) against requests that botocore itself signed.

No database: every request is built by botocore (a real boto3 client whose HTTP send is
intercepted, or botocore's signers on an AWSRequest) at a frozen time, then fed to the
verifier as the gateway would receive it. aws-chunked bodies with chunk signatures, which
botocore does not produce, come from the small signer in the "Chunk signing" section, whose
seed signature is checked against botocore's header signature and whose algorithm is checked
against the worked examples in the S3 API reference.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import re
import threading
import xml.etree.ElementTree as ET
import zlib
from datetime import datetime
from functools import cache
from urllib.parse import urlsplit

import boto3
import botocore.auth
import botocore.utils
import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from gateway import sigv4
from gateway.sigv4 import Request, S3Error

ACCESS_KEY = "EXCABCDEFGHIJKLMNOPQ"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE1"
REGION = "us-east-1"
CREDENTIALS = Credentials(ACCESS_KEY, SECRET)
FROZEN = datetime(2025, 3, 14, 15, 9, 26)  # naive UTC, as botocore's clock returns it
NOW = float(calendar.timegm(FROZEN.timetuple()))
AMZ_DATE = "20250314T150926Z"
SCOPE = f"20250314/{REGION}/s3/aws4_request"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

ODD_KEYS = [
    "a b",
    "a+b",
    "100%",
    "50%25 literally",
    "unicodé/ключ/名前",
    "a//b",
    "/leading",
    "~tilde",
    "eq=x&y",
    "dots/../and/./segments",
    "everything a b+c%d/é//~=x?#&;:,@$!'()*",
]


@pytest.fixture(autouse=True)
def frozen_botocore_clock(monkeypatch):
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *args, **kwargs: FROZEN)


# ---------------------------------------------------------------------------------------
# Helpers: from botocore's request to what the gateway receives


def host_of(url: str) -> str:
    # What the HTTP client sends as Host: the port only when it is not the scheme default.
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}[parts.scheme]
    if parts.port is None or parts.port == default:
        return parts.hostname
    return f"{parts.hostname}:{parts.port}"


def to_request(method: str, url: str, headers, now: float = NOW) -> Request:
    parts = urlsplit(url)
    pairs = [("Host", host_of(url))]
    for name, value in headers:
        pairs.append((name, value.decode("latin-1") if isinstance(value, bytes) else value))
    return Request(method, parts.path, parts.query, pairs, now=now)


def provider(secret: str = SECRET):
    return lambda access_key_id, date, region: sigv4.derive_signing_key(secret, date, region)


def verify(request: Request, secret: str = SECRET, region: str = REGION) -> sigv4.Verified:
    auth = sigv4.parse(request, region=region)
    assert auth.access_key_id == ACCESS_KEY
    return sigv4.verify(auth, provider(secret))


def read_body(verified: sigv4.Verified, body: bytes, step: int | None = None) -> bytes:
    reader = verified.body()
    step = step or max(len(body), 1)
    out = [reader.feed(body[i : i + step]) for i in range(0, len(body), step)]
    out.append(reader.finish())
    return b"".join(out)


def error_of(call, *args, **kwargs) -> S3Error:
    with pytest.raises(S3Error) as caught:
        call(*args, **kwargs)
    return caught.value


def replace_header(request: Request, name: str, value: str | None) -> Request:
    headers = [(k, v) for k, v in request.headers if k.lower() != name.lower()]
    if value is not None:
        headers.append((name, value))
    return Request(request.method, request.path, request.query, headers, now=request.now)


def header(request: Request, name: str) -> str:
    return next(v for k, v in request.headers if k.lower() == name.lower())


def sign(method: str, url: str, headers=None, body: bytes = b"", signer=None) -> Request:
    aws = AWSRequest(method=method, url=url, data=body)
    for name, value in headers or ():
        aws.headers[name] = value  # HTTPHeaders appends: repeated names stay repeated
    (signer or S3SigV4Auth(CREDENTIALS, "s3", REGION)).add_auth(aws)
    return to_request(method, aws.url, aws.headers.items())


class _Sent(Exception):
    """Raised instead of sending: the request is captured before it hits the network."""


@cache
def s3_client(endpoint: str, addressing: str = "path", region: str = REGION, secret: str = SECRET):
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=secret,
        region_name=region,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": addressing},
            retries={"max_attempts": 1},
        ),
    )


def send(client, operation: str, **params) -> tuple[Request, bytes]:
    """Run a boto3 operation up to the HTTP send; return the request and the raw body."""
    captured = []

    def before_send(request, **kwargs):
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        captured.append((request, bytes(body or b"")))
        raise _Sent

    client.meta.events.register("before-send", before_send)
    try:
        with pytest.raises(_Sent):
            getattr(client, operation)(**params)
    finally:
        client.meta.events.unregister("before-send", before_send)
    prepared, body = captured[0]
    return to_request(prepared.method, prepared.url, prepared.headers.items()), body


# ---------------------------------------------------------------------------------------
# Header auth: every shape a real client sends


@pytest.mark.parametrize(
    "endpoint,addressing",
    [
        ("http://s3.example.test:9000", "path"),
        ("http://s3.example.test:9000", "virtual"),
        ("https://s3.example.test", "path"),
        ("https://s3.example.test", "virtual"),
        ("http://127.0.0.1:8333", "path"),
    ],
)
@pytest.mark.parametrize("key", ODD_KEYS)
def test_it_verifies_boto3_get_object_for_odd_keys(endpoint, addressing, key):
    request, _ = send(s3_client(endpoint, addressing), "get_object", Bucket="bkt", Key=key)
    verified = verify(request)
    assert verified.access_key_id == ACCESS_KEY
    assert verified.payload == EMPTY_SHA256
    assert read_body(verified, b"") == b""


@pytest.mark.parametrize("key", ODD_KEYS)
def test_it_verifies_boto3_put_over_http_with_literal_hash_and_crc32_header(key):
    body = f"contents of {key}".encode()
    request, sent = send(
        s3_client("http://s3.example.test:9000"), "put_object", Bucket="bkt", Key=key, Body=body
    )
    assert header(request, "x-amz-content-sha256") == hashlib.sha256(body).hexdigest()
    assert header(request, "x-amz-checksum-crc32")
    verified = verify(request)
    assert not verified.streaming
    assert read_body(verified, sent, step=3) == body


@pytest.mark.parametrize("key", ODD_KEYS)
def test_it_verifies_boto3_put_over_https_with_unsigned_trailer(key):
    body = bytes(range(256)) * 5
    request, sent = send(
        s3_client("https://s3.example.test", "virtual"),
        "put_object",
        Bucket="bkt",
        Key=key,
        Body=body,
    )
    assert header(request, "x-amz-content-sha256") == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
    assert b"x-amz-checksum-crc32:" in sent
    verified = verify(request)
    assert verified.streaming
    assert read_body(verified, sent) == body
    assert read_body(verified, sent, step=7) == body


@pytest.mark.parametrize("algorithm", ["SHA256", "SHA1", "CRC32"])
def test_it_checks_every_trailer_checksum_botocore_sends(algorithm):
    body = b"checksummed " * 100
    request, sent = send(
        s3_client("https://s3.example.test"),
        "put_object",
        Bucket="bkt",
        Key="k",
        Body=body,
        ChecksumAlgorithm=algorithm,
    )
    assert f"x-amz-checksum-{algorithm.lower()}:".encode() in sent
    assert read_body(verify(request), sent) == body


@pytest.mark.parametrize(
    "operation,params,query",
    [
        ("list_objects_v2", {"Bucket": "bkt", "Prefix": "a b"}, "prefix=a%20b"),
        ("list_objects_v2", {"Bucket": "bkt", "Prefix": "x/y+z", "StartAfter": ""}, "list-type=2"),
        ("create_multipart_upload", {"Bucket": "bkt", "Key": "big file"}, "uploads"),
        ("list_multipart_uploads", {"Bucket": "bkt"}, "uploads"),
        ("upload_part", {"Bucket": "bkt", "Key": "k", "PartNumber": 3, "UploadId": "u/1+2="}, ""),
        ("list_object_versions", {"Bucket": "bkt", "Prefix": "ünï"}, "versions"),
        ("get_object_tagging", {"Bucket": "bkt", "Key": "k k"}, "tagging"),
        ("delete_objects", {"Bucket": "bkt", "Delete": {"Objects": [{"Key": "a b"}]}}, "delete"),
        ("head_object", {"Bucket": "bkt", "Key": "k", "Range": "bytes=0-9"}, ""),
        ("list_buckets", {}, ""),
        ("copy_object", {"Bucket": "b", "Key": "k", "CopySource": "src/a b+c"}, ""),
    ],
)
def test_it_verifies_boto3_operations_with_queries(operation, params, query):
    request, sent = send(s3_client("http://s3.example.test:9000"), operation, **params)
    assert query in request.query
    verified = verify(request)
    assert read_body(verified, sent) == sent


def test_it_verifies_a_bare_subresource_as_key_equals_empty():
    request, _ = send(
        s3_client("http://s3.example.test:9000"), "list_multipart_uploads", Bucket="b"
    )
    assert request.query == "uploads"
    verify(request)
    assert sigv4.canonical_query("uploads") == "uploads="


def test_it_verifies_empty_and_repeated_query_values():
    request = sign("GET", "http://s3.example.test:9000/bkt?z=&a=2&a=1&a=&b&c=%2F%20~")
    verify(request)


def test_it_verifies_folded_whitespace_and_repeated_headers():
    request = sign(
        "PUT",
        "http://s3.example.test:9000/bkt/k",
        headers=[
            ("X-Amz-Meta-Note", "  two   spaces\tand tab  "),
            ("X-Amz-Meta-Tag", "first"),
            ("X-Amz-Meta-Tag", "second  value"),
            ("Content-Type", "text/plain;   charset=utf-8"),
        ],
        body=b"x",
    )
    assert sum(1 for k, _ in request.headers if k.lower() == "x-amz-meta-tag") == 2
    assert read_body(verify(request), b"x") == b"x"


def test_it_verifies_a_signed_date_header_without_x_amz_date():
    request = sign("GET", "http://s3.example.test:9000/bkt/k", headers=[("Date", "placeholder")])
    assert not any(k.lower() == "x-amz-date" for k, _ in request.headers)
    assert header(request, "Date").startswith("Fri, 14 Mar 2025 15:09:26 ")
    verify(request)


def test_it_accepts_authorization_components_without_spaces():
    request = sign("GET", "http://s3.example.test:9000/bkt/k")
    compact = header(request, "Authorization").replace(", ", ",")
    verify(replace_header(request, "Authorization", compact))


def test_it_verifies_requests_from_the_asgi_scope():
    request = sign("GET", "http://s3.example.test:9000/bkt/a%20b%2Bc/%C3%A9?prefix=a%20b&uploads")
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/bkt/a b+c/é",
        "raw_path": request.path.encode(),
        "query_string": request.query.encode(),
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in request.headers],
    }
    asgi = Request.from_asgi(scope, now=NOW)
    assert (asgi.path, asgi.query) == (request.path, request.query)
    verify(asgi)


# ---------------------------------------------------------------------------------------
# Presigned URLs


def presign(operation: str, expires: int = 3600, **params) -> Request:
    url = s3_client("http://s3.example.test:9000").generate_presigned_url(
        operation, Params=params, ExpiresIn=expires
    )
    return to_request({"get_object": "GET", "put_object": "PUT"}[operation], url, [])


@pytest.mark.parametrize("key", ODD_KEYS)
def test_it_verifies_presigned_get(key):
    request = presign("get_object", Bucket="bkt", Key=key)
    assert "X-Amz-Signature=" in request.query
    verified = verify(request)
    assert verified.presigned
    assert verified.payload == "UNSIGNED-PAYLOAD"


def test_it_verifies_presigned_put_with_a_signed_content_type_and_any_body():
    request = presign("put_object", Bucket="bkt", Key="up load", ContentType="text/plain")
    request = replace_header(request, "Content-Type", "text/plain")
    verified = verify(request)
    assert read_body(verified, b"anything at all", step=4) == b"anything at all"
    # The signed content-type cannot be changed by whoever holds the URL.
    tampered = replace_header(request, "Content-Type", "text/html")
    assert error_of(verify, tampered).code == "SignatureDoesNotMatch"


def test_it_verifies_presigned_urls_from_botocore_query_signer():
    aws = AWSRequest(
        method="GET", url="https://bkt.s3.example.test/k%20k?versionId=3&x-id=GetObject"
    )
    S3SigV4QueryAuth(CREDENTIALS, "s3", REGION, expires=60).add_auth(aws)
    verify(to_request("GET", aws.url, []))


def test_it_refuses_an_expired_presigned_url():
    request = presign("get_object", expires=60, Bucket="bkt", Key="k")
    later = Request(request.method, request.path, request.query, request.headers, now=NOW + 61)
    verify(Request(request.method, request.path, request.query, request.headers, now=NOW + 60))
    error = error_of(verify, later)
    assert (error.code, error.status, error.message) == ("AccessDenied", 403, "Request has expired")
    assert error.extra["X-Amz-Expires"] == "60"


def test_it_refuses_a_presigned_url_dated_in_the_future():
    request = presign("get_object", Bucket="bkt", Key="k")
    early = Request(request.method, request.path, request.query, request.headers, now=NOW - 901)
    error = error_of(verify, early)
    assert (error.code, error.message) == ("AccessDenied", "Request is not valid yet")
    verify(Request(request.method, request.path, request.query, request.headers, now=NOW - 899))


@pytest.mark.parametrize(
    "param",
    ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders"],
)
def test_it_requires_every_presign_parameter(param):
    request = presign("get_object", Bucket="bkt", Key="k")
    query = "&".join(p for p in request.query.split("&") if not p.startswith(param + "="))
    stripped = Request("GET", request.path, query, request.headers, now=NOW)
    error = error_of(sigv4.parse, stripped, region=REGION)
    assert (error.code, error.status) == ("AuthorizationQueryParametersError", 400)


@pytest.mark.parametrize(
    "expires,ok",
    [
        ("1", True),
        ("604800", True),
        ("604801", False),
        ("0", False),
        ("-5", False),
        ("soon", False),
    ],
)
def test_it_bounds_x_amz_expires(expires, ok):
    request = presign("get_object", Bucket="bkt", Key="k")
    query = request.query.replace("X-Amz-Expires=3600", f"X-Amz-Expires={expires}")
    changed = Request("GET", request.path, query, request.headers, now=NOW)
    if ok:
        # The expiry is signed, so a changed value parses but no longer verifies.
        assert error_of(verify, changed).code == "SignatureDoesNotMatch"
    else:
        assert error_of(sigv4.parse, changed, region=REGION).code == (
            "AuthorizationQueryParametersError"
        )


def test_it_refuses_header_and_query_auth_together():
    request = presign("get_object", Bucket="bkt", Key="k")
    signed = sign("GET", "http://s3.example.test:9000/bkt/k")
    both = replace_header(request, "Authorization", header(signed, "Authorization"))
    assert error_of(sigv4.parse, both, region=REGION).code == "InvalidArgument"


def test_it_refuses_a_tampered_presigned_url():
    request = presign("get_object", Bucket="bkt", Key="k")
    for path, query in (
        ("/bkt/other", request.query),
        (request.path, request.query + "&response-content-type=text%2Fhtml"),
    ):
        tampered = Request("GET", path, query, request.headers, now=NOW)
        assert error_of(verify, tampered).code == "SignatureDoesNotMatch"


# ---------------------------------------------------------------------------------------
# Header auth: refusals


def test_it_refuses_a_wrong_secret_and_explains_what_it_signed():
    request, _ = send(s3_client("http://s3.example.test:9000"), "get_object", Bucket="b", Key="a b")
    error = error_of(verify, request, secret="x" * 40)
    assert (error.code, error.status) == ("SignatureDoesNotMatch", 403)
    assert error.extra["StringToSign"].startswith(f"AWS4-HMAC-SHA256\n{AMZ_DATE}\n{SCOPE}\n")
    assert error.extra["CanonicalRequest"].startswith(
        "GET\n/b/a%20b\n\nhost:s3.example.test:9000\n"
    )
    body = ET.fromstring(sigv4.error_xml(error, request_id="req-1"))
    assert body.findtext("Code") == "SignatureDoesNotMatch"
    assert body.findtext("CanonicalRequest") == error.extra["CanonicalRequest"]
    assert body.findtext("RequestId") == "req-1"


@pytest.mark.parametrize(
    "change",
    [
        lambda r: Request(r.method, r.path + "x", r.query, r.headers, now=NOW),
        lambda r: Request(r.method, r.path.replace("%20", "+"), r.query, r.headers, now=NOW),
        lambda r: Request(r.method, r.path.replace("%20", "%2520"), r.query, r.headers, now=NOW),
        lambda r: Request(r.method, r.path, r.query.replace("a%20b", "a%20c"), r.headers, now=NOW),
        lambda r: Request(r.method, r.path, r.query + "&max-keys=1", r.headers, now=NOW),
        lambda r: Request("DELETE", r.path, r.query, r.headers, now=NOW),
        lambda r: replace_header(r, "Host", "other.example.test:9000"),
        lambda r: replace_header(r, "X-Amz-Meta-Owner", "mallory"),
        lambda r: replace_header(r, "X-Amz-Content-SHA256", "UNSIGNED-PAYLOAD"),
    ],
)
def test_it_refuses_a_tampered_request(change):
    request = sign(
        "GET",
        "http://s3.example.test:9000/bkt/a%20b?prefix=a%20b",
        headers=[("X-Amz-Meta-Owner", "alice")],
    )
    verify(request)
    assert error_of(verify, change(request)).code == "SignatureDoesNotMatch"


def test_it_refuses_a_tampered_body_with_a_literal_hash_and_never_releases_all_of_it():
    body = b"0123456789" * 10
    request, sent = send(
        s3_client("http://s3.example.test:9000"), "put_object", Bucket="b", Key="k", Body=body
    )
    reader = verify(request).body()
    released = reader.feed(b"X" + sent[1:50]) + reader.feed(sent[50:])
    assert len(released) < len(body)
    error = error_of(reader.finish)
    assert (error.code, error.status) == ("XAmzContentSHA256Mismatch", 400)
    assert error.extra["ClientComputedContentSHA256"] == hashlib.sha256(body).hexdigest()


def test_it_refuses_a_body_whose_crc32_header_does_not_match():
    body = b"payload"
    wrong = base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big")).decode()
    request = sign(
        "PUT",
        "http://s3.example.test:9000/b/k",
        headers=[("x-amz-checksum-crc32", wrong)],
        body=body,
    )
    reader = verify(request).body()
    reader.feed(body)
    error = error_of(reader.finish)
    assert (error.code, error.message) == (
        "BadDigest",
        "The CRC32 you specified did not match the calculated checksum.",
    )


def test_it_leaves_the_object_checksum_of_complete_multipart_upload_to_the_store():
    body = b"<CompleteMultipartUpload/>"
    whole_object = base64.b64encode(zlib.crc32(b"the whole object").to_bytes(4, "big")).decode()
    request = sign(
        "POST",
        "http://s3.example.test:9000/b/k?uploadId=abc",
        headers=[("x-amz-checksum-crc32", whole_object)],
        body=body,
    )
    assert read_body(verify(request), body) == body


def test_it_refuses_an_invalid_checksum_header_value():
    request = sign(
        "PUT", "http://s3.example.test:9000/b/k", headers=[("x-amz-checksum-crc32", "nope")]
    )
    error = error_of(verify(request).body)
    assert (error.code, error.status) == ("InvalidRequest", 400)


def test_it_refuses_unsigned_x_amz_headers():
    request = sign("PUT", "http://s3.example.test:9000/b/k", body=b"x")
    injected = replace_header(request, "x-amz-acl", "public-read")
    error = error_of(sigv4.parse, injected, region=REGION)
    assert (error.code, error.status) == ("AccessDenied", 403)
    assert error.extra["HeadersNotSigned"] == "x-amz-acl"
    sigv4.parse(request, region=REGION)


def test_it_refuses_unsigned_x_amz_headers_on_presigned_urls():
    request = presign("get_object", Bucket="bkt", Key="k")
    injected = replace_header(request, "x-amz-server-side-encryption", "AES256")
    assert error_of(sigv4.parse, injected, region=REGION).code == "AccessDenied"


def test_it_lets_x_amz_content_sha256_go_unsigned():
    request = sign("GET", "http://s3.example.test:9000/b/k")
    value = header(request, "Authorization")
    unsigned = value.replace("host;x-amz-content-sha256;x-amz-date", "host;x-amz-date")
    assert unsigned != value
    # Still refused, but for the signature (botocore signed it), not for the header rule.
    assert error_of(verify, replace_header(request, "Authorization", unsigned)).code == (
        "SignatureDoesNotMatch"
    )


def test_it_requires_host_to_be_signed():
    request = sign("GET", "http://s3.example.test:9000/b/k")
    value = header(request, "Authorization")
    without_host = value.replace("SignedHeaders=host;", "SignedHeaders=")
    assert without_host != value
    error = error_of(
        sigv4.parse, replace_header(request, "Authorization", without_host), region=REGION
    )
    assert (error.code, error.extra["HeadersNotSigned"]) == ("AccessDenied", "host")


def test_it_requires_signed_headers_to_be_present():
    request = sign("GET", "http://s3.example.test:9000/b/k", headers=[("X-Amz-Meta-A", "1")])
    assert error_of(
        sigv4.parse, replace_header(request, "X-Amz-Meta-A", None), region=REGION
    ).code == ("AccessDenied")


@pytest.mark.parametrize("offset,ok", [(-899, True), (899, True), (-901, False), (901, False)])
def test_it_allows_fifteen_minutes_of_clock_skew(offset, ok):
    request = sign("GET", "http://s3.example.test:9000/b/k")
    moved = Request(request.method, request.path, request.query, request.headers, now=NOW + offset)
    if ok:
        verify(moved)
        return
    error = error_of(verify, moved)
    assert (error.code, error.status) == ("RequestTimeTooSkewed", 403)
    assert error.extra["RequestTime"] == AMZ_DATE
    assert error.extra["MaxAllowedSkewMilliseconds"] == "900000"
    assert error.extra["ServerTime"].endswith("Z")


def test_it_requires_a_date():
    request = sign("GET", "http://s3.example.test:9000/b/k")
    for value in (None, "yesterday", "20250314T250000Z", "20250314T150926"):
        error = error_of(sigv4.parse, replace_header(request, "X-Amz-Date", value), region=REGION)
        assert (error.code, error.message) == (
            "AccessDenied",
            "AWS authentication requires a valid Date or x-amz-date header",
        )


def test_it_names_the_expected_region():
    request, _ = send(
        s3_client("http://s3.example.test:9000", region="eu-west-3"),
        "get_object",
        Bucket="b",
        Key="k",
    )
    error = error_of(sigv4.parse, request, region=REGION)
    assert (error.code, error.status) == ("AuthorizationHeaderMalformed", 400)
    assert "'eu-west-3' is wrong; expecting 'us-east-1'" in error.message
    assert error.extra["Region"] == REGION
    assert b"<Region>us-east-1</Region>" in sigv4.error_xml(error)
    verify(request, region="eu-west-3")


def test_it_names_the_expected_region_for_presigned_urls():
    url = s3_client("http://s3.example.test:9000", region="eu-west-3").generate_presigned_url(
        "get_object", Params={"Bucket": "b", "Key": "k"}
    )
    error = error_of(sigv4.parse, to_request("GET", url, []), region=REGION)
    assert error.code == "AuthorizationQueryParametersError"
    assert error.extra["Region"] == REGION


@pytest.mark.parametrize(
    "credential,message",
    [
        (f"{ACCESS_KEY}/20250313/us-east-1/s3/aws4_request", "Invalid credential date"),
        (f"{ACCESS_KEY}/2025031/us-east-1/s3/aws4_request", "incorrect date format"),
        (f"{ACCESS_KEY}/20250314/us-east-1/ec2/aws4_request", 'incorrect service "ec2"'),
        (f"{ACCESS_KEY}/20250314/us-east-1/s3/aws5_request", "incorrect terminal"),
        ("20250314/us-east-1/s3/aws4_request", "mal-formed"),
    ],
)
def test_it_checks_the_credential_scope(credential, message):
    request = sign("GET", "http://s3.example.test:9000/b/k")
    value = header(request, "Authorization")
    changed = value.replace(f"{ACCESS_KEY}/20250314/us-east-1/s3/aws4_request", credential)
    error = error_of(sigv4.parse, replace_header(request, "Authorization", changed), region=REGION)
    assert error.code == "AuthorizationHeaderMalformed"
    assert message in error.message


@pytest.mark.parametrize(
    "value,code",
    [
        (None, "AccessDenied"),
        ("AWS EXCABCDEFGHIJKLMNOPQ:c2lnbmF0dXJl", "InvalidRequest"),
        ("AWS4-HMAC-SHA256 Credential=x", "AuthorizationHeaderMalformed"),
        (
            "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host",
            "AuthorizationHeaderMalformed",
        ),
        ("AWS4-HMAC-SHA256 garbage", "AuthorizationHeaderMalformed"),
    ],
)
def test_it_refuses_missing_and_malformed_authorization(value, code):
    request = sign("GET", "http://s3.example.test:9000/b/k")
    assert (
        error_of(sigv4.parse, replace_header(request, "Authorization", value), region=REGION).code
        == code
    )


def test_it_refuses_an_unknown_payload_mode():
    request = sign("PUT", "http://s3.example.test:9000/b/k")
    changed = replace_header(
        request, "X-Amz-Content-SHA256", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"
    )
    assert error_of(sigv4.parse, changed, region=REGION).code == "InvalidArgument"


def test_it_reads_a_missing_payload_hash_as_the_empty_body():
    # Clients that send no x-amz-content-sha256 sign the body's hash; MinIO reads the
    # missing header as the empty body, which suits GETs and refuses any body.
    aws = AWSRequest(method="GET", url="http://s3.example.test:9000/b/k")
    botocore.auth.SigV4Auth(CREDENTIALS, "s3", REGION).add_auth(aws)
    request = to_request("GET", aws.url, aws.headers.items())
    assert not any(k.lower() == "x-amz-content-sha256" for k, _ in request.headers)
    verified = verify(request)
    assert read_body(verified, b"") == b""
    reader = verified.body()
    reader.feed(b"smuggled")
    assert error_of(reader.finish).code == "XAmzContentSHA256Mismatch"


def test_it_answers_invalid_uri_for_a_broken_escape():
    request = sign("GET", "http://s3.example.test:9000/b/k")
    broken = Request("GET", "/b/k%zz", "", request.headers, now=NOW)
    assert error_of(verify, broken).code == "InvalidURI"


# ---------------------------------------------------------------------------------------
# Canonical pieces, against what botocore itself would sign


@pytest.mark.parametrize("key", ODD_KEYS)
def test_it_canonicalizes_paths_exactly_as_botocore_encodes_them(key):
    encoded = "/b/" + botocore.utils.percent_encode(key, safe="/~")
    assert sigv4.canonical_uri(encoded) == encoded
    # A client that encoded more than it had to, or wrote lowercase escapes, means the same.
    variant = re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), encoded).replace("~", "%7E")
    variant = variant.replace("-", "%2D").replace(".", "%2e")
    assert sigv4.canonical_uri(variant) == encoded


@pytest.mark.parametrize(
    "raw,canonical",
    [
        ("/b/a b", "/b/a%20b"),
        ("/b/a+b", "/b/a%2Bb"),
        ("/b/%7Etilde%2d", "/b/~tilde-"),
        ("/b/%c3%a9", "/b/%C3%A9"),
        ("/b/é", "/b/%C3%A9"),
        ("/b//x/./../y", "/b//x/./../y"),
        ("/b/100%25", "/b/100%25"),
        ("/b/%2D%2E%5F%7E%41", "/b/-._~A"),
        ("/b/%2E%2E/%2D", "/b/../-"),
        ("/b/a%2Fb", "/b/a/b"),
        ("/b/a%3D%2B", "/b/a%3D%2B"),
        ("", "/"),
    ],
)
def test_it_encodes_the_path_once(raw, canonical):
    assert sigv4.canonical_uri(raw) == canonical


@pytest.mark.parametrize(
    "raw,canonical",
    [
        ("", ""),
        ("uploads", "uploads="),
        ("list-type=2&prefix=a+b", "list-type=2&prefix=a%20b"),
        ("prefix=a%20b&list-type=2", "list-type=2&prefix=a%20b"),
        ("b=2&a=3&a=1&a=", "a=&a=1&a=3&b=2"),
        ("x=a/b&y=%2f&z=%7E", "x=a%2Fb&y=%2F&z=~"),
        ("k=%2B&p=1+1", "k=%2B&p=1%201"),
        ("&&a=1&", "a=1"),
        ("u=%C3%A9&v=é", "u=%C3%A9&v=%C3%A9"),
        ("z=1&a=b+c", "a=b%20c&z=1"),
        ("k=%2D%2E%5F%7E%41", "k=-._~A"),
        ("k=%2D&j=%2E", "j=.&k=-"),
        ("k=%5F", "k=_"),
        ("a=b=c&a=b", "a=b&a=b%3Dc"),
        ("a-b=1&a=2&a.b=0", "a=2&a-b=1&a.b=0"),
        ("ab=1&a=2&a", "a=&a=2&ab=1"),
    ],
)
def test_it_canonicalizes_queries_per_rfc_3986(raw, canonical):
    assert sigv4.canonical_query(raw) == canonical


def test_it_derives_the_aws_documented_signing_key():
    # "Derive a signing key" example in the AWS General Reference.
    key = sigv4.derive_signing_key(
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830", "us-east-1", "iam"
    )
    assert key.hex() == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"


# ---------------------------------------------------------------------------------------
# Chunk signing: a separate, minimal signer for STREAMING-AWS4-HMAC-SHA256-PAYLOAD bodies


def _hmac_hex(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def independent_signing_key(secret: str, date: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


class ChunkSigner:
    """Signs aws-chunked bodies per the S3 API reference ("Signature calculations for the
    Authorization header: transferring payload in multiple chunks")."""

    def __init__(self, key: bytes, seed: str, amz_date: str = AMZ_DATE, scope: str = SCOPE):
        self.key, self.previous, self.amz_date, self.scope = key, seed, amz_date, scope

    def chunk(self, data: bytes) -> bytes:
        string_to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                self.amz_date,
                self.scope,
                self.previous,
                EMPTY_SHA256,
                hashlib.sha256(data).hexdigest(),
            ]
        )
        self.previous = _hmac_hex(self.key, string_to_sign)
        return f"{len(data):x};chunk-signature={self.previous}\r\n".encode() + data + b"\r\n"

    def final(self, trailer: tuple[str, str] | None = None) -> bytes:
        last = self.chunk(b"")[:-2]  # "0;chunk-signature=...\r\n"
        if trailer is None:
            return last + b"\r\n"
        line = f"{trailer[0]}:{trailer[1]}"
        string_to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-TRAILER",
                self.amz_date,
                self.scope,
                self.previous,
                hashlib.sha256(f"{line}\n".encode()).hexdigest(),
            ]
        )
        signature = _hmac_hex(self.key, string_to_sign)
        return last + f"{line}\r\nx-amz-trailer-signature:{signature}\r\n\r\n".encode()

    def body(self, payload: bytes, size: int, trailer: tuple[str, str] | None = None) -> bytes:
        chunks = [self.chunk(payload[i : i + size]) for i in range(0, len(payload), size)]
        return b"".join(chunks) + self.final(trailer)


def independent_seed(request: Request, signed: list[str], payload_mode: str, key: bytes) -> str:
    values = {k.lower(): " ".join(v.split()) for k, v in request.headers}
    canonical = "\n".join(
        [
            request.method,
            request.path,
            "",
            "".join(f"{name}:{values[name]}\n" for name in signed),
            ";".join(signed),
            payload_mode,
        ]
    )
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", AMZ_DATE, SCOPE, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    return _hmac_hex(key, string_to_sign)


class StreamingSigV4Auth(S3SigV4Auth):
    """botocore's S3 signer with the payload hash set to a streaming mode."""

    def __init__(self, mode: str):
        super().__init__(CREDENTIALS, "s3", REGION)
        self.mode = mode

    def payload(self, request):
        return self.mode


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def streaming_upload(
    payload: bytes,
    size: int = 16,
    trailer: bool = False,
    declared_length: int | None = None,
    trailer_value: str | None = None,
    send_length: bool = True,
) -> tuple[Request, bytes, ChunkSigner]:
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if trailer else "")
    headers = [("Content-Encoding", "aws-chunked"), ("X-Amz-Storage-Class", "STANDARD")]
    if send_length:
        length = len(payload) if declared_length is None else declared_length
        headers.append(("X-Amz-Decoded-Content-Length", str(length)))
    if trailer:
        headers.append(("X-Amz-Trailer", "x-amz-checksum-crc32"))
    request = sign(
        "PUT",
        "http://s3.example.test:9000/bkt/chunked%20object",
        headers,
        signer=StreamingSigV4Auth(mode),
    )
    botocore_seed = header(request, "Authorization").rsplit("Signature=", 1)[1]
    signed = header(request, "Authorization").split("SignedHeaders=")[1].split(",")[0].split(";")
    key = independent_signing_key(SECRET, "20250314")
    assert independent_seed(request, signed, mode, key) == botocore_seed
    signer = ChunkSigner(key, botocore_seed)
    checksum = ("x-amz-checksum-crc32", trailer_value or crc32_b64(payload)) if trailer else None
    return request, signer.body(payload, size, checksum), signer


PAYLOADS = [b"", b"x", b"hello, chunked world", bytes(range(256)) + b"tail"]


@pytest.mark.parametrize("trailer", [False, True])
@pytest.mark.parametrize("payload", PAYLOADS)
def test_it_decodes_signed_chunked_uploads(payload, trailer):
    request, body, _ = streaming_upload(payload, size=16, trailer=trailer)
    verified = verify(request)
    assert verified.streaming
    assert verified.decoded_content_length == len(payload)
    assert read_body(verified, body) == payload


@pytest.mark.parametrize("trailer", [False, True])
def test_it_decodes_whatever_the_split(trailer):
    payload = b"split me anywhere: 0123456789abcdef"
    request, body, _ = streaming_upload(payload, size=8, trailer=trailer)
    verified = verify(request)
    for cut in range(len(body) + 1):
        reader = verified.body()
        out = reader.feed(body[:cut]) + reader.feed(body[cut:]) + reader.finish()
        assert out == payload, cut
    assert read_body(verified, body, step=1) == payload


def test_it_decodes_the_unsigned_trailer_whatever_the_split():
    payload = b"unsigned trailer body " * 3
    request, sent = send(
        s3_client("https://s3.example.test"), "put_object", Bucket="b", Key="k", Body=payload
    )
    verified = verify(request)
    for cut in range(len(sent) + 1):
        reader = verified.body()
        assert reader.feed(sent[:cut]) + reader.feed(sent[cut:]) + reader.finish() == payload, cut
    assert read_body(verified, sent, step=1) == payload


def test_it_matches_the_aws_worked_examples_of_chunk_signatures():
    # "Example Calculations" of sigv4-streaming and sigv4-streaming-trailers in the S3 API
    # reference: 64 KiB and 1 KiB of 'a' under the documented example credentials.
    key = sigv4.derive_signing_key(
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524", "us-east-1"
    )
    scope = "20130524/us-east-1/s3/aws4_request"

    def framed(signatures):
        sizes = (65536, 1024, 0)
        return b"".join(
            f"{size:x};chunk-signature={sig}\r\n".encode()
            + b"a" * size
            + (b"\r\n" if size else b"")
            for size, sig in zip(sizes, signatures, strict=True)
        )

    plain = sigv4.ChunkedDecoder(
        signing_key=key,
        seed_signature="4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        amz_date="20130524T000000Z",
        scope=scope,
        decoded_content_length=66560,
    )
    body = (
        framed(
            [
                "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
                "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
                "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
            ]
        )
        + b"\r\n"
    )
    assert plain.feed(body) + plain.finish() == b"a" * 66560

    with_trailer = sigv4.ChunkedDecoder(
        signing_key=key,
        seed_signature="106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
        amz_date="20130524T000000Z",
        scope=scope,
        trailer=True,
        declared_trailers=("x-amz-checksum-crc32c",),
        decoded_content_length=66560,
    )
    body = framed(
        [
            "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
            "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
            "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
        ]
    ) + (
        b"x-amz-checksum-crc32c:sOO8/Q==\r\n"
        b"x-amz-trailer-signature:d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"
        b"\r\n\r\n"
    )
    assert with_trailer.feed(body) + with_trailer.finish() == b"a" * 66560

    # And the test signer above reproduces the same chunk signatures.
    signer = ChunkSigner(
        key,
        "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        "20130524T000000Z",
        scope,
    )
    signer.chunk(b"a" * 65536)
    assert signer.previous == "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"


def test_it_verifies_the_aws_worked_example_seed_signature():
    # The header of the same worked example, with the documented seed signature.
    signed = (
        "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
        "x-amz-decoded-content-length;x-amz-storage-class"
    )
    request = Request(
        "PUT",
        "/examplebucket/chunkObject.txt",
        "",
        [
            ("Host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            (
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
                f"aws4_request,SignedHeaders={signed},Signature="
                "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
            ),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
            ("Content-Encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("Content-Length", "66824"),
        ],
        now=float(calendar.timegm((2013, 5, 24, 0, 5, 0))),
    )
    auth = sigv4.parse(request, region="us-east-1")
    verified = sigv4.verify(
        auth,
        lambda ak, date, region: sigv4.derive_signing_key(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", date, region
        ),
    )
    assert (
        verified.seed_signature
        == "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    )


def tamper(body: bytes, old: bytes, new: bytes, nth: int = 0) -> bytes:
    index = -1
    for _ in range(nth + 1):
        index = body.index(old, index + 1)
    return body[:index] + new + body[index + len(old) :]


def read_until_error(reader, body: bytes, step: int = 5) -> tuple[bytes, S3Error]:
    released = b""
    try:
        for i in range(0, len(body), step):
            released += reader.feed(body[i : i + step])
        released += reader.finish()
    except S3Error as error:
        return released, error
    raise AssertionError("the body verified")


@pytest.mark.parametrize(
    "mutate,code",
    [
        (lambda b: tamper(b, b"chunk data", b"chunk DATA"), "SignatureDoesNotMatch"),
        (lambda b: tamper(b, b"chunk-signature=", b"chunk-signature=0", 1), "InvalidRequest"),
        (lambda b: tamper(b, b";chunk-signature=", b";chunk-signature ="), "InvalidRequest"),
        (lambda b: tamper(b, b"\r\n", b"\n", 1), "InvalidRequest"),
        (lambda b: b[:-2], "IncompleteBody"),
        (lambda b: b[: b.rindex(b"0;chunk-signature=")], "IncompleteBody"),
        (lambda b: b + b"trailing junk", "InvalidRequest"),
        (lambda b: b[:-2] + b"x-amz-meta-a:b\r\n\r\n", "InvalidRequest"),
    ],
)
def test_it_refuses_broken_signed_chunked_bodies(mutate, code):
    payload = b"chunk data, chunk data, chunk data, chunk data."
    request, body, _ = streaming_upload(payload, size=16)
    broken = mutate(body)
    assert broken != body
    released, error = read_until_error(verify(request).body(), broken)
    assert error.code == code
    assert len(released) < len(payload)


def test_it_refuses_a_chunk_signed_with_another_chain():
    payload = b"0123456789abcdef" * 3
    request, body, signer = streaming_upload(payload, size=16)
    # A chunk signature valid on its own but chained from the wrong previous signature.
    rogue = ChunkSigner(signer.key, "f" * 64)
    chunks = body.split(b"\r\n")
    first_header = chunks[0]
    forged = rogue.chunk(payload[:16]).split(b"\r\n")[0]
    assert first_header != forged
    released, error = read_until_error(
        verify(request).body(), body.replace(first_header, forged, 1)
    )
    assert error.code == "SignatureDoesNotMatch"
    assert len(released) < 16


def test_it_refuses_a_wrong_chunk_signature_at_the_final_chunk():
    payload = b"all data chunks are fine"
    request, body, _ = streaming_upload(payload, size=8)
    final = body.rindex(b"0;chunk-signature=") + len(b"0;chunk-signature=")
    forged = body[:final] + (b"0" if body[final : final + 1] != b"0" else b"1") + body[final + 1 :]
    released, error = read_until_error(verify(request).body(), forged, step=3)
    assert error.code == "SignatureDoesNotMatch"
    # The last piece of data is still held back: the upstream never sees the whole object.
    assert len(released) < len(payload)


def test_it_refuses_a_wrong_trailer_checksum_and_a_wrong_trailer_signature():
    payload = b"payload with a trailer checksum"
    request, body, _ = streaming_upload(
        payload, size=10, trailer=True, trailer_value=crc32_b64(b"other")
    )
    released, error = read_until_error(verify(request).body(), body)
    assert (error.code, error.status) == ("BadDigest", 400)
    assert len(released) < len(payload)

    request, body, _ = streaming_upload(payload, size=10, trailer=True)
    start = body.index(b"x-amz-trailer-signature:") + len(b"x-amz-trailer-signature:")
    flipped = b"1" if body[start : start + 1] == b"0" else b"0"
    forged = body[:start] + flipped + body[start + 1 :]
    released, error = read_until_error(verify(request).body(), forged)
    assert error.code == "SignatureDoesNotMatch"
    assert len(released) < len(payload)

    # A checksum line swapped for another value, with the original signature, fails too.
    swapped = body.replace(crc32_b64(payload).encode(), crc32_b64(b"other").encode())
    assert swapped != body
    assert read_until_error(verify(request).body(), swapped)[1].code == "SignatureDoesNotMatch"

    without_signature = body[: body.index(b"x-amz-trailer-signature:")] + b"\r\n"
    assert read_until_error(verify(request).body(), without_signature)[1].code == (
        "SignatureDoesNotMatch"
    )


def test_it_checks_the_decoded_content_length():
    payload = b"twelve bytes"
    for declared, code in (
        (len(payload) + 1, "IncompleteBody"),
        (len(payload) - 1, "InvalidRequest"),
    ):
        request, body, _ = streaming_upload(payload, size=5, declared_length=declared)
        assert read_until_error(verify(request).body(), body)[1].code == code


def test_it_requires_the_decoded_content_length_for_signed_chunks():
    request, _, _ = streaming_upload(b"x", send_length=False)
    error = error_of(sigv4.parse, request, region=REGION)
    assert (error.code, error.status) == ("MissingContentLength", 411)
    # The unsigned trailer may go without it (botocore omits it for unsized streams).
    request = sign(
        "PUT",
        "https://s3.example.test/b/k",
        [("Content-Encoding", "aws-chunked"), ("X-Amz-Trailer", "x-amz-checksum-crc32")],
        signer=StreamingSigV4Auth("STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
    )
    verified = verify(request)
    assert verified.decoded_content_length is None
    body = f"1\r\nx\r\n0\r\nx-amz-checksum-crc32:{crc32_b64(b'x')}\r\n\r\n".encode()
    assert read_body(verified, body) == b"x"


def test_it_refuses_a_huge_chunk_without_buffering_it():
    request, _, signer = streaming_upload(b"x")
    reader = verify(request).body()
    header_line = b"ffffffff;chunk-signature=" + b"0" * 64 + b"\r\n"
    error = error_of(reader.feed, header_line + b"a" * 1000)
    assert error.code == "InvalidRequest"
    assert "exceeds the maximum" in error.message
    # The decoder stays failed.
    assert error_of(reader.feed, b"a").code == "InvalidRequest"
    # One byte over the 16 MiB cap is refused at its header line as well.
    reader = verify(request).body()
    assert (
        error_of(reader.feed, b"1000001;chunk-signature=" + b"0" * 64 + b"\r\n").code
        == "InvalidRequest"
    )


def test_it_bounds_the_line_buffer_whatever_the_input():
    request, _, _ = streaming_upload(b"x")
    reader = verify(request).body()
    for _ in range(sigv4.MAX_LINE_LENGTH // 1024):
        assert reader.feed(b"1" * 1024) == b""
    assert error_of(reader.feed, b"1").code == "InvalidRequest"


def test_it_refuses_undeclared_and_unsupported_trailers():
    payload = b"abc"
    request, sent = send(
        s3_client("https://s3.example.test"), "put_object", Bucket="b", Key="k", Body=payload
    )
    swapped = sent.replace(b"x-amz-checksum-crc32:", b"x-amz-checksum-sha1:")
    assert read_until_error(verify(request).body(), swapped)[1].code == "MalformedTrailerError"
    dropped = sent[: sent.index(b"x-amz-checksum-crc32:")] + b"\r\n"
    assert read_until_error(verify(request).body(), dropped)[1].code == "MalformedTrailerError"
    unsupported = replace_header(request, "X-Amz-Trailer", "x-amz-meta-foo")
    assert error_of(sigv4.parse, unsupported, region=REGION).code == "InvalidRequest"


def test_it_refuses_a_wrong_unsigned_trailer_checksum_but_still_checks_the_header_signature():
    payload = b"unsigned but checksummed"
    request, sent = send(
        s3_client("https://s3.example.test"), "put_object", Bucket="b", Key="k", Body=payload
    )
    wrong = sent.replace(crc32_b64(payload).encode(), crc32_b64(b"x").encode())
    assert wrong != sent
    released, error = read_until_error(verify(request).body(), wrong)
    assert error.code == "BadDigest"
    assert len(released) < len(payload)
    assert error_of(verify, request, secret="y" * 40).code == "SignatureDoesNotMatch"
    forged_sig = sent.replace(
        b"\r\n\r\n", b"\r\nx-amz-trailer-signature:" + b"0" * 64 + b"\r\n\r\n"
    )
    assert read_until_error(verify(request).body(), forged_sig)[1].code == "MalformedTrailerError"


@pytest.mark.parametrize(
    "algorithm,digest_hex",
    [
        ("crc32", "cbf43926"),
        ("crc32c", "e3069283"),
        ("crc64nvme", "ae8b14860a799888"),
        ("sha1", hashlib.sha1(b"123456789").hexdigest()),
        ("sha256", hashlib.sha256(b"123456789").hexdigest()),
    ],
)
def test_it_checks_unsigned_trailers_of_every_algorithm(algorithm, digest_hex):
    # Check values from the CRC catalogue (RevEng) for "123456789".
    value = base64.b64encode(bytes.fromhex(digest_hex)).decode()
    name = f"x-amz-checksum-{algorithm}"
    for body, ok in (
        (f"4\r\n1234\r\n5\r\n56789\r\n0\r\n{name}:{value}\r\n\r\n".encode(), True),
        (f"4\r\n1234\r\n5\r\n56780\r\n0\r\n{name}:{value}\r\n\r\n".encode(), False),
    ):
        for step in (1, 4, len(body)):
            decoder = sigv4.ChunkedDecoder(
                signing_key=None, trailer=True, declared_trailers=(name,), decoded_content_length=9
            )
            if ok:
                out = b"".join(decoder.feed(body[i : i + step]) for i in range(0, len(body), step))
                assert out + decoder.finish() == b"123456789"
            else:
                assert read_until_error(decoder, body, step)[1].code == "BadDigest"


def bitwise_crc(data: bytes, polynomial: int, width: int) -> bytes:
    # The textbook reflected CRC, one bit at a time: a reference for the table-driven one.
    mask = (1 << width) - 1
    crc = mask
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ polynomial if crc & 1 else crc >> 1
    return (crc ^ mask).to_bytes(width // 8, "big")


@pytest.mark.parametrize(
    "algorithm,polynomial,width",
    [("crc32c", 0x82F63B78, 32), ("crc64nvme", 0x9A6C9329AC4BC9B5, 64), ("crc32", 0xEDB88320, 32)],
)
def test_it_matches_a_bitwise_crc_at_every_alignment(algorithm, polynomial, width):
    data = hashlib.sha256(b"seed").digest() * 40 + b"tail!"
    expected = bitwise_crc(data, polynomial, width)
    for size in (1, 3, 7, 8, 13, 64, len(data)):
        checksum = sigv4.new_checksum(algorithm)
        for i in range(0, len(data), size):
            checksum.update(memoryview(data)[i : i + size])
        assert checksum.digest() == expected, size


def test_it_computes_checksums_incrementally():
    data = bytes(range(256)) * 41
    for algorithm in sigv4.CHECKSUM_ALGORITHMS:
        whole = sigv4.new_checksum(algorithm)
        whole.update(data)
        pieces = sigv4.new_checksum(algorithm)
        for i in range(0, len(data), 1000):
            pieces.update(memoryview(data)[i : i + 1000])
        assert whole.digest() == pieces.digest(), algorithm
    crc = sigv4.new_checksum("crc32")
    crc.update(data)
    assert crc.digest() == zlib.crc32(data).to_bytes(4, "big")


def test_it_strips_aws_chunked_from_content_encoding():
    assert sigv4.strip_aws_chunked("aws-chunked") is None
    assert sigv4.strip_aws_chunked("gzip,aws-chunked") == "gzip"
    assert sigv4.strip_aws_chunked("aws-chunked, gzip") == "gzip"
    assert sigv4.strip_aws_chunked(None) is None


# ---------------------------------------------------------------------------------------
# Signing-key cache


def test_it_derives_a_signing_key_once_per_key_date_and_region():
    lookups = []

    def secret_for(access_key_id):
        lookups.append(access_key_id)
        return SECRET

    cache_ = sigv4.SigningKeyCache(maxsize=8)
    get = cache_.provider(secret_for)
    request = sign("GET", "http://s3.example.test:9000/b/k")
    for _ in range(3):
        sigv4.verify(sigv4.parse(request, region=REGION), get)
    assert lookups == [ACCESS_KEY]
    assert get(ACCESS_KEY, "20250314", REGION) == independent_signing_key(SECRET, "20250314")
    get(ACCESS_KEY, "20250315", REGION)
    assert lookups == [ACCESS_KEY, ACCESS_KEY]


def test_it_forgets_a_revoked_or_rotated_key_at_once():
    secrets = {ACCESS_KEY: SECRET, "EXCOTHERKEY234567ABC": "o" * 40}
    cache_ = sigv4.SigningKeyCache()
    get = cache_.provider(secrets.__getitem__)
    request = sign("GET", "http://s3.example.test:9000/b/k")
    sigv4.verify(sigv4.parse(request, region=REGION), get)
    get("EXCOTHERKEY234567ABC", "20250314", REGION)
    assert len(cache_) == 2

    secrets[ACCESS_KEY] = "r" * 40  # rotated
    cache_.invalidate(ACCESS_KEY)
    assert cache_.get(ACCESS_KEY, "20250314", REGION) is None
    assert cache_.get("EXCOTHERKEY234567ABC", "20250314", REGION) is not None
    assert error_of(sigv4.verify, sigv4.parse(request, region=REGION), get).code == (
        "SignatureDoesNotMatch"
    )


def test_it_does_not_store_a_key_derived_while_it_was_invalidated():
    cache_ = sigv4.SigningKeyCache()

    def derive_then_get_revoked():
        cache_.invalidate(ACCESS_KEY)  # a revoke lands while the secret is being loaded
        return b"k" * 32

    assert (
        cache_.get_or_derive(ACCESS_KEY, "20250314", REGION, derive_then_get_revoked) == b"k" * 32
    )
    assert cache_.get(ACCESS_KEY, "20250314", REGION) is None


def test_it_evicts_the_least_recently_used_key():
    cache_ = sigv4.SigningKeyCache(maxsize=2)
    for name in ("a", "b"):
        cache_.get_or_derive(name, "d", "r", lambda name=name: name.encode())
    cache_.get("a", "d", "r")
    cache_.get_or_derive("c", "d", "r", lambda: b"c")
    assert cache_.get("b", "d", "r") is None
    assert (cache_.get("a", "d", "r"), cache_.get("c", "d", "r")) == (b"a", b"c")
    cache_.invalidate("a")
    assert len(cache_) == 1


def test_it_serves_many_threads_consistently():
    cache_ = sigv4.SigningKeyCache(maxsize=16)
    errors = []

    def work(n):
        try:
            for i in range(300):
                name = f"k{(n + i) % 24}"
                key = cache_.get_or_derive(name, "d", "r", lambda name=name: name.encode())
                assert key == name.encode()
                if i % 50 == 0:
                    cache_.invalidate(name)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache_) <= 16


# ---------------------------------------------------------------------------------------
# Error bodies


def test_it_renders_the_aws_error_body_escaped():
    error = S3Error(
        "SignatureDoesNotMatch",
        403,
        "a < b & c > d",
        {"StringToSign": "AWS4-HMAC-SHA256\n<x>&amp;\x00", "Region": "us-east-1"},
    )
    body = sigv4.error_xml(error, request_id="r&1", resource="/b/k<")
    assert body.startswith(
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code>'
    )
    assert b"<Message>a &lt; b &amp; c &gt; d</Message>" in body
    root = ET.fromstring(body)
    assert root.findtext("StringToSign") == "AWS4-HMAC-SHA256\n<x>&amp;\ufffd"
    assert (root.findtext("RequestId"), root.findtext("Resource")) == ("r&1", "/b/k<")
    assert [child.tag for child in root] == [
        "Code",
        "Message",
        "StringToSign",
        "Region",
        "Resource",
        "RequestId",
    ]
    assert error.to_xml("r&1", "/b/k<") == body


def test_it_describes_an_unknown_access_key():
    error = sigv4.invalid_access_key_id("EXCNOPE")
    assert (error.code, error.status) == ("InvalidAccessKeyId", 403)
    assert ET.fromstring(error.to_xml()).findtext("AWSAccessKeyId") == "EXCNOPE"
