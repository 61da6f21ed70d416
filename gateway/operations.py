"""The one operation classifier: what an S3 request is, and every bucket and object it
touches.

Django-free. ``classify()`` reads the raw request target, the ``Host`` header and the
headers that change an operation's meaning, and answers an ``Operation``: its name as
S3 names it, and one ``Touch`` (bucket, object, access) per name it reads or changes.
``gateway.authority.authorize()`` decides from the Operation and the request's source
address and nothing else (a key's scope included), and the proxy forwards the bucket and
object held here, never the raw path again.

Routing is not canonicalisation: the target is split on literal ``/`` before anything
is decoded, so ``%2F`` in the bucket segment is part of an (invalid) bucket name, never
a separator. Operations missing from RULES answer 501 NotImplemented: nothing unknown
is passed through to the object store.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import quote_from_bytes, unquote

from . import s3errors
from .names import check_bucket_name, check_list_prefix, check_object_name, decode_object_name
from .sigv4 import PRESIGN_PARAMS

# What a touch needs, from least to most. "admin" covers creating and deleting buckets
# and changing their settings.
READ = "read"
WRITE = "write"
ADMIN = "admin"

SERVICE = "service"
BUCKET = "bucket"
OBJECT = "object"

# Headers whose second value could make the gateway and the object store read a request
# differently: refused outright.
SINGLE_VALUE_HEADERS = (
    "authorization",
    "host",
    "x-amz-date",
    "x-amz-content-sha256",
    "x-amz-copy-source",
)
COPY_SOURCE_HEADER = "x-amz-copy-source"
# S3 caps DeleteObjects at 1,000 names of at most 1,024 bytes each.
DELETE_OBJECTS_MAX_KEYS = 1000
# The most the gateway reads of a body it decides on (Operation.reads_body_first).
MAX_SMALL_BODY = 2 * 1024 * 1024
# Query parameters that never select an operation: SDK bookkeeping.
IGNORED_PARAMS = frozenset({"x-id"})

_LIST_PARAMS = frozenset({"delimiter", "encoding-type", "max-keys", "prefix"})
_RESPONSE_OVERRIDES = frozenset(
    {
        "response-cache-control",
        "response-content-disposition",
        "response-content-encoding",
        "response-content-language",
        "response-content-type",
        "response-expires",
    }
)


@dataclass(frozen=True, slots=True)
class Rule:
    """One supported operation: the request shape that selects it and what it needs.

    A request matches when its method and level agree, every ``selector`` parameter is
    present, every other parameter is in ``params``, and the copy-source header is
    present exactly when ``copy`` says so. ``aliases`` are other names S3 gives the same
    request (botocore's model keeps old and new names side by side).
    """

    name: str
    method: str
    level: str
    access: str
    selector: frozenset[str] = frozenset()
    params: frozenset[str] = frozenset()
    copy: bool = False
    aliases: tuple[str, ...] = ()


def _rule(
    name: str,
    method: str,
    level: str,
    access: str,
    selector: str = "",
    params: frozenset[str] | set[str] = frozenset(),
    copy: bool = False,
    aliases: tuple[str, ...] = (),
) -> Rule:
    return Rule(
        name,
        method,
        level,
        access,
        frozenset(selector.split()),
        frozenset(params),
        copy,
        aliases,
    )


RULES: tuple[Rule, ...] = (
    _rule(
        "ListBuckets",
        "GET",
        SERVICE,
        READ,
        params={"max-buckets", "continuation-token", "prefix", "bucket-region"},
        aliases=("ListDirectoryBuckets",),
    ),
    # Buckets
    _rule("CreateBucket", "PUT", BUCKET, ADMIN),
    _rule("DeleteBucket", "DELETE", BUCKET, ADMIN),
    _rule("HeadBucket", "HEAD", BUCKET, READ),
    _rule("ListObjects", "GET", BUCKET, READ, params=_LIST_PARAMS | {"marker"}),
    _rule(
        "ListObjectsV2",
        "GET",
        BUCKET,
        READ,
        "list-type",
        _LIST_PARAMS | {"continuation-token", "fetch-owner", "start-after"},
    ),
    _rule(
        "ListObjectVersions",
        "GET",
        BUCKET,
        READ,
        "versions",
        _LIST_PARAMS | {"key-marker", "version-id-marker"},
    ),
    _rule(
        "ListMultipartUploads",
        "GET",
        BUCKET,
        READ,
        "uploads",
        (_LIST_PARAMS - {"max-keys"}) | {"key-marker", "max-uploads", "upload-id-marker"},
    ),
    _rule("GetBucketLocation", "GET", BUCKET, READ, "location"),
    _rule("GetBucketAcl", "GET", BUCKET, READ, "acl"),
    # CORS configurations are kept and answered by the gateway (gateway.cors).
    _rule("GetBucketCors", "GET", BUCKET, READ, "cors"),
    _rule("PutBucketCors", "PUT", BUCKET, ADMIN, "cors"),
    _rule("DeleteBucketCors", "DELETE", BUCKET, ADMIN, "cors"),
    _rule("GetBucketVersioning", "GET", BUCKET, READ, "versioning"),
    _rule("PutBucketVersioning", "PUT", BUCKET, ADMIN, "versioning"),
    _rule("GetBucketTagging", "GET", BUCKET, READ, "tagging"),
    _rule("PutBucketTagging", "PUT", BUCKET, ADMIN, "tagging"),
    _rule("DeleteBucketTagging", "DELETE", BUCKET, ADMIN, "tagging"),
    _rule(
        "GetBucketLifecycleConfiguration",
        "GET",
        BUCKET,
        READ,
        "lifecycle",
        aliases=("GetBucketLifecycle",),
    ),
    _rule(
        "PutBucketLifecycleConfiguration",
        "PUT",
        BUCKET,
        ADMIN,
        "lifecycle",
        aliases=("PutBucketLifecycle",),
    ),
    _rule("DeleteBucketLifecycle", "DELETE", BUCKET, ADMIN, "lifecycle"),
    # The object names are in the body: classify_delete_objects() adds them.
    _rule("DeleteObjects", "POST", BUCKET, WRITE, "delete"),
    # Objects
    _rule(
        "GetObject",
        "GET",
        OBJECT,
        READ,
        params=_RESPONSE_OVERRIDES | {"versionId", "partNumber"},
    ),
    _rule(
        "HeadObject",
        "HEAD",
        OBJECT,
        READ,
        params=_RESPONSE_OVERRIDES | {"versionId", "partNumber"},
    ),
    _rule("PutObject", "PUT", OBJECT, WRITE),
    _rule("CopyObject", "PUT", OBJECT, WRITE, copy=True),
    _rule("DeleteObject", "DELETE", OBJECT, WRITE, params={"versionId"}),
    _rule("CreateMultipartUpload", "POST", OBJECT, WRITE, "uploads"),
    _rule("UploadPart", "PUT", OBJECT, WRITE, "partNumber uploadId"),
    _rule("UploadPartCopy", "PUT", OBJECT, WRITE, "partNumber uploadId", copy=True),
    _rule("CompleteMultipartUpload", "POST", OBJECT, WRITE, "uploadId"),
    _rule("AbortMultipartUpload", "DELETE", OBJECT, WRITE, "uploadId"),
    _rule("ListParts", "GET", OBJECT, READ, "uploadId", {"max-parts", "part-number-marker"}),
    _rule("GetObjectTagging", "GET", OBJECT, READ, "tagging", {"versionId"}),
    _rule("PutObjectTagging", "PUT", OBJECT, WRITE, "tagging", {"versionId"}),
    _rule("DeleteObjectTagging", "DELETE", OBJECT, WRITE, "tagging", {"versionId"}),
    _rule("GetObjectAcl", "GET", OBJECT, READ, "acl", {"versionId"}),
    _rule(
        "GetObjectAttributes",
        "GET",
        OBJECT,
        READ,
        "attributes",
        {"versionId"},
    ),
)
GATEWAY_OPERATIONS = frozenset({"GetBucketCors", "PutBucketCors", "DeleteBucketCors"})
# Bucket reads that list object names: every name listed starts with the request's prefix.
LISTINGS = frozenset({"ListObjects", "ListObjectsV2", "ListObjectVersions", "ListMultipartUploads"})
SUPPORTED = frozenset(name for rule in RULES for name in (rule.name, *rule.aliases))
_BY_SHAPE: dict[tuple[str, str], list[Rule]] = {}
for _each in RULES:
    # Most specific first: a request with ?uploadId is ListParts, not GetObject.
    _BY_SHAPE.setdefault((_each.method, _each.level), []).append(_each)
for _rules in _BY_SHAPE.values():
    _rules.sort(key=lambda rule: -len(rule.selector))


@dataclass(frozen=True, slots=True)
class Touch:
    """One name an operation reads or changes: a bucket, or an object in it."""

    bucket: str
    key: str | None
    access: str


@dataclass(frozen=True, slots=True)
class CopySource:
    bucket: str
    key: str
    version_id: str | None

    def header(self) -> str:
        """The x-amz-copy-source value to forward: exactly the validated names."""
        value = "/" + self.bucket + "/" + quote_object_name(self.key)
        if self.version_id is not None:
            value += "?versionId=" + quote_from_bytes(self.version_id.encode(), safe="")
        return value


@dataclass(frozen=True, slots=True)
class Operation:
    """A classified request: what it is and every name it touches.

    ``bucket`` and ``key`` are the validated target (``key`` decoded; None for a bucket
    or the service); ``touches`` lists the target and, for a copy, the source, and for
    DeleteObjects each object named in the body (once read).
    """

    name: str
    level: str
    access: str
    bucket: str | None = None
    key: str | None = None
    copy_source: CopySource | None = None
    touches: tuple[Touch, ...] = ()
    list_prefix: str | None = None

    @property
    def buckets(self) -> tuple[str, ...]:
        """Every bucket this operation touches, once each."""
        return tuple(dict.fromkeys(touch.bucket for touch in self.touches))

    @property
    def answered_here(self) -> bool:
        """Does the gateway answer it itself, without the store?"""
        return self.name in GATEWAY_OPERATIONS

    @property
    def reads_body_first(self) -> bool:
        """Is the whole (small) body read and verified before anything is decided or sent?
        DeleteObjects names its objects there; CreateBucket must not reach the store, which
        may create the bucket from the headers alone, with a body that fails its hash."""
        return self.name in ("DeleteObjects", "CreateBucket", "PutBucketCors")

    def upstream_path(self) -> str:
        """The path to forward: ``/bucket/key``, built from the validated names only."""
        if self.bucket is None:
            return "/"
        if self.key is None:
            return "/" + self.bucket
        return "/" + self.bucket + "/" + quote_object_name(self.key)


def quote_object_name(key: str) -> str:
    """The canonical (SigV4) encoding of an object name: only A-Za-z0-9-_.~/ literal."""
    return quote_from_bytes(key.encode("utf-8"), safe="/~")


def _refuse_repeated_headers(headers: Mapping[str, list[str]]) -> None:
    for name in SINGLE_VALUE_HEADERS:
        values = headers.get(name)
        if values is not None and len(values) > 1:
            raise s3errors.invalid_argument(f"The {name} header may appear only once.", name)


def _refuse_header_tricks(headers: Mapping[str, list[str]]) -> None:
    """Headers that would make the store read the request differently from the gateway,
    or grant access past it, are refused rather than dropped."""
    for name in headers:
        if "_" in name:
            # Some servers read "x_amz_copy_source" as x-amz-copy-source.
            raise s3errors.invalid_argument("Header names with '_' are not accepted.", name)
        if name.startswith("x-amz-grant-") or (
            name == "x-amz-acl" and headers[name] != ["private"]
        ):
            # An ACL in the store would let its grantees past the gateway, and outlive keys.
            raise s3errors.not_implemented(f"the {name} header (ACLs)")


def split_target(path: str, host: str, endpoint_host: str | None) -> tuple[str | None, str | None]:
    """(bucket, raw object path) of a request target, neither decoded nor validated.

    Virtual-hosted style when ``host`` is ``<bucket>.<endpoint_host>``, path style
    otherwise. The raw object path has no leading ``/``; None when the target names a
    bucket (or the service) only.
    """
    if not path.startswith("/"):
        raise s3errors.invalid_uri()
    hostname = host.lower()
    if not hostname.endswith("]"):
        hostname = hostname.rsplit(":", 1)[0]
    if endpoint_host and hostname.endswith("." + endpoint_host):
        bucket = hostname[: -len(endpoint_host) - 1]
        rest = path[1:]
        return bucket, rest or None
    first, slash, rest = path[1:].partition("/")
    if not first:
        if rest:
            # "//x": an empty bucket segment.
            raise s3errors.invalid_bucket_name()
        return None, None
    return first, rest or None


def _split_request_target(
    path: str, headers: Mapping[str, list[str]], endpoint_host: str | None
) -> tuple[str | None, str | None]:
    """split_target() with the request's own Host."""
    return split_target(path, (headers.get("host") or [""])[0], endpoint_host)


def _target_names(
    path: str, headers: Mapping[str, list[str]], endpoint_host: str | None
) -> tuple[str | None, str | None]:
    """The validated bucket and decoded object name a request target names."""
    bucket, raw_key = _split_request_target(path, headers, endpoint_host)
    if bucket is not None:
        check_bucket_name(bucket)
    return bucket, decode_object_name(raw_key) if raw_key is not None else None


def query_params(query: str) -> dict[str, str]:
    """The query's parameters, decoded, without presigning's and SDK bookkeeping; a
    parameter given twice is refused."""
    params: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name = unquote(name.replace("+", " "))
        if name in PRESIGN_PARAMS or name in IGNORED_PARAMS:
            continue
        if name in params:
            raise s3errors.invalid_argument(
                f"The query parameter {name} may appear only once.", name
            )
        params[name] = unquote(value.replace("+", " "))
    return params


def _select(method: str, level: str, params: Mapping[str, str], copy: bool) -> Rule:
    names = set(params)
    for rule in _BY_SHAPE.get((method, level), ()):
        if rule.copy != copy or not rule.selector <= names:
            continue
        if names - rule.selector - rule.params:
            continue
        return rule
    if not _BY_SHAPE.get((method, level)):
        if level == SERVICE:
            raise s3errors.method_not_allowed()
        raise s3errors.not_implemented(f"{method} on a {level}")
    shown = ", ".join(sorted(names)) or "no query"
    raise s3errors.not_implemented(f"{method} on a {level} with {shown}")


def preflight_target(
    path: str, headers: Mapping[str, list[str]], endpoint_host: str | None
) -> tuple[str, str | None]:
    """The bucket and object a CORS preflight (OPTIONS) asks about, validated like any
    request's: preflights carry no signature, so they are never forwarded."""
    _refuse_repeated_headers(headers)
    bucket, key = _target_names(path, headers, endpoint_host)
    if bucket is None:
        raise s3errors.bad_request("A CORS preflight names a bucket.")
    return bucket, key


def post_object_bucket(
    path: str, query: str, headers: Mapping[str, list[str]], endpoint_host: str | None
) -> str:
    """The bucket a POST Object form is posted to: a bucket itself, with no query."""
    _refuse_repeated_headers(headers)
    bucket, raw_key = _split_request_target(path, headers, endpoint_host)
    if bucket is None or raw_key is not None or query_params(query):
        raise s3errors.not_implemented("a form posted anywhere but to a bucket")
    return check_bucket_name(bucket)


def put_object(bucket: str, key: str) -> Operation:
    """The PutObject a POST Object form performs."""
    return Operation("PutObject", OBJECT, WRITE, bucket, key, None, (Touch(bucket, key, WRITE),))


def parse_copy_source(value: str) -> CopySource:
    """The bucket, object and version an ``x-amz-copy-source`` header names, validated.

    The value is ``[/]bucket/key[?versionId=v]`` with the key percent-encoded: split on
    the first literal ``/`` before decoding, as the request target is.
    """
    raw, question, query = value.partition("?")
    raw = raw.removeprefix("/")
    bucket, slash, key = raw.partition("/")
    if not slash or not key:
        raise s3errors.invalid_argument("Copy Source must mention the source bucket and key")
    check_bucket_name(bucket)
    version_id = None
    if question:
        name, _, version = query.partition("=")
        if name != "versionId" or not version or "&" in version:
            raise s3errors.invalid_argument("Invalid copy source version.")
        version_id = unquote(version)
    return CopySource(bucket, decode_object_name(key), version_id)


def classify(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, list[str]],
    endpoint_host: str | None,
) -> Operation:
    """The operation a request performs and every name it touches, or an S3 error.

    ``path`` and ``query`` are raw (as received, still percent-encoded); ``headers`` by
    lowercase name. Names are validated before anything else is decided.
    """
    _refuse_repeated_headers(headers)
    _refuse_header_tricks(headers)
    bucket, key = _target_names(path, headers, endpoint_host)
    copy_value = (headers.get(COPY_SOURCE_HEADER) or [None])[0]
    copy_source = parse_copy_source(copy_value) if copy_value is not None else None
    level = SERVICE if bucket is None else BUCKET if key is None else OBJECT
    params = query_params(query)
    rule = _select(method, level, params, copy_source is not None)
    if rule.name == "ListObjectsV2" and params.get("list-type") != "2":
        raise s3errors.invalid_argument("Invalid list type.", "list-type")
    touches: list[Touch] = []
    if bucket is not None:
        touches.append(Touch(bucket, key, rule.access))
    if copy_source is not None:
        touches.append(Touch(copy_source.bucket, copy_source.key, READ))
    list_prefix = check_list_prefix(params.get("prefix", "")) if rule.name in LISTINGS else None
    return Operation(
        rule.name, level, rule.access, bucket, key, copy_source, tuple(touches), list_prefix
    )


def with_deleted_objects(operation: Operation, body: bytes) -> Operation:
    """A DeleteObjects operation with each object its (already verified) body names."""
    assert operation.bucket is not None
    keys = delete_objects_keys(body)
    touches = operation.touches + tuple(Touch(operation.bucket, key, WRITE) for key in keys)
    return replace(operation, touches=touches)


_XML_ENCODING = re.compile(rb"""\s*<\?xml[^>]*?encoding\s*=\s*["']([^"']*)["']""").match


def parse_xml(body: bytes) -> ET.Element:
    """A request body's XML, or MalformedXML: UTF-8 only and no DTD (so no entities),
    which every XML parser, the store's included, reads alike."""
    if len(body) > MAX_SMALL_BODY or b"<!" in body or b"\x00" in body:
        raise s3errors.malformed_xml()
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise s3errors.malformed_xml() from None
    declared = _XML_ENCODING(body)
    if declared is not None and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        raise s3errors.malformed_xml()
    try:
        return ET.fromstring(body)
    except ET.ParseError:
        raise s3errors.malformed_xml() from None


def delete_objects_keys(body: bytes) -> list[str]:
    """The object names of a DeleteObjects body, each checked.

    Only what every XML parser reads alike is accepted: UTF-8, no DTD (so no entities), and
    a ``Key`` of text alone, since parsers differ on text split by child elements and the
    store must delete exactly the names checked here.
    """
    root = parse_xml(body)
    if _local(root.tag) != "Delete":
        raise s3errors.malformed_xml()
    keys = []
    for item in root:
        if _local(item.tag) != "Object":
            continue
        found = [child for child in item if _local(child.tag) == "Key"]
        if len(found) != 1 or len(found[0]):
            raise s3errors.malformed_xml()
        names = [found[0].text or ""]
        keys.append(check_object_name(names[0]))
    if not keys or len(keys) > DELETE_OBJECTS_MAX_KEYS:
        raise s3errors.malformed_xml()
    return keys


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


# The verify API's actions (gateway.verify_api): what a front end asks about, as the
# operation it stands for.
VERIFY_ACTIONS = {
    "ListBuckets": ("ListBuckets", SERVICE, READ),
    "CreateBucket": ("CreateBucket", BUCKET, ADMIN),
    "DeleteBucket": ("DeleteBucket", BUCKET, ADMIN),
    "read": ("GetObject", OBJECT, READ),
    "write": ("PutObject", OBJECT, WRITE),
}


def for_verify_action(
    action: str,
    bucket: str | None,
    copy_source_bucket: str | None,
    key: str | None = None,
    copy_source_key: str | None = None,
    prefix: str | None = None,
) -> Operation:
    """The operation a verify API call describes, with its names validated.

    ``read`` with ``key`` is GetObject of that object, with ``prefix`` a listing of the
    names under it (ListObjectsV2), with neither a read of anything in the bucket;
    ``write`` with ``key`` is PutObject of that object (CopyObject with a copy source,
    whose object is ``copy_source_key``). A touch with no object name stands for every
    object of its bucket, so a key scoped to part of a bucket is refused it.
    """
    name, level, access = VERIFY_ACTIONS[action]
    if (level == SERVICE) != (bucket is None):
        # ListBuckets with a bucket, or a bucket action without one: nothing to allow.
        raise s3errors.access_denied()
    if key is not None and level != OBJECT:
        raise s3errors.access_denied()
    if (prefix is not None and (action != "read" or key is not None)) or (
        copy_source_key is not None and copy_source_bucket is None
    ):
        raise s3errors.access_denied()
    if key is not None:
        check_object_name(key)
    if copy_source_key is not None:
        check_object_name(copy_source_key)
    list_prefix = None
    if prefix is not None:
        name, level, list_prefix = "ListObjectsV2", BUCKET, check_list_prefix(prefix)
    elif copy_source_bucket is not None:
        name = "CopyObject"
    touches: list[Touch] = []
    if bucket is not None:
        touches.append(Touch(check_bucket_name(bucket), key, access))
    copy_source = None
    if copy_source_bucket is not None:
        check_bucket_name(copy_source_bucket)
        touches.append(Touch(copy_source_bucket, copy_source_key, READ))
        if copy_source_key is not None:
            copy_source = CopySource(copy_source_bucket, copy_source_key, None)
    return Operation(name, level, access, bucket, key, copy_source, tuple(touches), list_prefix)
