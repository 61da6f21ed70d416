"""The gateway's pieces without a network: authorize(), routing, the upstream signer and
the ListBuckets filter."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from gateway import operations, sigv4
from gateway.authority import KeyInfo, authorize, check_access, refusal
from gateway.listing import filter_list_buckets
from gateway.operations import Operation, classify
from gateway.proxy import forwarded_query
from gateway.upstream import Signer
from keys.scope import ADMIN, READ_ONLY, READ_WRITE, Scope

KEY = KeyInfo("EXC" + "A" * 17, org_id=1, status="active", expires_at=None, kek_id="", sealed=b"")


def _operation(method: str, target: str, host: str = "127.0.0.1:9000", **headers: str):
    path, _, query = target.partition("?")
    header_map = {"host": [host], **{name: [value] for name, value in headers.items()}}
    return classify(method, path, query, header_map, "s3.test")


# One request of each kind authorize() tells apart.
REQUESTS = [
    ("GET", "/bkt/k"),
    ("PUT", "/bkt/k"),
    ("DELETE", "/bkt/k"),
    ("DELETE", "/bkt"),
    ("PUT", "/bkt"),
    ("GET", "/bkt?list-type=2"),
]


@pytest.mark.parametrize(("method", "target"), [r for r in REQUESTS if r != ("PUT", "/bkt")])
def test_it_allows_everything_on_the_orgs_own_buckets(method, target):
    assert authorize(KEY, _operation(method, target), {"bkt": 1})


@pytest.mark.parametrize(
    ("method", "target", "owner", "answer"),
    [
        ("GET", "/bkt/k", 2, (403, "AccessDenied")),
        ("GET", "/bkt/k", None, (404, "NoSuchBucket")),
        ("DELETE", "/bkt", None, (404, "NoSuchBucket")),
        ("PUT", "/bkt", 1, (409, "BucketAlreadyOwnedByYou")),
        ("PUT", "/bkt", 2, (409, "BucketAlreadyExists")),
        ("PUT", "/bkt", None, None),
    ],
)
def test_it_refuses_as_s3_does(method, target, owner, answer):
    error = refusal(KEY, _operation(method, target), {"bkt": owner})
    assert (error and (error.status, error.code)) == answer
    if answer is not None:
        # S3 names the bucket, except in AccessDenied, which tells nothing.
        named = {} if answer[1] == "AccessDenied" else {"BucketName": "bkt"}
        assert error.extra == named


@pytest.mark.parametrize(("method", "target"), REQUESTS)
def test_it_denies_everything_on_another_orgs_buckets(method, target):
    assert not authorize(KEY, _operation(method, target), {"bkt": 2})


@pytest.mark.parametrize(("method", "target"), [r for r in REQUESTS if r != ("PUT", "/bkt")])
def test_it_denies_buckets_no_org_owns_except_to_create_them(method, target):
    assert not authorize(KEY, _operation(method, target), {"bkt": None})
    assert authorize(KEY, _operation("PUT", "/bkt"), {"bkt": None})


def test_it_lists_buckets_without_a_bucket():
    assert authorize(KEY, _operation("GET", "/"), {})


def test_it_denies_a_copy_from_another_orgs_bucket_into_the_orgs_own():
    copy = _operation("PUT", "/bkt/k", **{"x-amz-copy-source": "/src/some%20key"})
    assert [(t.bucket, t.key, t.access) for t in copy.touches] == [
        ("bkt", "k", "write"),
        ("src", "some key", "read"),
    ]
    assert authorize(KEY, copy, {"bkt": 1, "src": 1})
    assert not authorize(KEY, copy, {"bkt": 1, "src": 2})
    assert not authorize(KEY, copy, {"bkt": 2, "src": 1})


@pytest.mark.parametrize("level", [operations.BUCKET, operations.OBJECT])
def test_it_denies_a_bucket_or_object_operation_that_names_no_bucket(level):
    # classify() never makes one; should it ever, it touches nothing and may do nothing.
    nameless = Operation("GetObject", level, operations.READ)
    error = refusal(KEY, nameless, {})
    assert (error.status, error.code) == (403, "AccessDenied")


def test_it_raises_the_refusal_through_check_access():
    check_access(KEY, _operation("GET", "/bkt/k"), {"bkt": 1})
    for owner, answer in ((2, (403, "AccessDenied")), (None, (404, "NoSuchBucket"))):
        with pytest.raises(sigv4.S3Error) as refused:
            check_access(KEY, _operation("GET", "/bkt/k"), {"bkt": owner})
        assert (refused.value.status, refused.value.code) == answer


@pytest.mark.parametrize(
    ("method", "target", "host", "bucket", "key", "name"),
    [
        ("GET", "/", "127.0.0.1:9000", None, None, "ListBuckets"),
        ("PUT", "/bkt", "127.0.0.1:9000", "bkt", None, "CreateBucket"),
        ("PUT", "/bkt/", "127.0.0.1:9000", "bkt", None, "CreateBucket"),
        ("DELETE", "/bkt", "127.0.0.1:9000", "bkt", None, "DeleteBucket"),
        ("GET", "/bkt/a%20b/c", "127.0.0.1:9000", "bkt", "a b/c", "GetObject"),
        ("POST", "/bkt?delete", "127.0.0.1:9000", "bkt", None, "DeleteObjects"),
        ("GET", "/a%20b/c", "bkt.s3.test:9000", "bkt", "a b/c", "GetObject"),
        ("PUT", "/", "bkt.s3.test", "bkt", None, "CreateBucket"),
        # A presigned URL's own parameters are not a subresource.
        (
            "DELETE",
            "/bkt?X-Amz-Signature=ab&X-Amz-Date=1",
            "127.0.0.1",
            "bkt",
            None,
            "DeleteBucket",
        ),
    ],
)
def test_it_routes_requests(method, target, host, bucket, key, name):
    operation = _operation(method, target, host)
    assert (operation.bucket, operation.key, operation.name) == (bucket, key, name)


@pytest.mark.parametrize("source", ["/src%2Fx/some%20key", "src%2fx/k", "/SRC/k", "/src./k"])
def test_it_refuses_a_copy_source_whose_bucket_is_not_a_bucket_name(source):
    with pytest.raises(sigv4.S3Error) as excinfo:
        _operation("PUT", "/dst/k", **{"x-amz-copy-source": source})
    assert excinfo.value.code == "InvalidBucketName"


def test_it_drops_presign_parameters_from_the_forwarded_query():
    query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&uploads&prefix=a+b&X-Amz-Signature=00"
    assert forwarded_query(query) == "prefix=a%20b&uploads="


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
        b"<ContinuationToken>after-theirs</ContinuationToken>"
        b"<Owner><ID>x</ID></Owner><Buckets>"
        b"<Bucket><Name>mine</Name><CreationDate>2026-01-01T00:00:00Z</CreationDate></Bucket>"
        b"<Bucket><Name>theirs</Name><CreationDate>2026-01-01T00:00:00Z</CreationDate></Bucket>"
        b"</Buckets></ListAllMyBucketsResult>"
    )
    filtered = filter_list_buckets(body, {"mine"})
    assert b"<Name>mine</Name>" in filtered
    assert b"theirs" not in filtered
    assert b"ContinuationToken" not in filtered
    assert b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"' in filtered


# ---------------------------------------------------------------------------------------
# Scoped keys: refusal() asks the key's scope before the owners


def _scoped(**parts) -> KeyInfo:
    return replace(KEY, scope=Scope.build(**parts))


PREFIXED = _scoped(permission=READ_WRITE, buckets=[("bkt", "team/"), "src"])
OWNED = {"bkt": 1, "src": 1, "other": 1}
COPY_INSIDE = {"x-amz-copy-source": "/bkt/team/a"}


def _denial(key: KeyInfo, operation: Operation, address: str | None = "10.0.0.1") -> str | None:
    error = refusal(key, operation, OWNED, address)
    if error is None:
        return None
    assert (error.status, error.code) == (403, "AccessDenied")
    assert error.message == f"Access Denied. This access key may do {key.scope.describe()}."
    return error.message


@pytest.mark.parametrize(
    ("method", "target", "headers", "allowed"),
    [
        # Objects: inside the prefix only, the copy's source included.
        ("GET", "/bkt/team/a", {}, True),
        ("GET", "/bkt/teamwork", {}, False),
        ("GET", "/bkt/other/a", {}, False),
        ("PUT", "/bkt/team/b", {}, True),
        ("PUT", "/bkt/other/b", {}, False),
        ("PUT", "/bkt/team/b", COPY_INSIDE, True),
        ("PUT", "/bkt/team/b", {"x-amz-copy-source": "/bkt/other/a"}, False),
        ("PUT", "/bkt/other/b", COPY_INSIDE, False),
        ("PUT", "/src/any/b", COPY_INSIDE, True),
        ("PUT", "/bkt/team/b", {"x-amz-copy-source": "/other/a"}, False),
        ("PUT", "/other/a", COPY_INSIDE, False),
        ("PUT", "/bkt/team/b?partNumber=1&uploadId=u", {"x-amz-copy-source": "/bkt/x/a"}, False),
        ("DELETE", "/bkt/team/a", {}, True),
        ("DELETE", "/bkt/tea", {}, False),
        # Listings: only under a prefix inside the grant.
        ("GET", "/bkt?list-type=2&prefix=team/", {}, True),
        ("GET", "/bkt?list-type=2&prefix=team/sub", {}, True),
        ("GET", "/bkt?list-type=2&prefix=tea", {}, False),
        ("GET", "/bkt?list-type=2", {}, False),
        ("GET", "/bkt?prefix=team/", {}, True),
        ("GET", "/bkt", {}, False),
        ("GET", "/bkt?versions&prefix=team/", {}, True),
        ("GET", "/bkt?versions", {}, False),
        ("GET", "/bkt?uploads&prefix=team/x", {}, True),
        ("GET", "/bkt?uploads", {}, False),
        ("GET", "/src?list-type=2", {}, True),
        ("GET", "/other?list-type=2&prefix=team/", {}, False),
        # Seen with the bucket: any key that names it.
        ("HEAD", "/bkt", {}, True),
        ("GET", "/bkt?location", {}, True),
        ("HEAD", "/other", {}, False),
        ("GET", "/other?location", {}, False),
        # DeleteObjects' bucket before its body is read: each name is checked once it is.
        ("POST", "/bkt?delete", {}, True),
        ("POST", "/other?delete", {}, False),
        # Other bucket operations need the whole bucket.
        ("GET", "/bkt?acl", {}, False),
        ("GET", "/src?acl", {}, True),
        ("GET", "/bkt?cors", {}, False),
        ("GET", "/src?versioning", {}, True),
        # Admin operations need admin.
        ("DELETE", "/src", {}, False),
        ("PUT", "/src?cors", {}, False),
        # ListBuckets is answered filtered to the scope's buckets.
        ("GET", "/", {}, True),
    ],
)
def test_it_lets_a_prefix_scoped_key_reach_names_inside_its_grants_only(
    method, target, headers, allowed
):
    denial = _denial(PREFIXED, _operation(method, target, **headers))
    assert (denial is None) == allowed


def test_it_refuses_delete_objects_whole_when_one_name_lies_outside():
    asked = _operation("POST", "/bkt?delete")
    inside = (
        b"<Delete><Object><Key>team/a</Key></Object><Object><Key>team/b</Key></Object></Delete>"
    )
    outside = inside.replace(b"team/b", b"else/b")
    assert _denial(PREFIXED, operations.with_deleted_objects(asked, inside)) is None
    assert _denial(PREFIXED, operations.with_deleted_objects(asked, outside)) is not None


@pytest.mark.parametrize(
    ("permission", "allowed"),
    [
        (READ_ONLY, {"GET /bkt/k", "HEAD /bkt/k", "GET /bkt?list-type=2", "GET /", "HEAD /bkt"}),
        (
            READ_WRITE,
            {"GET /bkt/k", "HEAD /bkt/k", "GET /bkt?list-type=2", "GET /", "HEAD /bkt"}
            | {"PUT /bkt/k", "DELETE /bkt/k", "POST /bkt?delete", "POST /bkt/k?uploads"},
        ),
    ],
)
def test_it_allows_each_permission_its_operations_only(permission, allowed):
    key = _scoped(permission=permission)
    for request in [
        "GET /bkt/k",
        "HEAD /bkt/k",
        "GET /bkt?list-type=2",
        "GET /",
        "HEAD /bkt",
        "PUT /bkt/k",
        "DELETE /bkt/k",
        "POST /bkt?delete",
        "POST /bkt/k?uploads",
        "PUT /bkt?cors",
        "DELETE /bkt",
        "PUT /bkt?tagging",
    ]:
        method, target = request.split(" ")
        assert (_denial(key, _operation(method, target)) is None) == (request in allowed), request
    # Creating a bucket needs admin (and then a name no org holds).
    create = _operation("PUT", "/new")
    assert refusal(key, create, {"new": None}, None) is not None
    assert (
        refusal(_scoped(permission=ADMIN, networks=["10.0.0.0/8"]), create, {}, "10.0.0.9") is None
    )


def test_it_denies_a_bucket_scoped_key_other_buckets_before_asking_their_owners():
    key = _scoped(buckets=["bkt"])
    # No org holds "gone": a key scoped elsewhere is told AccessDenied, not NoSuchBucket.
    error = refusal(key, _operation("GET", "/gone/k"), {"gone": None}, None)
    assert (error.code, error.message) == (
        "AccessDenied",
        f"Access Denied. This access key may do {key.scope.describe()}.",
    )
    assert refusal(key, _operation("GET", "/bkt/k"), {"bkt": None}, None).code == "NoSuchBucket"
    assert refusal(key, _operation("GET", "/bkt/k"), {"bkt": 2}, None).code == "AccessDenied"
    assert refusal(key, _operation("PUT", "/bkt"), {"bkt": None}, None) is None
    assert refusal(key, _operation("PUT", "/new"), {"new": None}, None).code == "AccessDenied"


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("10.1.2.3", True),
        ("::ffff:10.1.2.3", True),
        ("2001:db8::7", True),
        ("192.0.2.1", False),
        ("2001:db9::1", False),
        ("not an address", False),
        (None, False),
    ],
)
def test_it_refuses_a_key_limited_to_networks_elsewhere(address, allowed):
    key = _scoped(networks=["10.0.0.0/8", "2001:db8::/32"])
    for request in [("GET", "/bkt/k"), ("GET", "/"), ("HEAD", "/bkt")]:
        denial = refusal(key, _operation(*request), OWNED, address)
        assert (denial is None) == allowed
        # The gateway and the verify API ask through these two, with the same address.
        assert authorize(key, _operation(*request), OWNED, address) == allowed
        if allowed:
            check_access(key, _operation(*request), OWNED, address)
        else:
            with pytest.raises(sigv4.S3Error) as refused:
                check_access(key, _operation(*request), OWNED, address)
            assert (refused.value.status, refused.value.code) == (403, "AccessDenied")
    # The default scope allows any address, an unknown one included.
    assert refusal(KEY, _operation("GET", "/bkt/k"), OWNED, None) is None


def test_it_denies_operations_the_classifier_does_not_know():
    unknown = Operation(
        "SelectObjectContent",
        operations.OBJECT,
        operations.READ,
        "bkt",
        "team/a",
        None,
        (operations.Touch("bkt", "team/a", operations.READ),),
    )
    assert _denial(PREFIXED, unknown) is not None
    assert refusal(KEY, unknown, OWNED, None).code == "AccessDenied"
    # A listing that lost its prefix (never classified so) lists nothing.
    bare = replace(_operation("GET", "/src?list-type=2"), list_prefix=None)
    assert _denial(PREFIXED, bare) is not None


@pytest.mark.parametrize(
    ("names", "allowed"),
    [
        ({"action": "read", "bucket": "src"}, True),
        ({"action": "read", "bucket": "bkt"}, False),
        ({"action": "read", "bucket": "bkt", "key": "team/a"}, True),
        ({"action": "read", "bucket": "bkt", "key": "else/a"}, False),
        ({"action": "read", "bucket": "bkt", "prefix": "team/"}, True),
        ({"action": "read", "bucket": "bkt", "prefix": "te"}, False),
        ({"action": "write", "bucket": "bkt", "key": "team/a"}, True),
        ({"action": "write", "bucket": "bkt", "key": "team/a", "copy_source_bucket": "bkt"}, False),
        (
            {
                "action": "write",
                "bucket": "bkt",
                "key": "team/a",
                "copy_source_bucket": "bkt",
                "copy_source_key": "team/b",
            },
            True,
        ),
        (
            {
                "action": "write",
                "bucket": "bkt",
                "key": "team/a",
                "copy_source_bucket": "bkt",
                "copy_source_key": "x/b",
            },
            False,
        ),
        ({"action": "ListBuckets", "bucket": None}, True),
        ({"action": "DeleteBucket", "bucket": "src"}, False),
    ],
)
def test_it_decides_the_verify_apis_questions_alike(names, allowed):
    operation = operations.for_verify_action(
        names["action"],
        names["bucket"],
        names.get("copy_source_bucket"),
        names.get("key"),
        names.get("copy_source_key"),
        names.get("prefix"),
    )
    assert (_denial(PREFIXED, operation) is None) == allowed
