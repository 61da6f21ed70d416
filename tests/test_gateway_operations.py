from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

import botocore.session
import pytest
from botocore import xform_name
from botocore.awsrequest import AWSPreparedRequest
from botocore.config import Config
from botocore.model import Shape

from gateway import operations
from gateway.operations import (
    ADMIN,
    BUCKET,
    DELETE_OBJECTS_MAX_KEYS,
    OBJECT,
    READ,
    RULES,
    SERVICE,
    SINGLE_VALUE_HEADERS,
    SUPPORTED,
    WRITE,
    CopySource,
    Operation,
    Touch,
    classify,
    delete_objects_keys,
    for_verify_action,
    parse_copy_source,
    with_deleted_objects,
)
from gateway.sigv4 import S3Error

# What the botocore-driven test fills in for members every S3 operation shares. Anything
# else is generated from its shape.
BUCKET_NAME = "b-bucket-1"
KEY = "some/key.txt"
SOURCE = CopySource("src-bucket", "src/key.txt", None)
MEMBER_VALUES: dict[str, Any] = {
    "Bucket": BUCKET_NAME,
    "Key": KEY,
    "UploadId": "upload-1",
    "PartNumber": 1,
    "CopySource": "src-bucket/src/key.txt",
    "Delete": {"Objects": [{"Key": "a.txt"}]},
}
# Operations in botocore's model that classify() refuses with something other than 501.
REFUSED_OTHERWISE = {
    # S3 Object Lambda's callback: botocore posts to /WriteGetObjectResponse on a host named
    # after the RequestRoute, so the first path segment (or the host's first label) reads as
    # a bucket name, and it is not a valid one.
    "WriteGetObjectResponse": (400, "InvalidBucketName"),
}
# Both addressing styles: (endpoint_url, addressing_style, endpoint_host for classify).
ADDRESSING = {
    "path": ("http://127.0.0.1:9", "path", None),
    "virtual": ("http://s3.test:9000", "virtual", "s3.test"),
}
HOST = {"host": ["127.0.0.1:9000"]}


def _classify(
    method: str,
    target: str,
    headers: Mapping[str, list[str]] = HOST,
    endpoint_host: str | None = None,
) -> Operation:
    path, _, query = target.partition("?")
    return classify(method, path, query, headers, endpoint_host)


def _refused(
    method: str,
    target: str,
    headers: Mapping[str, list[str]] = HOST,
    endpoint_host: str | None = None,
) -> S3Error:
    with pytest.raises(S3Error) as caught:
        _classify(method, target, headers, endpoint_host)
    return caught.value


def _delete_body(keys: Iterable[str]) -> bytes:
    objects = "".join(f"<Object><Key>{escape(key)}</Key></Object>" for key in keys)
    return f"<Delete>{objects}</Delete>".encode()


class Captured(Exception):
    """Raised from botocore's before-send hook so the prepared request is never sent."""

    def __init__(self, request: AWSPreparedRequest) -> None:
        super().__init__(request.url)
        self.request = request


def _capture(request: AWSPreparedRequest, **kwargs: object) -> None:
    raise Captured(request)


def _fill(shape: Shape, name: str | None = None) -> Any:
    """Minimal valid input for ``shape``: required members only, one of each list."""
    if name in MEMBER_VALUES:
        return MEMBER_VALUES[name]
    kind = shape.type_name
    if kind == "structure":
        if shape.is_tagged_union:
            first = next(iter(shape.members))
            return {first: _fill(shape.members[first], first)}
        return {member: _fill(shape.members[member], member) for member in shape.required_members}
    if kind == "list":
        return [_fill(shape.member)]
    if kind == "map":
        return {"k": _fill(shape.value)}
    if kind == "string":
        return shape.enum[0] if shape.enum else "v" * max(1, shape.metadata.get("min", 1))
    if kind in ("integer", "long"):
        return max(1, shape.metadata.get("min", 1))
    if kind in ("float", "double"):
        return 1.0
    if kind == "boolean":
        return True
    if kind == "blob":
        return b"x"
    if kind == "timestamp":
        return datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    raise AssertionError(f"no filler for {kind} shape {shape.name}")


def _headers(request: AWSPreparedRequest) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in request.headers.items():
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        headers.setdefault(name.lower(), []).append(text)
    # urllib3 adds Host from the URL when it sends the request.
    headers.setdefault("host", [urlsplit(request.url).netloc])
    return headers


def _botocore_requests(style: str) -> dict[str, AWSPreparedRequest]:
    """Every operation in botocore's S3 model, as the request botocore would send."""
    endpoint_url, addressing_style, _ = ADDRESSING[style]
    session = botocore.session.get_session()
    model = session.get_service_model("s3")
    client = session.create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=endpoint_url,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="x" * 40,
        config=Config(
            s3={"addressing_style": addressing_style},
            signature_version="s3v4",
            retries={"max_attempts": 0},
        ),
    )
    client.meta.events.register("before-send.s3", _capture)
    requests = {}
    for name in model.operation_names:
        input_shape = model.operation_model(name).input_shape
        params = _fill(input_shape) if input_shape is not None else {}
        with pytest.raises(Captured) as caught:
            getattr(client, xform_name(name))(**params)
        requests[name] = caught.value.request
    return requests


def _classify_prepared(request: AWSPreparedRequest, endpoint_host: str | None) -> Operation:
    url = urlsplit(request.url)
    return classify(request.method, url.path, url.query, _headers(request), endpoint_host)


def _rule(name: str) -> operations.Rule:
    return next(rule for rule in RULES if rule.name == name)


@pytest.mark.parametrize("style", sorted(ADDRESSING))
def test_it_classifies_every_operation_in_botocores_s3_model(style: str, capsys) -> None:
    requests = _botocore_requests(style)
    endpoint_host = ADDRESSING[style][2]
    model = botocore.session.get_session().get_service_model("s3")
    problems = []
    refused = []
    for name, request in sorted(requests.items()):
        sent = f"{name}: {request.method} {request.url}"
        members = model.operation_model(name).input_shape.members
        try:
            operation = _classify_prepared(request, endpoint_host)
        except S3Error as error:
            if name in SUPPORTED:
                problems.append(f"{sent} refused with {error.status} {error.code}")
                continue
            refused.append(name)
            expected = REFUSED_OTHERWISE.get(name, (501, "NotImplemented"))
            if (error.status, error.code) != expected:
                problems.append(f"{sent} refused with {error.status} {error.code}")
            continue
        if name not in SUPPORTED:
            problems.append(f"{sent} classified as {operation.name}, not refused")
        elif name != operation.name and name not in _rule(operation.name).aliases:
            problems.append(f"{sent} classified as {operation.name}")
        elif operation.bucket != (BUCKET_NAME if "Bucket" in members else None):
            problems.append(f"{sent} names bucket {operation.bucket!r}")
        elif operation.key != (KEY if "Key" in members else None):
            problems.append(f"{sent} names key {operation.key!r}")
        elif operation.copy_source != (SOURCE if "CopySource" in members else None):
            problems.append(f"{sent} copies from {operation.copy_source!r}")
    supported = len(requests) - len(refused)
    summary = f"{supported} operations supported, {len(refused)} refused ({style} style)"
    with capsys.disabled():
        print(f"\n{summary}\nrefused: {', '.join(refused)}")
    assert problems == [], summary
    assert SUPPORTED <= set(requests), "every supported name and alias is one botocore knows"
    assert supported == len(SUPPORTED), summary


@pytest.mark.parametrize(
    ("method", "target", "name", "bucket", "key"),
    [
        ("GET", "/", "ListBuckets", None, None),
        ("GET", "/?max-buckets=10&prefix=b", "ListBuckets", None, None),
        ("PUT", "/b-1", "CreateBucket", "b-1", None),
        ("PUT", "/b-1/", "CreateBucket", "b-1", None),
        ("DELETE", "/b-1", "DeleteBucket", "b-1", None),
        ("HEAD", "/b-1", "HeadBucket", "b-1", None),
        ("GET", "/b-1", "ListObjects", "b-1", None),
        ("GET", "/b-1?prefix=a%2F&delimiter=%2F&marker=m", "ListObjects", "b-1", None),
        ("GET", "/b-1?list-type=2&start-after=a", "ListObjectsV2", "b-1", None),
        ("GET", "/b-1?versions&key-marker=a", "ListObjectVersions", "b-1", None),
        ("GET", "/b-1?uploads&max-uploads=5", "ListMultipartUploads", "b-1", None),
        ("GET", "/b-1?location", "GetBucketLocation", "b-1", None),
        ("GET", "/b-1?acl", "GetBucketAcl", "b-1", None),
        ("PUT", "/b-1?versioning", "PutBucketVersioning", "b-1", None),
        ("DELETE", "/b-1?tagging", "DeleteBucketTagging", "b-1", None),
        ("GET", "/b-1?lifecycle", "GetBucketLifecycleConfiguration", "b-1", None),
        ("POST", "/b-1?delete", "DeleteObjects", "b-1", None),
        ("GET", "/b-1/a.txt", "GetObject", "b-1", "a.txt"),
        ("GET", "/b-1/a.txt?versionId=v1&response-content-type=x", "GetObject", "b-1", "a.txt"),
        ("HEAD", "/b-1/dir/a.txt?partNumber=1", "HeadObject", "b-1", "dir/a.txt"),
        ("PUT", "/b-1/a.txt", "PutObject", "b-1", "a.txt"),
        ("DELETE", "/b-1/a.txt?versionId=v1", "DeleteObject", "b-1", "a.txt"),
        ("POST", "/b-1/a.txt?uploads", "CreateMultipartUpload", "b-1", "a.txt"),
        ("PUT", "/b-1/a.txt?partNumber=1&uploadId=u", "UploadPart", "b-1", "a.txt"),
        ("POST", "/b-1/a.txt?uploadId=u", "CompleteMultipartUpload", "b-1", "a.txt"),
        ("DELETE", "/b-1/a.txt?uploadId=u", "AbortMultipartUpload", "b-1", "a.txt"),
        ("GET", "/b-1/a.txt?uploadId=u&max-parts=2", "ListParts", "b-1", "a.txt"),
        ("GET", "/b-1/a.txt?tagging", "GetObjectTagging", "b-1", "a.txt"),
        ("PUT", "/b-1/a.txt?tagging&versionId=v1", "PutObjectTagging", "b-1", "a.txt"),
        ("GET", "/b-1/a.txt?acl", "GetObjectAcl", "b-1", "a.txt"),
        ("GET", "/b-1/a.txt?attributes", "GetObjectAttributes", "b-1", "a.txt"),
        ("GET", "/b-1/a.txt?x-id=GetObject", "GetObject", "b-1", "a.txt"),
        ("PUT", "/b-1/a%20b%2Bc", "PutObject", "b-1", "a b+c"),
        ("PUT", "/b-1/a+b", "PutObject", "b-1", "a+b"),
        ("PUT", "/b-1/a%2Fb", "PutObject", "b-1", "a/b"),
        ("PUT", "/b-1/%C3%BC", "PutObject", "b-1", "ü"),
    ],
)
def test_it_classifies_path_style_requests(
    method: str, target: str, name: str, bucket: str | None, key: str | None
) -> None:
    operation = _classify(method, target)
    assert (operation.name, operation.bucket, operation.key) == (name, bucket, key)
    assert operation.level == (SERVICE if bucket is None else BUCKET if key is None else OBJECT)
    assert operation.access == _rule(name).access


@pytest.mark.parametrize(
    ("method", "host", "target", "name", "bucket", "key"),
    [
        ("GET", "bkt.s3.test:9000", "/", "ListObjects", "bkt", None),
        ("PUT", "bkt.s3.test:9000", "/", "CreateBucket", "bkt", None),
        ("GET", "bkt.s3.test:9000", "/?list-type=2", "ListObjectsV2", "bkt", None),
        ("GET", "bkt.s3.test:9000", "/dir/a.txt", "GetObject", "bkt", "dir/a.txt"),
        # The first path segment is part of the key, not another bucket.
        ("GET", "bkt.s3.test:9000", "/other/a.txt", "GetObject", "bkt", "other/a.txt"),
        ("GET", "my.bkt.s3.test", "/a.txt", "GetObject", "my.bkt", "a.txt"),
        ("GET", "BKT.S3.Test:9000", "/a.txt", "GetObject", "bkt", "a.txt"),
        # The endpoint itself, or a host outside it: path style.
        ("GET", "s3.test:9000", "/", "ListBuckets", None, None),
        ("GET", "s3.test:9000", "/bkt/a.txt", "GetObject", "bkt", "a.txt"),
        ("GET", "bkt.elsewhere.test", "/bkt/a.txt", "GetObject", "bkt", "a.txt"),
        ("GET", "[::1]:9000", "/bkt/a.txt", "GetObject", "bkt", "a.txt"),
    ],
)
def test_it_classifies_virtual_hosted_requests(
    method: str, host: str, target: str, name: str, bucket: str | None, key: str | None
) -> None:
    operation = _classify(method, target, {"host": [host]}, endpoint_host="s3.test")
    assert (operation.name, operation.bucket, operation.key) == (name, bucket, key)


@pytest.mark.parametrize(
    ("host", "target"),
    [
        ("s3.test", "/b-1%2Fother/a.txt"),
        ("s3.test", "/b-1%2fother"),
        ("s3.test", "/%62-1/a.txt"),
        ("s3.test", "//a.txt"),
        ("s3.test", "/B-1/a.txt"),
        ("s3.test", "/b_1/a.txt"),
        ("ab.s3.test", "/a.txt"),
        ("bad_name.s3.test", "/a.txt"),
    ],
)
def test_it_refuses_invalid_bucket_names_before_anything_else(host: str, target: str) -> None:
    error = _refused("GET", target, {"host": [host]}, endpoint_host="s3.test")
    assert (error.code, error.status) == ("InvalidBucketName", 400)


@pytest.mark.parametrize("target", ["b-1/a.txt", "", "*", "http://s3.test/b-1/a.txt"])
def test_it_refuses_a_target_without_a_leading_slash(target: str) -> None:
    error = _refused("GET", target)
    assert (error.code, error.status) == ("InvalidURI", 400)


@pytest.mark.parametrize(
    "target",
    [
        "/b-1/a/../b",
        "/b-1/../b-2/a.txt",
        "/b-1/./a",
        "/b-1/a/.",
        "/b-1/a/..",
        "/b-1/..",
        "/b-1/a//b",
        "/b-1//a",
        "/b-1//",
        "/b-1/a/%2E%2E/b",
        "/b-1/%2e%2e/b-2/a.txt",
        "/b-1/a/%2E/b",
        "/b-1/.%2E",
        "/b-1/a%2F..%2Fb",
        "/b-1/a%2F%2Fb",
        "/b-1/%2Fa",
        "/b-1/a%00b",
    ],
)
def test_it_refuses_keys_with_dot_or_empty_segments(target: str) -> None:
    error = _refused("GET", target)
    assert (error.code, error.status) == ("InvalidArgument", 400)


def test_it_refuses_dot_segments_in_virtual_hosted_keys() -> None:
    error = _refused("GET", "/a/../b", {"host": ["bkt.s3.test"]}, endpoint_host="s3.test")
    assert (error.code, error.status) == ("InvalidArgument", 400)


@pytest.mark.parametrize(
    ("target", "code"), [("/b-1/%zz", "InvalidURI"), ("/b-1/%FF", "InvalidArgument")]
)
def test_it_refuses_badly_encoded_keys(target: str, code: str) -> None:
    error = _refused("GET", target)
    assert (error.code, error.status) == (code, 400)


@pytest.mark.parametrize("name", SINGLE_VALUE_HEADERS)
def test_it_refuses_repeated_single_value_headers(name: str) -> None:
    value = "/src-b/a.txt" if name == "x-amz-copy-source" else "127.0.0.1:9000"
    headers = {**HOST, name: [value, value]}
    error = _refused("PUT", "/b-1/a.txt", headers)
    assert (error.code, error.status) == ("InvalidArgument", 400)
    assert error.extra == {"ArgumentName": name}


def test_it_allows_other_headers_repeated() -> None:
    operation = _classify("PUT", "/b-1/a.txt", {**HOST, "x-amz-meta-a": ["1", "2"]})
    assert operation.name == "PutObject"


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/b-1?acl&acl"),
        ("GET", "/b-1?acl&%61cl"),
        ("GET", "/b-1?prefix=a&prefix=b"),
        ("GET", "/b-1?list-type=2&list-type=2"),
        ("GET", "/b-1/a.txt?versionId=1&versionId=2"),
        ("PUT", "/b-1/a.txt?partNumber=1&uploadId=u&uploadId=v"),
        ("DELETE", "/b-1/a.txt?uploadId=u&uploadId=u"),
    ],
)
def test_it_refuses_repeated_query_parameters(method: str, target: str) -> None:
    error = _refused(method, target)
    assert (error.code, error.status) == ("InvalidArgument", 400)


def test_it_ignores_presign_and_sdk_parameters() -> None:
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20260101%2Fus-east-1%2Fs3"
        "%2Faws4_request&X-Amz-Date=20260101T000000Z&X-Amz-Expires=60"
        "&X-Amz-SignedHeaders=host&X-Amz-Signature=abc&x-id=GetObject"
    )
    assert _classify("GET", "/b-1/a.txt?" + query).name == "GetObject"


@pytest.mark.parametrize(
    ("client_method", "params", "name"),
    [
        ("get_object", {"ResponseContentDisposition": "attachment"}, "GetObject"),
        ("put_object", {}, "PutObject"),
        ("head_object", {}, "HeadObject"),
        ("delete_object", {}, "DeleteObject"),
    ],
)
def test_it_classifies_botocores_presigned_urls(
    client_method: str, params: dict[str, str], name: str
) -> None:
    client = botocore.session.get_session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9000",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="x" * 40,
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )
    url = urlsplit(
        client.generate_presigned_url(
            client_method, Params={"Bucket": "b-1", "Key": "dir/a b.txt", **params}
        )
    )
    operation = classify(client_method.split("_")[0].upper(), url.path, url.query, HOST, None)
    assert (operation.name, operation.bucket, operation.key) == (name, "b-1", "dir/a b.txt")


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/b-1?policy"),
        ("PUT", "/b-1?policy"),
        ("DELETE", "/b-1?policy"),
        ("GET", "/b-1?website"),
        ("PUT", "/b-1?acl"),
        ("PUT", "/b-1/a.txt?acl"),
        ("GET", "/b-1/a.txt?torrent"),
        ("GET", "/b-1?session"),
        ("GET", "/b-1/a.txt?Acl"),
        ("GET", "/b-1/a.txt?unknown=1"),
        ("GET", "/b-1/a.txt?uploadId=u&tagging"),
        ("GET", "/b-1?list-type=2&marker=m"),
        ("GET", "/b-1?uploads&versions"),
        ("DELETE", "/b-1?versionId=v1"),
        ("HEAD", "/b-1?acl"),
        ("PUT", "/b-1/a.txt?uploadId=u"),
        ("POST", "/b-1"),
        ("POST", "/b-1?delete&uploads"),
        ("POST", "/b-1/a.txt?restore"),
        ("POST", "/b-1/a.txt?select&select-type=2"),
        ("PATCH", "/b-1/a.txt"),
        ("OPTIONS", "/b-1/a.txt"),
    ],
)
def test_it_refuses_unimplemented_operations(method: str, target: str) -> None:
    error = _refused(method, target)
    assert (error.code, error.status) == ("NotImplemented", 501)


@pytest.mark.parametrize(
    "target", ["/a.txt", "/a.txt?uploads&uploadId=u", "/a.txt?delete", "/a.txt?partNumber=1"]
)
def test_it_refuses_post_on_an_object_without_uploads_or_upload_id(target: str) -> None:
    error = _refused("POST", "/b-1" + target)
    assert (error.code, error.status) == ("NotImplemented", 501)


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE", "HEAD"])
def test_it_refuses_methods_the_service_does_not_allow(method: str) -> None:
    error = _refused(method, "/")
    assert (error.code, error.status) == ("MethodNotAllowed", 405)


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "/b-1/a.txt"),
        ("POST", "/b-1/a.txt?uploads"),
        ("PUT", "/b-1/a.txt?tagging"),
        ("PUT", "/b-1"),
        ("POST", "/b-1?delete"),
    ],
)
def test_it_refuses_a_copy_source_on_operations_that_do_not_copy(method: str, target: str) -> None:
    error = _refused(method, target, {**HOST, "x-amz-copy-source": ["/src-b/a.txt"]})
    assert (error.code, error.status) == ("NotImplemented", 501)


@pytest.mark.parametrize("list_type", ["1", "3", "", "02", "2 "])
def test_it_refuses_list_types_other_than_2(list_type: str) -> None:
    error = _refused("GET", f"/b-1?list-type={list_type}")
    assert (error.code, error.status) == ("InvalidArgument", 400)


def test_it_refuses_a_list_type_without_a_value() -> None:
    error = _refused("GET", "/b-1?list-type")
    assert (error.code, error.status) == ("InvalidArgument", 400)


@pytest.mark.parametrize(
    ("value", "source"),
    [
        ("src-b/a.txt", CopySource("src-b", "a.txt", None)),
        ("/src-b/a.txt", CopySource("src-b", "a.txt", None)),
        ("/src-b/dir/a%20b+c.txt", CopySource("src-b", "dir/a b+c.txt", None)),
        ("/src-b/a%2Fb", CopySource("src-b", "a/b", None)),
        ("/src-b/%C3%BC%3F", CopySource("src-b", "ü?", None)),
        ("/src-b/a.txt?versionId=v1", CopySource("src-b", "a.txt", "v1")),
        ("src-b/a.txt?versionId=v%2B1%2F", CopySource("src-b", "a.txt", "v+1/")),
    ],
)
def test_it_parses_copy_sources(value: str, source: CopySource) -> None:
    assert parse_copy_source(value) == source
    assert parse_copy_source(source.header()) == source


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("src%2Fb/a.txt", "InvalidBucketName"),
        ("/src-b%2Fa.txt", "InvalidArgument"),
        ("//src-b/a.txt", "InvalidBucketName"),
        ("/Src-B/a.txt", "InvalidBucketName"),
        ("/s/a.txt", "InvalidBucketName"),
        ("src-b", "InvalidArgument"),
        ("/src-b/", "InvalidArgument"),
        ("", "InvalidArgument"),
        ("/src-b/a.txt?foo=bar", "InvalidArgument"),
        ("/src-b/a.txt?versionId=", "InvalidArgument"),
        ("/src-b/a.txt?versionId=v1&foo=bar", "InvalidArgument"),
        ("/src-b/a/../b", "InvalidArgument"),
        ("/src-b/a%2F..%2Fb", "InvalidArgument"),
        ("/src-b/a//b", "InvalidArgument"),
        ("/src-b/a%00", "InvalidArgument"),
        ("/src-b/%zz", "InvalidURI"),
    ],
)
def test_it_refuses_bad_copy_sources(value: str, code: str) -> None:
    with pytest.raises(S3Error) as caught:
        parse_copy_source(value)
    assert (caught.value.code, caught.value.status) == (code, 400)


def test_it_refuses_a_bad_copy_source_on_a_copy_request() -> None:
    error = _refused("PUT", "/b-1/a.txt", {**HOST, "x-amz-copy-source": ["/src%2Fb/a.txt"]})
    assert (error.code, error.status) == ("InvalidBucketName", 400)


def test_it_forwards_exactly_the_copy_source_it_validated() -> None:
    source = parse_copy_source("src-b/dir/a%20b+c~%C3%BC.txt?versionId=v%2F1")
    assert source.header() == "/src-b/dir/a%20b%2Bc~%C3%BC.txt?versionId=v%2F1"


@pytest.mark.parametrize(
    ("target", "name"),
    [("/b-1/dst.txt", "CopyObject"), ("/b-1/dst.txt?partNumber=2&uploadId=u", "UploadPartCopy")],
)
def test_it_touches_the_copy_target_for_write_and_the_source_for_read(
    target: str, name: str
) -> None:
    headers = {**HOST, "x-amz-copy-source": ["/src-b/dir/src.txt?versionId=v1"]}
    operation = _classify("PUT", target, headers)
    assert operation.name == name
    assert operation.copy_source == CopySource("src-b", "dir/src.txt", "v1")
    assert operation.touches == (
        Touch("b-1", "dst.txt", WRITE),
        Touch("src-b", "dir/src.txt", READ),
    )
    assert operation.buckets == ("b-1", "src-b")


def test_it_lists_a_bucket_once_when_copying_within_it() -> None:
    operation = _classify("PUT", "/b-1/dst.txt", {**HOST, "x-amz-copy-source": ["b-1/src.txt"]})
    assert operation.buckets == ("b-1",)
    assert len(operation.touches) == 2


@pytest.mark.parametrize(
    ("method", "target", "touches"),
    [
        ("GET", "/", ()),
        ("PUT", "/b-1", (Touch("b-1", None, ADMIN),)),
        ("GET", "/b-1?versioning", (Touch("b-1", None, READ),)),
        ("GET", "/b-1/a.txt", (Touch("b-1", "a.txt", READ),)),
        ("DELETE", "/b-1/a.txt", (Touch("b-1", "a.txt", WRITE),)),
    ],
)
def test_it_touches_the_target_with_the_access_it_needs(
    method: str, target: str, touches: tuple[Touch, ...]
) -> None:
    assert _classify(method, target).touches == touches


@pytest.mark.parametrize(
    ("host", "target", "upstream"),
    [
        ("s3.test", "/", "/"),
        ("s3.test", "/b-1", "/b-1"),
        ("s3.test", "/b-1/", "/b-1"),
        ("s3.test", "/b-1/a.txt", "/b-1/a.txt"),
        ("s3.test", "/b-1/a%20b", "/b-1/a%20b"),
        ("s3.test", "/b-1/a+b", "/b-1/a%2Bb"),
        ("s3.test", "/b-1/a%2fb", "/b-1/a/b"),
        ("s3.test", "/b-1/%7Ex", "/b-1/~x"),
        ("s3.test", "/b-1/%c3%bc", "/b-1/%C3%BC"),
        ("s3.test", "/b-1/a%25b", "/b-1/a%25b"),
        ("s3.test", "/b-1/a%3Fb%23c", "/b-1/a%3Fb%23c"),
        ("s3.test", "/b-1/a;b=c", "/b-1/a%3Bb%3Dc"),
        ("s3.test", "/b-1/.a./..b/...", "/b-1/.a./..b/..."),
        ("s3.test", "/b-1/a\\..\\b", "/b-1/a%5C..%5Cb"),
        ("bkt.s3.test", "/", "/bkt"),
        ("bkt.s3.test", "/dir/a%20b", "/bkt/dir/a%20b"),
    ],
)
def test_it_forwards_only_the_validated_names(host: str, target: str, upstream: str) -> None:
    operation = _classify("GET", target, {"host": [host]}, endpoint_host="s3.test")
    assert operation.upstream_path() == upstream
    assert "/../" not in upstream
    assert "/./" not in upstream
    assert "//" not in upstream
    # Classifying the forwarded path gives the same names back.
    again = _classify("GET", upstream)
    assert (again.bucket, again.key) == (operation.bucket, operation.key)


DELETE_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    b"<Quiet>true</Quiet>"
    b"<Object><Key>a.txt</Key></Object>"
    b"<Object><Key>dir/b &amp; c.txt</Key><VersionId>v1</VersionId></Object>"
    b"<Object><Key>dir/c&#47;d.txt</Key></Object>"
    b"</Delete>"
)


def test_it_reads_the_object_names_of_a_delete_objects_body() -> None:
    assert delete_objects_keys(DELETE_BODY) == ["a.txt", "dir/b & c.txt", "dir/c/d.txt"]


def test_it_touches_every_object_a_delete_objects_body_names() -> None:
    operation = _classify("POST", "/b-1?delete")
    assert operation.reads_body_first
    deleting = with_deleted_objects(operation, DELETE_BODY)
    assert deleting.touches == (
        Touch("b-1", None, WRITE),
        Touch("b-1", "a.txt", WRITE),
        Touch("b-1", "dir/b & c.txt", WRITE),
        Touch("b-1", "dir/c/d.txt", WRITE),
    )


def test_it_accepts_1000_keys_in_a_delete_objects_body() -> None:
    keys = delete_objects_keys(_delete_body(f"k{n}" for n in range(DELETE_OBJECTS_MAX_KEYS)))
    assert len(keys) == DELETE_OBJECTS_MAX_KEYS


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "MalformedXML"),
        (b"not xml", "MalformedXML"),
        (b"<Delete><Object><Key>a</Key></Object>", "MalformedXML"),
        (b"<Delete/>", "MalformedXML"),
        (b"<Delete><Quiet>true</Quiet></Delete>", "MalformedXML"),
        (b"<Other><Object><Key>a</Key></Object></Other>", "MalformedXML"),
        (b"<Delete><Object><Key>a</Key><Key>b</Key></Object></Delete>", "MalformedXML"),
        (b"<Delete><Object><VersionId>v</VersionId></Object></Delete>", "MalformedXML"),
        (b"<Delete><Object><Key>a</Key></Object></Delete><Delete/>", "MalformedXML"),
        (b"<Delete><Object><Key>a&#0;</Key></Object></Delete>", "MalformedXML"),
        (
            b'<!DOCTYPE Delete [<!ENTITY k "secret.txt">]>'
            b"<Delete><Object><Key>&k;</Key></Object></Delete>",
            "MalformedXML",
        ),
        (
            b'<!DOCTYPE Delete SYSTEM "file:///etc/passwd">'
            b"<Delete><Object><Key>a</Key></Object></Delete>",
            "MalformedXML",
        ),
        (b"<Delete><Object><Key><![CDATA[a]]></Key></Object></Delete>", "MalformedXML"),
        (_delete_body(f"k{n}" for n in range(DELETE_OBJECTS_MAX_KEYS + 1)), "MalformedXML"),
        (_delete_body(["a/../b"]), "InvalidArgument"),
        (_delete_body([".."]), "InvalidArgument"),
        (_delete_body(["a//b"]), "InvalidArgument"),
        (_delete_body(["/a"]), "InvalidArgument"),
        (_delete_body([""]), "InvalidArgument"),
        (_delete_body(["a.txt", "ok/../../b-2/x"]), "InvalidArgument"),
        (_delete_body(["a" * 1025]), "KeyTooLongError"),
    ],
)
def test_it_refuses_bad_delete_objects_bodies(body: bytes, code: str) -> None:
    with pytest.raises(S3Error) as caught:
        delete_objects_keys(body)
    assert (caught.value.code, caught.value.status) == (code, 400)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "latin-1"])
def test_it_refuses_a_delete_objects_body_that_is_not_utf8(encoding: str) -> None:
    body = (
        f'<?xml version="1.0" encoding="{encoding}"?>'
        "<Delete><Object><Key>caf\u00e9.txt</Key></Object></Delete>"
    ).encode(encoding)
    with pytest.raises(S3Error) as caught:
        delete_objects_keys(body)
    assert caught.value.code == "MalformedXML"


def test_it_refuses_a_dtd_in_a_utf16_delete_objects_body() -> None:
    body = (
        '<?xml version="1.0" encoding="UTF-16"?>'
        '<!DOCTYPE Delete [<!ENTITY k "secret.txt">]>'
        "<Delete><Object><Key>&k;</Key></Object></Delete>"
    ).encode("utf-16")
    with pytest.raises(S3Error) as caught:
        delete_objects_keys(body)
    assert caught.value.code == "MalformedXML"


# ElementTree reads a Key's text up to its first child; Go's encoding/xml (rclone serve s3)
# joins all of it, so the store would delete a key other than the one checked.
@pytest.mark.parametrize(
    "key_xml", [b"a<x/>c", b"public/x<y/>/../../private/secret", b"a<x>b</x>c"]
)
def test_it_refuses_elements_inside_a_key(key_xml: bytes) -> None:
    body = b"<Delete><Object><Key>" + key_xml + b"</Key></Object></Delete>"
    with pytest.raises(S3Error) as caught:
        delete_objects_keys(body)
    assert caught.value.code == "MalformedXML"


@pytest.mark.parametrize(
    ("action", "bucket", "source", "name", "touches"),
    [
        ("ListBuckets", None, None, "ListBuckets", ()),
        ("CreateBucket", "b-1", None, "CreateBucket", (Touch("b-1", None, ADMIN),)),
        ("read", "b-1", None, "GetObject", (Touch("b-1", None, READ),)),
        (
            "write",
            "b-1",
            "src-b",
            "CopyObject",
            (Touch("b-1", None, WRITE), Touch("src-b", None, READ)),
        ),
    ],
)
def test_it_describes_verify_actions_as_operations(
    action: str, bucket: str | None, source: str | None, name: str, touches: tuple[Touch, ...]
) -> None:
    operation = for_verify_action(action, bucket, source)
    assert (operation.name, operation.bucket, operation.touches) == (name, bucket, touches)
    assert operation.list_prefix is None


@pytest.mark.parametrize(
    ("action", "names", "name", "level", "touches", "list_prefix"),
    [
        ("read", {"key": "a/b.txt"}, "GetObject", OBJECT, (Touch("b-1", "a/b.txt", READ),), None),
        ("read", {"prefix": "a/"}, "ListObjectsV2", BUCKET, (Touch("b-1", None, READ),), "a/"),
        ("write", {"key": "a/b.txt"}, "PutObject", OBJECT, (Touch("b-1", "a/b.txt", WRITE),), None),
        (
            "write",
            {"key": "a/c.txt", "copy_source_bucket": "src-b", "copy_source_key": "s/d.txt"},
            "CopyObject",
            OBJECT,
            (Touch("b-1", "a/c.txt", WRITE), Touch("src-b", "s/d.txt", READ)),
            None,
        ),
    ],
)
def test_it_describes_verify_actions_on_objects_and_prefixes(
    action, names, name, level, touches, list_prefix
) -> None:
    operation = for_verify_action(
        action,
        "b-1",
        names.get("copy_source_bucket"),
        names.get("key"),
        names.get("copy_source_key"),
        names.get("prefix"),
    )
    assert (operation.name, operation.level, operation.touches) == (name, level, touches)
    assert operation.list_prefix == list_prefix


@pytest.mark.parametrize(
    ("action", "bucket", "names", "code"),
    [
        ("CreateBucket", "b-1", {"key": "a.txt"}, "AccessDenied"),
        ("write", "b-1", {"prefix": "a/"}, "AccessDenied"),
        ("read", "b-1", {"prefix": "a/", "key": "a/b"}, "AccessDenied"),
        ("read", "b-1", {"copy_source_key": "a/b"}, "AccessDenied"),
        ("read", "b-1", {"key": "a//b"}, "InvalidArgument"),
        ("write", "b-1", {"source": "src-b", "copy_source_key": "../x"}, "InvalidArgument"),
    ],
)
def test_it_refuses_verify_names_that_do_not_fit_the_action(action, bucket, names, code) -> None:
    with pytest.raises(S3Error) as caught:
        for_verify_action(
            action,
            bucket,
            names.get("source"),
            names.get("key"),
            names.get("copy_source_key"),
            names.get("prefix"),
        )
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("target", "prefix"),
    [
        ("/b-1", ""),
        ("/b-1?prefix=a%2Fb%20c", "a/b c"),
        ("/b-1?list-type=2&prefix=x/", "x/"),
        ("/b-1?versions&prefix=v", "v"),
        ("/b-1?uploads&prefix=u", "u"),
        ("/b-1?location", None),
        ("/b-1/a.txt", None),
    ],
)
def test_it_keeps_the_prefix_a_listing_asks_for(target: str, prefix: str | None) -> None:
    assert _classify("GET", target).list_prefix == prefix


@pytest.mark.parametrize(
    ("action", "bucket", "source", "code"),
    [
        ("ListBuckets", "b-1", None, "AccessDenied"),
        ("read", None, None, "AccessDenied"),
        ("read", "B_1", None, "InvalidBucketName"),
        ("write", "b-1", "src%2Fb", "InvalidBucketName"),
    ],
)
def test_it_refuses_verify_actions_it_cannot_describe(
    action: str, bucket: str | None, source: str | None, code: str
) -> None:
    with pytest.raises(S3Error) as caught:
        for_verify_action(action, bucket, source)
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("headers", "code", "status"),
    [
        ({"x_amz_copy_source": ["/other/secret.txt"]}, "InvalidArgument", 400),
        ({"x-amz-meta_a": ["1"]}, "InvalidArgument", 400),
        ({"x-amz-acl": ["public-read"]}, "NotImplemented", 501),
        ({"x-amz-acl": ["private", "public-read"]}, "NotImplemented", 501),
        (
            {"x-amz-grant-read": ['uri="http://acs.amazonaws.com/groups/global/AllUsers"']},
            "NotImplemented",
            501,
        ),
        ({"x-amz-grant-full-control": ["id=someone"]}, "NotImplemented", 501),
    ],
)
def test_it_refuses_headers_the_store_could_read_past_the_gateway(headers, code, status) -> None:
    with pytest.raises(S3Error) as caught:
        classify("PUT", "/b-1/a.txt", "", {"host": ["127.0.0.1"], **headers}, None)
    assert (caught.value.code, caught.value.status) == (code, status)


def test_it_accepts_a_private_acl_which_grants_nobody_anything() -> None:
    headers = {"host": ["127.0.0.1"], "x-amz-acl": ["private"]}
    assert classify("PUT", "/b-1/a.txt", "", headers, None).name == "PutObject"
