"""Verifying requests that botocore itself signed (gateway/sigv4/verification.py): every
shape a real client sends, presigned URLs, and the refusals of a wrong signature, clock or
body.
"""

from __future__ import annotations

import base64
import hashlib
import time
import xml.etree.ElementTree as ET
import zlib

import botocore.auth
import pytest
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest

from gateway.sigv4 import verification
from gateway.sigv4.errors import error_xml
from gateway.sigv4.parsing import parse
from gateway.sigv4.request import Request
from gateway.sigv4.signing import derive_signing_key, signature
from gateway.sigv4.verification import (
    check_signature,
    parse_post_credential,
    parse_string_to_sign,
    verify_string_to_sign,
)
from tests.sigv4_support import (  # noqa: F401  (frozen_botocore_clock is an autouse fixture)
    ACCESS_KEY,
    AMZ_DATE,
    CREDENTIALS,
    EMPTY_SHA256,
    NOW,
    ODD_KEYS,
    REGION,
    SCOPE,
    SECRET,
    error_of,
    frozen_botocore_clock,
    header,
    presign,
    read_body,
    replace_header,
    s3_client,
    send,
    sign,
    to_request,
    verify,
)

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


# ---------------------------------------------------------------------------------------
# Presigned URLs


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
    assert error.extra == {
        "X-Amz-Expires": "60",
        "Expires": iso_extended(NOW + 60),
        "ServerTime": iso_extended(NOW + 61),
    }


def test_it_refuses_a_presigned_url_dated_in_the_future():
    request = presign("get_object", Bucket="bkt", Key="k")
    early = Request(request.method, request.path, request.query, request.headers, now=NOW - 901)
    error = error_of(verify, early)
    assert (error.code, error.message) == ("AccessDenied", "Request is not valid yet")
    verify(Request(request.method, request.path, request.query, request.headers, now=NOW - 899))


def test_it_refuses_a_tampered_presigned_url():
    request = presign("get_object", Bucket="bkt", Key="k")
    for path, query in (
        ("/bkt/other", request.query),
        (request.path, request.query + "&response-content-type=text%2Fhtml"),
    ):
        tampered = Request("GET", path, query, request.headers, now=NOW)
        assert error_of(verify, tampered).code == "SignatureDoesNotMatch"


# ---------------------------------------------------------------------------------------
# Refusals: signature, body and clock


def test_it_refuses_a_wrong_secret_and_explains_what_it_signed():
    request, _ = send(s3_client("http://s3.example.test:9000"), "get_object", Bucket="b", Key="a b")
    error = error_of(verify, request, secret="x" * 40)
    assert (error.code, error.status) == ("SignatureDoesNotMatch", 403)
    assert error.extra["AWSAccessKeyId"] == ACCESS_KEY
    assert error.message == (
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method."
    )
    assert error.extra["StringToSign"].startswith(f"AWS4-HMAC-SHA256\n{AMZ_DATE}\n{SCOPE}\n")
    assert error.extra["CanonicalRequest"].startswith(
        "GET\n/b/a%20b\n\nhost:s3.example.test:9000\n"
    )
    body = ET.fromstring(error_xml(error, request_id="req-1"))
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
    assert error.message == "Value for x-amz-checksum-crc32 header is invalid."


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
    assert error.extra["ServerTime"] == iso_extended(NOW + offset)
    assert error.message == (
        "The difference between the request time and the current time is too large."
    )


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


# ---------------------------------------------------------------------------------------
# The comparison a POST policy form's signature goes through, and its credential


def test_it_accepts_only_the_same_signature_through_check_signature():
    right = "0123456789abcdef" * 4
    assert check_signature(right, right, ACCESS_KEY, "policy") is None
    for wrong in (right[:-1] + "0", "f" + right[1:], right.upper(), right + "0", "é" * 64):
        error = error_of(check_signature, right, wrong, ACCESS_KEY, "policy")
        assert (error.code, error.status) == ("SignatureDoesNotMatch", 403)
        assert error.extra == {
            "AWSAccessKeyId": ACCESS_KEY,
            "StringToSign": "policy",
            "SignatureProvided": wrong,
        }


def test_it_reads_a_post_forms_credential_by_the_rules_of_a_requests():
    credential = f"{ACCESS_KEY}/{SCOPE}"
    assert parse_post_credential(credential, AMZ_DATE, region=REGION) == (
        ACCESS_KEY,
        AMZ_DATE[:8],
    )
    bad_date = error_of(parse_post_credential, credential, "2025-03-14", region=REGION)
    assert (bad_date.code, bad_date.status, bad_date.message) == (
        "InvalidRequest",
        400,
        'x-amz-date must be in the format "yyyyMMddTHHmmssZ".',
    )
    wrong_region = error_of(parse_post_credential, credential, AMZ_DATE, region="eu-west-1")
    assert wrong_region.code == "AuthorizationHeaderMalformed"
    assert wrong_region.extra == {"Region": "eu-west-1"}


def iso_extended(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


# ---------------------------------------------------------------------------------------
# Checksum headers


@pytest.mark.parametrize(
    "headers",
    [
        [("x-amz-checksum-crc32", "AAAAAA=="), ("x-amz-checksum-crc32", "AAAAAA==")],
        [
            ("x-amz-checksum-crc32", "AAAAAA=="),
            ("x-amz-checksum-sha1", "2jmj7l5rSw0yVb/vlWAYkK/YBwk="),
        ],
    ],
)
def test_it_refuses_more_than_one_checksum_header(headers):
    request = sign("PUT", "http://s3.example.test:9000/b/k", headers=headers)
    error = error_of(verify(request).body)
    assert (error.code, error.status, error.message) == (
        "InvalidRequest",
        400,
        "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
    )


# ---------------------------------------------------------------------------------------
# A string to sign computed elsewhere (the verify API)

DIGEST = hashlib.sha256(b"canonical request").hexdigest()
TO_SIGN = f"AWS4-HMAC-SHA256\n{AMZ_DATE}\n{SCOPE}\n{DIGEST}"
FOUR_LINES = (
    "The string to sign must be four lines: AWS4-HMAC-SHA256, the x-amz-date, "
    "the credential scope and the hex SHA-256 of the canonical request."
)
NOT_A_DIGEST = "The last line of the string to sign must be a lowercase hex SHA-256 digest."


def test_it_reads_a_string_to_sign_back_into_its_parts():
    signed = parse_string_to_sign(TO_SIGN, ACCESS_KEY, region=REGION)
    assert (signed.text, signed.amz_date, signed.timestamp) == (TO_SIGN, AMZ_DATE, NOW)
    assert (signed.scope_date, signed.region, signed.scope) == (AMZ_DATE[:8], REGION, SCOPE)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (TO_SIGN.replace("\n", "\r\n"), FOUR_LINES),
        (TO_SIGN.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"), FOUR_LINES),
        (TO_SIGN + "\n", FOUR_LINES),
        (
            TO_SIGN.replace(AMZ_DATE, "2025-03-14"),
            'The date in the string to sign must be in the format "yyyyMMddTHHmmssZ".',
        ),
        (TO_SIGN.replace(DIGEST, DIGEST.upper()), NOT_A_DIGEST),
        (TO_SIGN.replace(DIGEST, "X" * 64), NOT_A_DIGEST),
        (TO_SIGN.replace(DIGEST, DIGEST[:-1]), NOT_A_DIGEST),
    ],
)
def test_it_refuses_a_malformed_string_to_sign(text, message):
    error = error_of(parse_string_to_sign, text, ACCESS_KEY, region=REGION)
    assert (error.code, error.status, error.message) == ("InvalidRequest", 400, message)


def test_it_answers_a_wrong_region_in_a_string_to_sign_as_the_gateway_does():
    error = error_of(parse_string_to_sign, TO_SIGN, ACCESS_KEY, region="eu-west-1")
    assert (error.code, error.extra) == ("AuthorizationHeaderMalformed", {"Region": "eu-west-1"})
    assert error.message == (
        "The authorization header is malformed; the region 'us-east-1' is wrong; "
        "expecting 'eu-west-1'"
    )


SECRET_FOR_STRING = "s" * 40


def key_of(access_key_id: str, date: str, region: str) -> bytes:
    """A signing-key provider that knows one access key ID only."""
    assert access_key_id == ACCESS_KEY
    return derive_signing_key(SECRET_FOR_STRING, date, region)


@pytest.mark.parametrize("offset", [-900, 0, 900])
def test_it_verifies_a_string_to_sign_within_fifteen_minutes(offset):
    signed = parse_string_to_sign(TO_SIGN, ACCESS_KEY, region=REGION)
    key = derive_signing_key(SECRET_FOR_STRING, AMZ_DATE[:8], REGION)
    right = signature(key, TO_SIGN)
    assert verify_string_to_sign(signed, ACCESS_KEY, right, key_of, now=NOW + offset) == key
    error = error_of(
        verify_string_to_sign, signed, ACCESS_KEY, right[:-1] + "0", key_of, now=NOW + offset
    )
    assert (error.code, error.status) == ("SignatureDoesNotMatch", 403)
    assert error.extra == {
        "AWSAccessKeyId": ACCESS_KEY,
        "StringToSign": TO_SIGN,
        "SignatureProvided": right[:-1] + "0",
    }


@pytest.mark.parametrize("offset", [-901, 901])
def test_it_refuses_a_string_to_sign_from_too_far_away_in_time(offset):
    signed = parse_string_to_sign(TO_SIGN, ACCESS_KEY, region=REGION)
    right = signature(derive_signing_key(SECRET_FOR_STRING, AMZ_DATE[:8], REGION), TO_SIGN)
    error = error_of(verify_string_to_sign, signed, ACCESS_KEY, right, key_of, now=NOW + offset)
    assert (error.code, error.status) == ("RequestTimeTooSkewed", 403)
    assert error.extra == {
        "RequestTime": AMZ_DATE,
        "ServerTime": iso_extended(NOW + offset),
        "MaxAllowedSkewMilliseconds": "900000",
    }


# ---------------------------------------------------------------------------------------
# What is signed: the query, the key asked for, and which bodies a checksum header covers


def test_it_leaves_the_signature_out_of_a_presigned_query_it_re_encodes():
    request = presign("get_object", Bucket="b", Key="k", ResponseCacheControl="a*b")
    assert "a%2Ab" in request.query
    # The same query with a lowercase escape: re-encoded before it is compared.
    lower = request.query.replace("a%2Ab", "a%2ab")
    verify(Request(request.method, request.path, lower, request.headers, now=NOW))


def test_it_asks_for_the_signing_key_of_the_requests_access_key_id():
    asked = []

    def signing_key(access_key_id, date, region):
        asked.append((access_key_id, date, region))
        return derive_signing_key(SECRET, date, region)

    request = sign("GET", "http://s3.example.test:9000/b/k")
    verification.verify(parse(request, region=REGION), signing_key)
    assert asked == [(ACCESS_KEY, AMZ_DATE[:8], REGION)]


@pytest.mark.parametrize(
    "url",
    [
        "http://s3.example.test:9000/b/k?partNumber=1&uploadId=abc",  # UploadPart
        "http://s3.example.test:9000/b/k?uploads",  # CreateMultipartUpload
    ],
)
def test_it_checks_the_checksum_header_of_other_multipart_requests(url):
    body = b"part"
    wrong = base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big")).decode()
    method = "PUT" if "partNumber" in url else "POST"
    request = sign(method, url, headers=[("x-amz-checksum-crc32", wrong)], body=body)
    reader = verify(request).body()
    reader.feed(body)
    assert error_of(reader.finish).code == "BadDigest"
