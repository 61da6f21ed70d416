"""Canonical URI and query (gateway/sigv4/canonical.py), against what botocore itself
would sign.
"""

from __future__ import annotations

import re

import botocore.utils
import pytest

from gateway.sigv4.canonical import _decode_query_value, canonical_query, canonical_uri
from gateway.sigv4.errors import S3Error
from gateway.sigv4.request import Request
from tests.sigv4_support import (  # noqa: F401  (frozen_botocore_clock is an autouse fixture)
    NOW,
    ODD_KEYS,
    error_of,
    frozen_botocore_clock,
    s3_client,
    send,
    sign,
    verify,
)


def test_it_verifies_a_bare_subresource_as_key_equals_empty():
    request, _ = send(
        s3_client("http://s3.example.test:9000"), "list_multipart_uploads", Bucket="b"
    )
    assert request.query == "uploads"
    verify(request)
    assert canonical_query("uploads") == "uploads="


def test_it_verifies_empty_and_repeated_query_values():
    request = sign("GET", "http://s3.example.test:9000/bkt?z=&a=2&a=1&a=&b&c=%2F%20~")
    verify(request)


@pytest.mark.parametrize("key", ODD_KEYS)
def test_it_canonicalizes_paths_exactly_as_botocore_encodes_them(key):
    encoded = "/b/" + botocore.utils.percent_encode(key, safe="/~")
    assert canonical_uri(encoded) == encoded
    # A client that encoded more than it had to, or wrote lowercase escapes, means the same.
    variant = re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), encoded).replace("~", "%7E")
    variant = variant.replace("-", "%2D").replace(".", "%2e")
    assert canonical_uri(variant) == encoded


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
    assert canonical_uri(raw) == canonical


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
    assert canonical_query(raw) == canonical


def test_it_answers_invalid_uri_for_a_broken_escape():
    request = sign("GET", "http://s3.example.test:9000/b/k")
    broken = Request("GET", "/b/k%zz", "", request.headers, now=NOW)
    assert error_of(verify, broken).code == "InvalidURI"


@pytest.mark.parametrize(
    "canonicalize", [lambda: canonical_uri("/b/k%zz"), lambda: canonical_query("a=%zz&b=1")]
)
def test_it_answers_400_invalid_uri_for_a_broken_escape_in_a_path_or_query(canonicalize):
    with pytest.raises(S3Error) as refused:
        canonicalize()
    error = refused.value
    assert (error.code, error.status, error.message) == (
        "InvalidURI",
        400,
        "Couldn't parse the specified URI.",
    )


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        # Already canonical (only sorted), and decoded and re-encoded.
        ("b=2&X-Amz-Signature=abc&a=1", "a=1&b=2"),
        ("b=%2a&X-Amz-Signature=abc&&a=1", "a=1&b=%2A"),
        ("X-Amz-Signature=abc&b=%2a&&a=1&X-Amz-Signature-Not=2", "X-Amz-Signature-Not=2&a=1&b=%2A"),
    ],
)
def test_it_leaves_out_the_excluded_key_only(raw, canonical):
    assert canonical_query(raw, exclude="X-Amz-Signature") == canonical


def test_it_skips_empty_parts_anywhere_in_a_query_it_re_encodes():
    assert canonical_query("b=%2a&&a=1&&c") == "a=1&b=%2A&c="


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("plain", "plain"),
        ("a+b", "a b"),
        (
            "EXCAAAA%2F20250314%2Fus-east-1%2Fs3%2Faws4_request",
            "EXCAAAA/20250314/us-east-1/s3/aws4_request",
        ),
        ("a%2Fb+c", "a/b c"),
        ("a%2fb", "a/b"),
        ("a%2Cb+c", "a,b c"),
        ("caf%C3%A9", "café"),
        # Bytes that are not UTF-8 become U+FFFD rather than an error.
        ("%FF%2F", "\ufffd/"),
    ],
)
def test_it_decodes_query_values_as_s3_does(raw, decoded):
    assert _decode_query_value(raw) == decoded
