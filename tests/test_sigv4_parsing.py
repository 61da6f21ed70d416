"""Reading SigV4 authentication (gateway/sigv4/parsing.py): what parse() accepts and
refuses before any secret is used.
"""

from __future__ import annotations

import pytest

from gateway.sigv4.errors import error_xml
from gateway.sigv4.parsing import parse
from gateway.sigv4.request import Request
from tests.sigv4_support import (  # noqa: F401  (frozen_botocore_clock is an autouse fixture)
    ACCESS_KEY,
    NOW,
    REGION,
    StreamingSigV4Auth,
    crc32_b64,
    error_of,
    frozen_botocore_clock,
    header,
    presign,
    read_body,
    replace_header,
    s3_client,
    send,
    sign,
    streaming_upload,
    to_request,
    verify,
)


def test_it_verifies_a_signed_date_header_without_x_amz_date():
    request = sign("GET", "http://s3.example.test:9000/bkt/k", headers=[("Date", "placeholder")])
    assert not any(k.lower() == "x-amz-date" for k, _ in request.headers)
    assert header(request, "Date").startswith("Fri, 14 Mar 2025 15:09:26 ")
    verify(request)


def test_it_accepts_authorization_components_without_spaces():
    request = sign("GET", "http://s3.example.test:9000/bkt/k")
    compact = header(request, "Authorization").replace(", ", ",")
    verify(replace_header(request, "Authorization", compact))


@pytest.mark.parametrize(
    "param",
    ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders"],
)
def test_it_requires_every_presign_parameter(param):
    request = presign("get_object", Bucket="bkt", Key="k")
    query = "&".join(p for p in request.query.split("&") if not p.startswith(param + "="))
    stripped = Request("GET", request.path, query, request.headers, now=NOW)
    error = error_of(parse, stripped, region=REGION)
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
        assert error_of(parse, changed, region=REGION).code == ("AuthorizationQueryParametersError")


def test_it_refuses_header_and_query_auth_together():
    request = presign("get_object", Bucket="bkt", Key="k")
    signed = sign("GET", "http://s3.example.test:9000/bkt/k")
    both = replace_header(request, "Authorization", header(signed, "Authorization"))
    assert error_of(parse, both, region=REGION).code == "InvalidArgument"


def test_it_refuses_unsigned_x_amz_headers():
    request = sign("PUT", "http://s3.example.test:9000/b/k", body=b"x")
    injected = replace_header(request, "x-amz-acl", "public-read")
    error = error_of(parse, injected, region=REGION)
    assert (error.code, error.status) == ("AccessDenied", 403)
    assert error.extra["HeadersNotSigned"] == "x-amz-acl"
    parse(request, region=REGION)


def test_it_refuses_unsigned_x_amz_headers_on_presigned_urls():
    request = presign("get_object", Bucket="bkt", Key="k")
    injected = replace_header(request, "x-amz-server-side-encryption", "AES256")
    assert error_of(parse, injected, region=REGION).code == "AccessDenied"


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
    error = error_of(parse, replace_header(request, "Authorization", without_host), region=REGION)
    assert (error.code, error.extra["HeadersNotSigned"]) == ("AccessDenied", "host")


def test_it_requires_signed_headers_to_be_present():
    request = sign("GET", "http://s3.example.test:9000/b/k", headers=[("X-Amz-Meta-A", "1")])
    assert error_of(parse, replace_header(request, "X-Amz-Meta-A", None), region=REGION).code == (
        "AccessDenied"
    )


def test_it_requires_a_date():
    request = sign("GET", "http://s3.example.test:9000/b/k")
    for value in (None, "yesterday", "20250314T250000Z", "20250314T150926"):
        error = error_of(parse, replace_header(request, "X-Amz-Date", value), region=REGION)
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
    error = error_of(parse, request, region=REGION)
    assert (error.code, error.status) == ("AuthorizationHeaderMalformed", 400)
    assert "'eu-west-3' is wrong; expecting 'us-east-1'" in error.message
    assert error.extra["Region"] == REGION
    assert b"<Region>us-east-1</Region>" in error_xml(error)
    verify(request, region="eu-west-3")


def test_it_names_the_expected_region_for_presigned_urls():
    url = s3_client("http://s3.example.test:9000", region="eu-west-3").generate_presigned_url(
        "get_object", Params={"Bucket": "b", "Key": "k"}
    )
    error = error_of(parse, to_request("GET", url, []), region=REGION)
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
    error = error_of(parse, replace_header(request, "Authorization", changed), region=REGION)
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
        error_of(parse, replace_header(request, "Authorization", value), region=REGION).code == code
    )


def test_it_refuses_an_unknown_payload_mode():
    request = sign("PUT", "http://s3.example.test:9000/b/k")
    changed = replace_header(
        request, "X-Amz-Content-SHA256", "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"
    )
    assert error_of(parse, changed, region=REGION).code == "InvalidArgument"


def test_it_requires_the_decoded_content_length_for_signed_chunks():
    request, _, _ = streaming_upload(b"x", send_length=False)
    error = error_of(parse, request, region=REGION)
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
