"""aws-chunked bodies (gateway/sigv4/chunked.py): signed chunks and trailers from a small
independent signer (tests/sigv4_support.py), botocore's unsigned trailer, the AWS worked
examples, and every way a body can be broken.
"""

from __future__ import annotations

import calendar

import pytest

from gateway.sigv4 import verification
from gateway.sigv4.chunked import MAX_LINE_LENGTH, ChunkedDecoder, strip_aws_chunked
from gateway.sigv4.parsing import parse
from gateway.sigv4.request import Request
from gateway.sigv4.signing import derive_signing_key
from tests.sigv4_support import (  # noqa: F401  (frozen_botocore_clock is an autouse fixture)
    REGION,
    ChunkSigner,
    crc32_b64,
    error_of,
    frozen_botocore_clock,
    read_body,
    read_until_error,
    replace_header,
    s3_client,
    send,
    streaming_upload,
    tamper,
    verify,
)

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
    key = derive_signing_key("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "20130524", "us-east-1")
    scope = "20130524/us-east-1/s3/aws4_request"

    def framed(signatures):
        sizes = (65536, 1024, 0)
        return b"".join(
            f"{size:x};chunk-signature={sig}\r\n".encode()
            + b"a" * size
            + (b"\r\n" if size else b"")
            for size, sig in zip(sizes, signatures, strict=True)
        )

    plain = ChunkedDecoder(
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

    with_trailer = ChunkedDecoder(
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
    auth = parse(request, region="us-east-1")
    verified = verification.verify(
        auth,
        lambda ak, date, region: derive_signing_key(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", date, region
        ),
    )
    assert (
        verified.seed_signature
        == "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
    )


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
    for _ in range(MAX_LINE_LENGTH // 1024):
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
    assert error_of(parse, unsupported, region=REGION).code == "InvalidRequest"


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


def test_it_strips_aws_chunked_from_content_encoding():
    assert strip_aws_chunked("aws-chunked") is None
    assert strip_aws_chunked("gzip,aws-chunked") == "gzip"
    assert strip_aws_chunked("aws-chunked, gzip") == "gzip"
    assert strip_aws_chunked(None) is None


@pytest.mark.parametrize("trailer", [False, True])
def test_it_checks_a_checksum_header_against_the_decoded_body(trailer):
    payload = b"chunked, with its checksum in a header"
    for value, accepted in ((crc32_b64(payload), True), (crc32_b64(b"other"), False)):
        request, body, _ = streaming_upload(
            payload, trailer=trailer, extra_headers=(("x-amz-checksum-crc32", value),)
        )
        if accepted:
            assert read_body(verify(request), body) == payload
        else:
            _, error = read_until_error(verify(request).body(), body)
            assert error.code == "BadDigest"
