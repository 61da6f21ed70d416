"""The gateway's pieces without a network: authorize(), routing, the upstream signer and
the ListBuckets filter."""

from __future__ import annotations

import time

import pytest

from gateway import sigv4
from gateway.app import _filter_list_buckets, _forwarded_query, route
from gateway.authority import (
    CREATE_BUCKET,
    DELETE_BUCKET,
    LIST_BUCKETS,
    READ,
    WRITE,
    BucketRef,
    KeyInfo,
    authorize,
)
from gateway.upstream import Signer

KEY = KeyInfo("EXC" + "A" * 17, org_id=1, status="active", expires_at=None, kek_id="", sealed=b"")


@pytest.mark.parametrize("action", [READ, WRITE, DELETE_BUCKET, CREATE_BUCKET])
def test_it_allows_everything_on_the_orgs_own_buckets(action):
    assert authorize(KEY, action, BucketRef("mine", 1))


@pytest.mark.parametrize("action", [READ, WRITE, DELETE_BUCKET, CREATE_BUCKET])
def test_it_denies_everything_on_another_orgs_buckets(action):
    assert not authorize(KEY, action, BucketRef("theirs", 2))


@pytest.mark.parametrize("action", [READ, WRITE, DELETE_BUCKET])
def test_it_denies_buckets_no_org_owns_except_to_create_them(action):
    assert not authorize(KEY, action, BucketRef("stray", None))
    assert authorize(KEY, CREATE_BUCKET, BucketRef("stray", None))


def test_it_lists_buckets_only_without_a_bucket():
    assert authorize(KEY, LIST_BUCKETS, None)
    assert not authorize(KEY, READ, None)


def _request(method: str, target: str, host: str = "127.0.0.1:9000", **headers: str):
    path, _, query = target.partition("?")
    pairs = [("host", host), *headers.items()]
    return sigv4.Request(method, path, query, pairs, header_map={k: [v] for k, v in pairs})


@pytest.mark.parametrize(
    ("method", "target", "host", "bucket", "key_path", "action"),
    [
        ("GET", "/", "127.0.0.1:9000", None, "", LIST_BUCKETS),
        ("PUT", "/bkt", "127.0.0.1:9000", "bkt", "", CREATE_BUCKET),
        ("PUT", "/bkt/", "127.0.0.1:9000", "bkt", "", CREATE_BUCKET),
        ("PUT", "/bkt?acl", "127.0.0.1:9000", "bkt", "", WRITE),
        ("DELETE", "/bkt", "127.0.0.1:9000", "bkt", "", DELETE_BUCKET),
        ("GET", "/bkt/a%20b/c", "127.0.0.1:9000", "bkt", "/a%20b/c", READ),
        ("POST", "/bkt?delete", "127.0.0.1:9000", "bkt", "", WRITE),
        ("GET", "/a%20b/c", "bkt.s3.test:9000", "bkt", "/a%20b/c", READ),
        ("PUT", "/", "bkt.s3.test", "bkt", "", CREATE_BUCKET),
        # A presigned URL's own parameters are not a subresource.
        ("DELETE", "/bkt?X-Amz-Signature=ab&X-Amz-Date=1", "127.0.0.1", "bkt", "", DELETE_BUCKET),
    ],
)
def test_it_routes_requests(method, target, host, bucket, key_path, action):
    routed = route(_request(method, target, host), "s3.test")
    assert (routed.bucket, routed.key_path, routed.action) == (bucket, key_path, action)


def test_it_names_the_copy_source_bucket():
    request = _request("PUT", "/dst/k", **{"x-amz-copy-source": "/src%2Fx/some%20key?versionId=1"})
    assert route(request, None).copy_source_bucket == "src"


def test_it_drops_presign_parameters_from_the_forwarded_query():
    query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&uploads&prefix=a+b&X-Amz-Signature=00"
    assert _forwarded_query(query) == "prefix=a%20b&uploads="


def test_it_signs_upstream_requests_as_sigv4_verifies_them():
    signer = Signer("http://127.0.0.1:9100", "UPKEY", "upstream-secret", "us-east-1")
    path = sigv4.canonical_uri("/bkt/%c3%bc%20+%25.txt")
    url, headers = signer.sign(
        "PUT",
        path,
        "partNumber=1&uploadId=x",
        [("x-amz-meta-a", " two  words "), ("content-length", "3")],
    )
    assert url == "http://127.0.0.1:9100/bkt/%C3%BC%20%2B%25.txt?partNumber=1&uploadId=x"
    request = sigv4.Request(
        "PUT", path, "partNumber=1&uploadId=x", [("host", "127.0.0.1:9100"), *headers]
    )
    auth = sigv4.parse(request, region="us-east-1")
    cache = sigv4.SigningKeyCache()
    verified = sigv4.verify(auth, cache.provider(lambda _id: "upstream-secret"))
    assert verified.payload == sigv4.UNSIGNED_PAYLOAD
    assert "x-amz-meta-a" in auth.signed_headers
    with pytest.raises(sigv4.S3Error) as excinfo:
        sigv4.verify(auth, sigv4.SigningKeyCache().provider(lambda _id: "other"))
    assert excinfo.value.code == "SignatureDoesNotMatch"
    assert abs(auth.timestamp - time.time()) < 5


def test_it_filters_list_buckets_to_the_orgs_buckets():
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b'<ListAllMyBucketsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Owner><ID>x</ID></Owner><Buckets>"
        b"<Bucket><Name>mine</Name><CreationDate>2026-01-01T00:00:00Z</CreationDate></Bucket>"
        b"<Bucket><Name>theirs</Name><CreationDate>2026-01-01T00:00:00Z</CreationDate></Bucket>"
        b"</Buckets></ListAllMyBucketsResult>"
    )
    filtered = _filter_list_buckets(body, {"mine"})
    assert b"<Name>mine</Name>" in filtered
    assert b"theirs" not in filtered
    assert b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"' in filtered
