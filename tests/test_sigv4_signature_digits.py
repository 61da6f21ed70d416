"""Every hex digit of a SigV4 signature counts: header, presigned, chunk, trailer and
verify-API signatures that differ from the right one in one position only are refused.

A wrong secret changes the whole signature, so it cannot tell a comparison of every digit
from one that stops early; these tests change one digit at a time, at each of the 64
positions, and also swap a digit for its uppercase form (the same value, a different
signature string).
"""

from __future__ import annotations

import pytest

from gateway import sigv4
from gateway.sigv4 import Request
from tests.sigv4_support import (  # noqa: F401  (frozen_botocore_clock is an autouse fixture)
    ACCESS_KEY,
    NOW,
    REGION,
    frozen_botocore_clock,
    presign,
    provider,
    read_until_error,
    s3_client,
    send,
    streaming_upload,
    verify,
)

POSITIONS = range(64)


def flip(signature: str, position: int) -> str:
    """The signature with the hex digit at ``position`` changed to another digit."""
    digit = signature[position]
    other = format((int(digit, 16) + 1) % 16, "x")
    return signature[:position] + other + signature[position + 1 :]


def uppercase_one(signature: str) -> str:
    """The signature with its last letter digit (a-f) in uppercase."""
    for position in range(63, -1, -1):
        if signature[position] in "abcdef":
            return signature[:position] + signature[position].upper() + signature[position + 1 :]
    raise AssertionError("a signature without a letter digit")


def header_request() -> tuple[Request, str]:
    request, _ = send(s3_client("http://s3.example.test:9000"), "get_object", Bucket="b", Key="k")
    authorization = next(v for k, v in request.headers if k.lower() == "authorization")
    return request, authorization.rsplit("Signature=", 1)[1]


def with_header_signature(request: Request, signature: str) -> Request:
    headers = []
    for name, value in request.headers:
        if name.lower() == "authorization":
            value = value.rsplit("Signature=", 1)[0] + "Signature=" + signature
        headers.append((name, value))
    return Request(request.method, request.path, request.query, headers, now=NOW)


def test_it_refuses_a_header_signature_wrong_in_any_one_digit():
    request, signature = header_request()
    assert len(signature) == 64
    verify(with_header_signature(request, signature))
    for position in POSITIONS:
        wrong = flip(signature, position)
        error = pytest.raises(sigv4.S3Error, verify, with_header_signature(request, wrong))
        assert (error.value.code, error.value.status) == ("SignatureDoesNotMatch", 403), position
        assert error.value.extra["SignatureProvided"] == wrong
    uppercase = with_header_signature(request, uppercase_one(signature))
    assert pytest.raises(sigv4.S3Error, verify, uppercase).value.code == "SignatureDoesNotMatch"


def with_query_signature(request: Request, signature: str) -> Request:
    pairs = [
        f"X-Amz-Signature={signature}" if pair.startswith("X-Amz-Signature=") else pair
        for pair in request.query.split("&")
    ]
    return Request(request.method, request.path, "&".join(pairs), request.headers, now=NOW)


def test_it_refuses_a_presigned_signature_wrong_in_any_one_digit():
    request = presign("get_object", Bucket="bkt", Key="k")
    signature = next(
        pair.split("=", 1)[1]
        for pair in request.query.split("&")
        if pair.startswith("X-Amz-Signature=")
    )
    assert len(signature) == 64
    verify(with_query_signature(request, signature))
    for position in POSITIONS:
        wrong = with_query_signature(request, flip(signature, position))
        error = pytest.raises(sigv4.S3Error, verify, wrong)
        assert (error.value.code, error.value.status) == ("SignatureDoesNotMatch", 403), position
    uppercase = with_query_signature(request, uppercase_one(signature))
    assert pytest.raises(sigv4.S3Error, verify, uppercase).value.code == "SignatureDoesNotMatch"


def chunk_signatures(body: bytes, marker: bytes) -> list[int]:
    """Where each signature after ``marker`` starts in the body."""
    starts, index = [], body.find(marker)
    while index >= 0:
        starts.append(index + len(marker))
        index = body.find(marker, index + 1)
    return starts


def with_digit_flipped(body: bytes, start: int, position: int) -> bytes:
    signature = body[start : start + 64].decode("ascii")
    return body[:start] + flip(signature, position).encode("ascii") + body[start + 64 :]


@pytest.mark.parametrize("which", ["first", "middle", "final"])
def test_it_refuses_a_chunk_signature_wrong_in_any_one_digit(which):
    payload = b"0123456789abcdef" * 3
    request, body, _ = streaming_upload(payload, size=16)
    verified = verify(request)
    reader = verified.body()
    assert reader.feed(body) + reader.finish() == payload
    starts = chunk_signatures(body, b";chunk-signature=")
    assert len(starts) == 4  # three data chunks and the final empty one
    start = {"first": starts[0], "middle": starts[1], "final": starts[-1]}[which]
    for position in POSITIONS:
        forged = with_digit_flipped(body, start, position)
        released, error = read_until_error(verified.body(), forged, step=7)
        assert (error.code, error.status) == ("SignatureDoesNotMatch", 403), position
        assert len(released) < len(payload)
    signature = body[start : start + 64].decode("ascii")
    uppercase = body[:start] + uppercase_one(signature).encode("ascii") + body[start + 64 :]
    assert read_until_error(verified.body(), uppercase)[1].code == "SignatureDoesNotMatch"


def test_it_refuses_a_trailer_signature_wrong_in_any_one_digit():
    payload = b"payload with a signed trailer"
    request, body, _ = streaming_upload(payload, size=10, trailer=True)
    verified = verify(request)
    reader = verified.body()
    assert reader.feed(body) + reader.finish() == payload
    [start] = chunk_signatures(body, b"x-amz-trailer-signature:")
    for position in POSITIONS:
        released, error = read_until_error(
            verified.body(), with_digit_flipped(body, start, position)
        )
        assert (error.code, error.status) == ("SignatureDoesNotMatch", 403), position
        assert len(released) < len(payload)


def test_it_refuses_a_verify_api_signature_wrong_in_any_one_digit():
    request, signature = header_request()
    auth = sigv4.parse(request, region=REGION)
    to_sign = sigv4.string_to_sign(auth, sigv4.canonical_request(auth))
    signed = sigv4.parse_string_to_sign(to_sign, ACCESS_KEY, region=REGION)
    sigv4.verify_string_to_sign(signed, ACCESS_KEY, signature, provider(), now=NOW)
    for position in POSITIONS:
        with pytest.raises(sigv4.S3Error) as caught:
            sigv4.verify_string_to_sign(
                signed, ACCESS_KEY, flip(signature, position), provider(), now=NOW
            )
        assert caught.value.code == "SignatureDoesNotMatch", position
