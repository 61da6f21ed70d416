"""AWS Signature Version 4 verification for S3 requests, built for a streaming proxy.

Pure Python and standard library only, with no Django import: the ASGI gateway, the internal
verify API and the tests share it. The flow for one request::

    request = Request.from_asgi(scope)            # or Request(method, path, query, headers)
    auth = parse(request, region="us-east-1")     # syntax, scope, signed-header rules
    key = lookup(auth.access_key_id)              # caller answers InvalidAccessKeyId itself
    verified = verify(auth, cache.provider(secret_for))   # clock, then the signature
    body = verified.body()                        # payload verifier for the body mode
    for piece in incoming:                        # forward what feed() returns ...
        forward(body.feed(piece))
    forward(body.finish())                        # ... and the held-back tail only now

A string to sign that another front end computed goes through ``parse_string_to_sign()``
and ``verify_string_to_sign()`` instead (the internal verify API): the same scope rules,
clock, signing keys and comparison.

``finish()`` raises :class:`S3Error` when anything about the body is wrong (payload hash,
chunk or trailer signature, checksum, length, truncation). Every body verifier holds back
the last piece it was fed until ``finish()`` has checked everything, so an upstream that
expects the decoded length never receives the whole object unless the body verified: on
any error the proxy aborts the upstream request and the object is not written.

The rules follow MinIO and Ceph RGW: the canonical URI is the
request path decoded once and re-encoded once, the query is decoded and re-encoded per
RFC 3986 and sorted, ``host`` and every ``x-amz-*`` header present must be signed, the
clock may be off by at most 15 minutes, and signatures are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import sys
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import quote_from_bytes, unquote_to_bytes

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "s3"
TERMINATOR = "aws4_request"
MAX_SKEW_SECONDS = 15 * 60
MAX_EXPIRES_SECONDS = 7 * 24 * 60 * 60
MAX_CHUNK_SIZE = 16 * 1024 * 1024
# A chunk header is at most ~100 bytes and a trailer line about as long; this bounds what
# the chunked decoder ever buffers, however the body is split.
MAX_LINE_LENGTH = 4096
MAX_TRAILER_LINES = 8

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_PAYLOAD_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_MODES = frozenset(
    {STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER, STREAMING_UNSIGNED_PAYLOAD_TRAILER}
)

# The checksum headers S3 accepts on a body, by algorithm: x-amz-checksum-<name>.
CHECKSUM_ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")
CHECKSUM_HEADERS = {f"x-amz-checksum-{name}": name for name in CHECKSUM_ALGORITHMS}

QUERY_ALGORITHM = "X-Amz-Algorithm"
QUERY_CREDENTIAL = "X-Amz-Credential"
QUERY_DATE = "X-Amz-Date"
QUERY_EXPIRES = "X-Amz-Expires"
QUERY_SIGNED_HEADERS = "X-Amz-SignedHeaders"
QUERY_SIGNATURE = "X-Amz-Signature"
QUERY_CONTENT_SHA256 = "X-Amz-Content-Sha256"
PRESIGN_REQUIRED = (
    QUERY_ALGORITHM,
    QUERY_CREDENTIAL,
    QUERY_DATE,
    QUERY_EXPIRES,
    QUERY_SIGNED_HEADERS,
    QUERY_SIGNATURE,
)
PRESIGN_PARAMS = frozenset((*PRESIGN_REQUIRED, QUERY_CONTENT_SHA256))
_PRESIGN_REQUIRED_SET = frozenset(PRESIGN_REQUIRED)

# Already canonical: unreserved characters and uppercase escapes of bytes that are not
# unreserved (nor "/" in a path). Such input is its own canonical form, which spares the
# decode and re-encode on the hot path. Two cheap scans beat one regex with alternatives.
_PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~/%]*").fullmatch
_QUERY_CHARS = re.compile(r"[A-Za-z0-9\-._~=&%]*").fullmatch
_QUERY_PART_CHARS = re.compile(r"[A-Za-z0-9\-._~%]*").fullmatch
_PATH_ESCAPE_TO_REWRITE = re.compile(
    r"%(?![0189A-F][0-9A-F]|2[0-9A-C]|3[A-F]|[46]0|5[B-E]|7[B-DF])"
).search
_QUERY_ESCAPE_TO_REWRITE = re.compile(
    r"%(?![0189A-F][0-9A-F]|2[0-9A-CF]|3[A-F]|[46]0|5[B-E]|7[B-DF])"
).search
_RAW_EQUALS_IN_VALUE = re.compile(r"=[^&]*=").search
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})").search
_AMZ_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z").fullmatch
_SCOPE_DATE = re.compile(r"[0-9]{8}").fullmatch
_INTEGER = re.compile(r"-?[0-9]{1,12}").fullmatch
_HEX_DIGITS = "0123456789abcdefABCDEF"
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}").fullmatch
_SIGNED_CHUNK = re.compile(rb"([0-9a-fA-F]{1,16});chunk-signature=([0-9a-fA-F]{64})").fullmatch
_UNSIGNED_CHUNK = re.compile(rb"([0-9a-fA-F]{1,16})").fullmatch
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Everything printable in ASCII: a raw request target keeps these as they came, and only
# bytes outside ASCII are percent-encoded, which canonicalization treats identically.
_ASCII_PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))


# ---------------------------------------------------------------------------------------
# Errors


class S3Error(Exception):
    """An S3 error answer: its code, HTTP status, message and extra XML elements."""

    def __init__(
        self, code: str, status: int, message: str, extra: Mapping[str, object] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.status = status
        self.message = message
        self.extra: dict[str, str] = {k: str(v) for k, v in (extra or {}).items()}

    def to_xml(self, request_id: str = "", resource: str | None = None) -> bytes:
        return error_xml(self, request_id=request_id, resource=resource)


def _xml_text(value: str) -> str:
    value = _XML_INVALID.sub("\ufffd", value)
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def error_xml(error: S3Error, *, request_id: str = "", resource: str | None = None) -> bytes:
    """AWS's XML error body for ``error`` (serve it with ``Content-Type: application/xml``)."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>',
        _xml_text(error.code),
        "</Code><Message>",
        _xml_text(error.message),
        "</Message>",
    ]
    for name, value in error.extra.items():
        parts.append(f"<{name}>{_xml_text(value)}</{name}>")
    if resource is not None:
        parts.append(f"<Resource>{_xml_text(resource)}</Resource>")
    parts.append(f"<RequestId>{_xml_text(request_id)}</RequestId></Error>")
    return "".join(parts).encode("utf-8")


def invalid_access_key_id(access_key_id: str) -> S3Error:
    """The error for an access key ID we do not know (raised by the caller of parse())."""
    return S3Error(
        "InvalidAccessKeyId",
        403,
        "The AWS Access Key Id you provided does not exist in our records.",
        {"AWSAccessKeyId": access_key_id},
    )


def access_denied(
    message: str = "Access Denied", extra: Mapping[str, object] | None = None
) -> S3Error:
    return S3Error("AccessDenied", 403, message, extra)


def _header_malformed(detail: str, extra: Mapping[str, object] | None = None) -> S3Error:
    return S3Error(
        "AuthorizationHeaderMalformed",
        400,
        f"The authorization header is malformed; {detail}",
        extra,
    )


def _query_error(detail: str, extra: Mapping[str, object] | None = None) -> S3Error:
    return S3Error("AuthorizationQueryParametersError", 400, detail, extra)


def _invalid_request(message: str) -> S3Error:
    return S3Error("InvalidRequest", 400, message)


def _malformed_body(detail: str) -> S3Error:
    return S3Error("InvalidRequest", 400, f"Malformed aws-chunked body: {detail}")


def _incomplete_body(message: str) -> S3Error:
    return S3Error("IncompleteBody", 400, message)


def _no_date() -> S3Error:
    return access_denied("AWS authentication requires a valid Date or x-amz-date header")


# ---------------------------------------------------------------------------------------
# The request as received


def _raw_to_str(raw: bytes) -> str:
    if raw.isascii():
        return raw.decode("ascii")
    return quote_from_bytes(raw, safe=_ASCII_PRINTABLE)


@dataclass(slots=True)
class Request:
    """A request as the server received it.

    ``path`` is the raw request-target path exactly as sent (still percent-encoded, no
    query), ``query`` the raw query string without ``?``, ``headers`` every header line as
    a (name, value) pair in arrival order (repeats allowed; values decoded as Latin-1 when
    they come as bytes), ``now`` the server's clock in Unix seconds when it arrived.
    """

    method: str
    path: str
    query: str = ""
    headers: Sequence[tuple[str, str]] = ()
    now: float = field(default_factory=time.time)
    # The headers by lowercase name, when the builder already made it (from_asgi does).
    header_map: dict[str, list[str]] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_asgi(cls, scope: Mapping[str, Any], now: float | None = None) -> Request:
        """Build from an ASGI HTTP scope, reading the raw path rather than the decoded one.

        Header names are taken as ASGI requires them, lowercase; values are Latin-1.
        """
        raw_path = scope.get("raw_path")
        if raw_path:
            if b"?" in raw_path:
                # Some servers have been known to leave the query on raw_path.
                raw_path = raw_path.partition(b"?")[0]
            path = raw_path.decode("ascii") if raw_path.isascii() else _raw_to_str(raw_path)
        else:
            path = quote_from_bytes(scope["path"].encode("utf-8"), safe="/")
        raw_query = scope.get("query_string") or b""
        query = raw_query.decode("ascii") if raw_query.isascii() else _raw_to_str(raw_query)
        headers = []
        header_map: dict[str, list[str]] = {}
        for raw_name, raw_value in scope["headers"]:
            # ASGI header names are lowercase already.
            name = raw_name.decode("latin-1")
            value = raw_value.decode("latin-1")
            headers.append((name, value))
            values = header_map.get(name)
            if values is None:
                header_map[name] = [value]
            else:
                values.append(value)
        return cls(
            scope["method"],
            path,
            query,
            headers,
            time.time() if now is None else now,
            header_map,
        )


# ---------------------------------------------------------------------------------------
# Signing keys


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def derive_signing_key(secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
    """The SigV4 signing key: HMAC chain "AWS4"+secret -> date -> region -> service ->
    "aws4_request". It is valid for that one scope, so it can be cached and handed to a
    front end that verifies chunks without ever holding the secret."""
    key = _hmac(("AWS4" + secret).encode("utf-8"), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, TERMINATOR)


SigningKeyProvider = Callable[[str, str, str], bytes]
"""(access_key_id, scope date YYYYMMDD, region) -> signing key bytes."""


class SigningKeyCache:
    """A thread-safe LRU of derived signing keys keyed by (access key ID, date, region).

    ``invalidate(access_key_id)`` drops every key derived for that ID, so a revoked or
    rotated key stops verifying at once; a derivation that was in flight while any
    invalidation happened is returned to its caller but not stored.
    """

    def __init__(self, maxsize: int = 4096) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self._by_key_id: dict[str, set[tuple[str, str, str]]] = {}
        self._epoch = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, access_key_id: str, date: str, region: str) -> bytes | None:
        entry = (access_key_id, date, region)
        with self._lock:
            key = self._entries.get(entry)
            if key is not None:
                self._entries.move_to_end(entry)
            return key

    def get_or_derive(
        self, access_key_id: str, date: str, region: str, derive: Callable[[], bytes]
    ) -> bytes:
        entry = (access_key_id, date, region)
        with self._lock:
            key = self._entries.get(entry)
            if key is not None:
                self._entries.move_to_end(entry)
                return key
            epoch = self._epoch
        # Deriving may load and decrypt a secret: never under the lock.
        key = derive()
        with self._lock:
            if epoch == self._epoch:
                self._store(entry, key)
        return key

    def _store(self, entry: tuple[str, str, str], key: bytes) -> None:
        self._entries[entry] = key
        self._entries.move_to_end(entry)
        self._by_key_id.setdefault(entry[0], set()).add(entry)
        while len(self._entries) > self._maxsize:
            old, _ = self._entries.popitem(last=False)
            siblings = self._by_key_id.get(old[0])
            if siblings is not None:
                siblings.discard(old)
                if not siblings:
                    del self._by_key_id[old[0]]

    def invalidate(self, access_key_id: str) -> None:
        with self._lock:
            self._epoch += 1
            for entry in self._by_key_id.pop(access_key_id, ()):
                self._entries.pop(entry, None)

    def clear(self) -> None:
        with self._lock:
            self._epoch += 1
            self._entries.clear()
            self._by_key_id.clear()

    def provider(
        self, secret_for: Callable[[str], str], service: str = SERVICE
    ) -> SigningKeyProvider:
        """A signing-key provider that calls ``secret_for(access_key_id)`` only on a miss."""

        entries = self._entries

        def signing_key(access_key_id: str, date: str, region: str) -> bytes:
            # Lock-free hit: dict reads and move_to_end are atomic under the GIL, and a
            # concurrent invalidation at worst makes move_to_end miss the entry.
            entry = (access_key_id, date, region)
            key = entries.get(entry)
            if key is not None:
                try:
                    entries.move_to_end(entry)
                except KeyError:
                    pass
                return key
            return self.get_or_derive(
                access_key_id,
                date,
                region,
                lambda: derive_signing_key(secret_for(access_key_id), date, region, service),
            )

        return signing_key


# ---------------------------------------------------------------------------------------
# Canonical request pieces


def canonical_uri(path: str) -> str:
    """The canonical URI of a raw S3 path: decoded once, re-encoded once (never twice).

    Only ``A-Za-z0-9-_.~/`` stay literal; every other byte of the UTF-8 form becomes an
    uppercase ``%XX`` (a ``+`` is ``%2B``); ``//`` and dot segments are kept as sent.
    """
    if _PATH_CHARS(path) and not _PATH_ESCAPE_TO_REWRITE(path):
        return path or "/"
    if _BAD_ESCAPE(path):
        raise S3Error("InvalidURI", 400, "Couldn't parse the specified URI.")
    return quote_from_bytes(unquote_to_bytes(path), safe="/~")


def _query_component(raw: str) -> str:
    if _QUERY_PART_CHARS(raw) and not _QUERY_ESCAPE_TO_REWRITE(raw):
        return raw
    if _BAD_ESCAPE(raw):
        raise S3Error("InvalidURI", 400, "Couldn't parse the specified URI.")
    # A literal '+' in a raw query means a space, as MinIO and RGW read it.
    return quote_from_bytes(unquote_to_bytes(raw.replace("+", " ")), safe="~")


def canonical_query(query: str, *, exclude: str | None = None) -> str:
    """The canonical query string: each key and value decoded and re-encoded (RFC 3986),
    ``key`` without ``=`` as ``key=``, sorted by key then value; ``exclude`` drops a key."""
    if not query:
        return ""
    return _canonical_query(query, exclude, None)


def _canonical_query(query: str, exclude: str | None, items: list[str] | None) -> str:
    if (
        _QUERY_CHARS(query)
        and not _QUERY_ESCAPE_TO_REWRITE(query)
        and not _RAW_EQUALS_IN_VALUE(query)
    ):
        # Every key and value is encoded as it must be already: only sort. With "\0" (which
        # no canonical text contains) in place of "=", plain string order is the order by
        # key, then value.
        if items is None:
            items = [
                item if "\0" in item else item + "\0"
                for item in query.replace("=", "\0").split("&")
                if item
            ]
            if exclude is not None:
                prefix = exclude + "\0"
                items = [item for item in items if not item.startswith(prefix)]
        items = sorted(items)
        return "&".join(items).replace("\0", "=")
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        if key == exclude:
            continue
        pairs.append((_query_component(key), _query_component(value)))
    pairs.sort()
    return "&".join([key + "=" + value for key, value in pairs])


def _decode_query_value(raw: str) -> str:
    if "%" not in raw and "+" not in raw:
        return raw
    # X-Amz-Credential only escapes its slashes: spare it the general decoder.
    simple = raw.replace("%2F", "/")
    if "%" not in simple and "+" not in simple:
        return simple
    return unquote_to_bytes(raw.replace("+", " ")).decode("utf-8", "replace")


def _header_map(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for name, value in headers:
        lname = name.lower()
        values = result.get(lname)
        if values is None:
            result[lname] = [value]
        else:
            values.append(value)
    return result


# ---------------------------------------------------------------------------------------
# Parsing


@dataclass(slots=True)
class Auth:
    """What parse() read from a request: enough to look the key up, then verify()."""

    request: Request
    presigned: bool
    access_key_id: str
    scope_date: str
    region: str
    scope: str  # date/region/s3/aws4_request
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    timestamp: float
    expires: int | None
    payload: str
    headers: dict[str, list[str]]
    decoded_content_length: int | None = None
    trailers: tuple[str, ...] = ()
    # A presigned request's query pairs but X-Amz-Signature, as "key\0value" (parse()).
    query_items: list[str] | None = None


_last_amz_date: tuple[str, float] = ("", 0.0)


def _parse_amz_date(value: str) -> float | None:
    global _last_amz_date
    # Most requests in one second carry the same x-amz-date: remember the last one.
    cached = _last_amz_date
    if cached[0] == value:
        return cached[1]
    match = _AMZ_DATE(value)
    if match is None:
        return None
    try:
        moment = datetime(*(int(part) for part in match.groups()), tzinfo=UTC)  # type: ignore[misc]
    except ValueError:
        return None
    timestamp = moment.timestamp()
    _last_amz_date = (value, timestamp)
    return timestamp


def _iso_basic(timestamp: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(timestamp))


def _iso_extended(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _parse_credential(
    credential: str, region: str, amz_date: str, presigned: bool
) -> tuple[str, str, str]:
    expected = "/" + amz_date[:8] + "/" + region + "/s3/aws4_request"
    if credential.endswith(expected) and len(credential) > len(expected):
        return credential[: -len(expected)], amz_date[:8], expected[1:]
    error = _query_error if presigned else _header_malformed
    prefix = "Error parsing the X-Amz-Credential parameter; " if presigned else ""
    parts = credential.rsplit("/", 4)
    if len(parts) != 5 or not parts[0]:
        raise error(
            f"{prefix}the Credential is mal-formed; expecting "
            '"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".'
        )
    access_key_id, date, scope_region, service, terminator = parts
    if not _SCOPE_DATE(date):
        raise error(
            f'{prefix}incorrect date format "{date}". This date in the credential must be '
            'in the format "yyyyMMdd".'
        )
    if scope_region != region:
        raise error(
            f"{prefix}the region '{scope_region}' is wrong; expecting '{region}'",
            {"Region": region},
        )
    if service != SERVICE:
        raise error(f'{prefix}incorrect service "{service}". This endpoint belongs to "s3".')
    if terminator != TERMINATOR:
        raise error(
            f'{prefix}incorrect terminal "{terminator}". This endpoint uses "aws4_request".'
        )
    if date != amz_date[:8]:
        raise error(
            f'Invalid credential date "{date}". This date is not the same as '
            f'X-Amz-Date: "{amz_date[:8]}".'
        )
    return access_key_id, date, credential[len(access_key_id) + 1 :]


# Requests from one client repeat the same header names and signed list, so the rules are
# checked once per combination. parse() runs before any signature is verified, so anyone
# can add entries: the memoized combinations and lists are few and small (bounded by
# clearing), which caps what an unauthenticated client can make the process hold.
_MEMO_ENTRIES = 256
_MEMO_MAX_HEADERS = 32
_MEMO_MAX_TEXT = 512
_CHECKED_HEADER_SETS: set[tuple[tuple[str, ...], tuple[str, ...]]] = set()


def _check_signed_headers(names: tuple[str, ...], headers: dict[str, list[str]]) -> None:
    if len(headers) > _MEMO_MAX_HEADERS:
        _check_signed_header_rules(names, headers)
        return
    combination = (names, tuple(headers))
    if combination in _CHECKED_HEADER_SETS:
        return
    _check_signed_header_rules(names, headers)
    if len(_CHECKED_HEADER_SETS) >= _MEMO_ENTRIES:
        _CHECKED_HEADER_SETS.clear()
    _CHECKED_HEADER_SETS.add(combination)


def _check_signed_header_rules(names: tuple[str, ...], headers: dict[str, list[str]]) -> None:
    signed = names
    if "host" not in signed:
        raise access_denied(
            "There were headers present in the request which were not signed",
            {"HeadersNotSigned": "host"},
        )
    unsigned = [
        name
        for name in headers
        if name.startswith("x-amz-") and name != "x-amz-content-sha256" and name not in signed
    ]
    if unsigned:
        raise access_denied(
            "There were headers present in the request which were not signed",
            {"HeadersNotSigned": ", ".join(sorted(unsigned))},
        )
    for name in names:
        if name not in headers:
            raise access_denied(f"The signed header '{name}' is not present in the request.")


_SIGNED_HEADER_LISTS: dict[str, tuple[str, ...]] = {}


def _split_signed_headers(value: str, presigned: bool) -> tuple[str, ...]:
    names = _SIGNED_HEADER_LISTS.get(value)
    if names is not None:
        return names
    names = tuple(value.lower().split(";"))
    if "" in names:
        if presigned:
            raise _query_error("X-Amz-SignedHeaders is malformed.")
        raise _header_malformed(
            f'the authorization component "SignedHeaders={value}" is malformed.'
        )
    if len(value) <= _MEMO_MAX_TEXT:
        if len(_SIGNED_HEADER_LISTS) >= _MEMO_ENTRIES:
            _SIGNED_HEADER_LISTS.clear()
        _SIGNED_HEADER_LISTS[value] = names
    return names


def parse(request: Request, *, region: str) -> Auth:
    """Read a request's SigV4 authentication (header or presigned) without verifying it.

    Checks everything that needs neither the secret nor the clock: the algorithm, the
    credential scope (region must be ``region``, service ``s3``, date equal to the date of
    x-amz-date), the signed-header rules and the payload mode. Raises :class:`S3Error`.
    The caller then looks up ``auth.access_key_id`` (answering InvalidAccessKeyId itself)
    and calls :func:`verify`.
    """
    headers = request.header_map
    if headers is None:
        headers = _header_map(request.headers)
    authorization = headers.get("authorization")
    presign = _presign_params(request.query) if "X-Amz-" in request.query else None
    if presign is not None:
        if authorization is not None:
            raise S3Error(
                "InvalidArgument",
                400,
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
                "Signature query string parameter or the Authorization header should be "
                "specified",
            )
        auth = _parse_presigned(request, headers, presign[0], region)
        auth.query_items = presign[1]
    elif authorization is None:
        raise access_denied()
    else:
        auth = _parse_header_auth(request, headers, authorization, region)
    if auth.payload in STREAMING_MODES:
        _parse_streaming_headers(auth)
    return auth


def _parse_header_auth(
    request: Request, headers: dict[str, list[str]], authorization: list[str], region: str
) -> Auth:
    if len(authorization) != 1:
        raise S3Error("InvalidArgument", 400, "Only one Authorization header is allowed.")
    value = authorization[0]
    # botocore's form, read with two partitions; anything else takes the careful path.
    credential, found, rest = value.partition(", SignedHeaders=")
    signed_headers, found_too, signature = rest.partition(", Signature=")
    credential = credential[28:]
    if not (
        found
        and found_too
        and value.startswith("AWS4-HMAC-SHA256 Credential=")
        and credential
        and signed_headers
        and signature
        and "=" not in credential
        and "=" not in signed_headers
        and "," not in signature
    ):
        credential, signed_headers, signature = _authorization_fields(value)
    date_values = headers.get("x-amz-date")
    if date_values is not None and len(date_values) == 1:
        amz_date = date_values[0]
        timestamp = _parse_amz_date(amz_date)
        if timestamp is None:
            amz_date, timestamp = _parse_header_date(headers)
    else:
        amz_date, timestamp = _parse_header_date(headers)
    access_key_id, date, scope = _parse_credential(credential, region, amz_date, False)
    names = _split_signed_headers(signed_headers, presigned=False)
    _check_signed_headers(names, headers)

    payload_values = headers.get("x-amz-content-sha256")
    if payload_values is None:
        # MinIO's reading: without the header the payload is the empty body's hash.
        payload = EMPTY_SHA256
    elif len(payload_values) != 1:
        raise _invalid_payload_mode()
    else:
        payload = payload_values[0].strip()
        if len(payload) != 64 or payload.strip(_HEX_DIGITS):
            if payload not in STREAMING_MODES and payload != UNSIGNED_PAYLOAD:
                raise _invalid_payload_mode()

    return Auth(
        request,
        False,
        access_key_id,
        date,
        region,
        scope,
        names,
        signature,
        amz_date,
        timestamp,
        None,
        payload,
        headers,
    )


def _authorization_fields(value: str) -> tuple[str, str, str]:
    # The usual form, in botocore's order and spacing, read without a regex or a loop.
    if value.startswith("AWS4-HMAC-SHA256 Credential="):
        credential, _, rest = value[28:].partition(",")
        rest = rest.lstrip(" ")
        if rest.startswith("SignedHeaders="):
            signed_headers, _, rest = rest[14:].partition(",")
            rest = rest.lstrip(" ")
            if (
                rest.startswith("Signature=")
                and "," not in rest
                and "=" not in credential
                and "=" not in signed_headers
                and credential
                and signed_headers
                and len(rest) > 10
            ):
                return credential.rstrip(" "), signed_headers.rstrip(" "), rest[10:].strip()
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise S3Error(
            "InvalidRequest",
            400,
            "The authorization mechanism you have provided is not supported. "
            "Please use AWS4-HMAC-SHA256.",
        )
    fields: dict[str, str] = {}
    for component in rest.split(","):
        name, equals, field_value = component.strip().partition("=")
        if not equals or name in fields:
            raise _header_malformed(
                f'the authorization component "{component.strip()}" is malformed.'
            )
        fields[name] = field_value
    credential = fields.get("Credential")
    signed_headers = fields.get("SignedHeaders")
    signature = fields.get("Signature")
    if not credential or not signed_headers or not signature or len(fields) != 3:
        raise _header_malformed(
            "the authorization header requires three components: Credential, SignedHeaders, "
            "and Signature."
        )
    return credential, signed_headers, signature


def _parse_header_date(headers: dict[str, list[str]]) -> tuple[str, float]:
    date_values = headers.get("x-amz-date")
    if date_values is not None:
        if len(date_values) != 1:
            raise _no_date()
        amz_date = date_values[0].strip()
        timestamp = _parse_amz_date(amz_date)
    else:
        # Without x-amz-date, AWS and MinIO take the Date header (RFC 1123 or ISO 8601
        # basic) and sign its ISO 8601 basic form.
        date_values = headers.get("date")
        if date_values is None or len(date_values) != 1:
            raise _no_date()
        timestamp = _parse_http_date(date_values[0].strip())
        amz_date = _iso_basic(timestamp) if timestamp is not None else ""
    if timestamp is None:
        raise _no_date()
    return amz_date, timestamp


def _parse_http_date(value: str) -> float | None:
    timestamp = _parse_amz_date(value)
    if timestamp is not None:
        return timestamp
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        # "-0000" (what botocore writes) means UTC with no claim about local time.
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _invalid_payload_mode() -> S3Error:
    return S3Error(
        "InvalidArgument",
        400,
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER or a "
        "valid sha256 value.",
    )


def _presign_params(query: str) -> tuple[dict[str, str], list[str]] | None:
    """The presign parameters of a raw query (decoded), and the query's pairs other than
    X-Amz-Signature as "key\\0value" items, which canonical_query() can sort directly."""
    found: dict[str, str] = {}
    kept: list[str] = []
    for item in query.replace("=", "\0").split("&"):
        if not item:
            continue
        key, separator, value = item.partition("\0")
        if key in PRESIGN_PARAMS:
            if key in found:
                raise _query_error(f"{key} must be given only once.")
            if "\0" in value:
                value = value.replace("\0", "=")
            found[key] = _decode_query_value(value) if "%" in value or "+" in value else value
            if key == QUERY_SIGNATURE:
                continue
        kept.append(item if separator else item + "\0")
    if QUERY_ALGORITHM in found or QUERY_CREDENTIAL in found or QUERY_SIGNATURE in found:
        return found, kept
    return None


def _parse_presigned(
    request: Request, headers: dict[str, list[str]], params: dict[str, str], region: str
) -> Auth:
    if not params.keys() >= _PRESIGN_REQUIRED_SET or "" in params.values():
        raise _query_error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, "
            "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and "
            "X-Amz-Expires parameters."
        )
    if params[QUERY_ALGORITHM] != ALGORITHM:
        raise _query_error('X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"')
    amz_date = params[QUERY_DATE]
    timestamp = _parse_amz_date(amz_date)
    if timestamp is None:
        raise _query_error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    raw_expires = params[QUERY_EXPIRES]
    if not (raw_expires.isascii() and raw_expires.isdigit()) and not _INTEGER(raw_expires):
        raise _query_error("X-Amz-Expires should be a number")
    expires = int(raw_expires)
    if expires < 0:
        raise _query_error("X-Amz-Expires must be non-negative")
    if expires > MAX_EXPIRES_SECONDS:
        raise _query_error(
            "X-Amz-Expires must be less than a week (in seconds) that is 604800 seconds"
        )
    if expires == 0:
        raise _query_error("X-Amz-Expires must be at least 1 second")

    access_key_id, date, scope = _parse_credential(params[QUERY_CREDENTIAL], region, amz_date, True)
    names = _split_signed_headers(params[QUERY_SIGNED_HEADERS], presigned=True)
    _check_signed_headers(names, headers)

    payload = params.get(QUERY_CONTENT_SHA256, UNSIGNED_PAYLOAD)
    if payload != UNSIGNED_PAYLOAD and not _HEX_SHA256(payload):
        raise _invalid_payload_mode()

    return Auth(
        request,
        True,
        access_key_id,
        date,
        region,
        scope,
        names,
        params[QUERY_SIGNATURE],
        amz_date,
        timestamp,
        expires,
        payload,
        headers,
    )


def _parse_streaming_headers(auth: Auth) -> None:
    values = auth.headers.get("x-amz-decoded-content-length")
    if values is not None:
        value = values[0].strip() if len(values) == 1 else ""
        if not value.isdigit() or not value.isascii():
            raise S3Error("InvalidArgument", 400, "x-amz-decoded-content-length must be a number.")
        auth.decoded_content_length = int(value)
    elif auth.payload != STREAMING_UNSIGNED_PAYLOAD_TRAILER:
        raise S3Error(
            "MissingContentLength",
            411,
            "You must provide the x-amz-decoded-content-length header with an aws-chunked payload.",
        )
    if auth.payload == STREAMING_PAYLOAD:
        return
    declared = [
        name.strip().lower()
        for value in auth.headers.get("x-amz-trailer", ())
        for name in value.split(",")
        if name.strip()
    ]
    if len(declared) > 1 or any(name not in CHECKSUM_HEADERS for name in declared):
        raise _invalid_request("The value specified in the x-amz-trailer header is not supported")
    auth.trailers = tuple(declared)


# ---------------------------------------------------------------------------------------
# Verification


def canonical_request(auth: Auth) -> str:
    """The canonical request that the client must have signed."""
    request = auth.request
    headers = auth.headers
    lines = [
        request.method,
        canonical_uri(request.path),
        _canonical_query(request.query, QUERY_SIGNATURE, auth.query_items)
        if auth.presigned
        else canonical_query(request.query),
    ]
    for name in auth.signed_headers:
        values = headers[name]
        if len(values) == 1:
            lines.append(name + ":" + " ".join(values[0].split()))
        else:
            lines.append(name + ":" + ",".join([" ".join(value.split()) for value in values]))
    lines.append("")
    lines.append(";".join(auth.signed_headers))
    lines.append(auth.payload)
    return "\n".join(lines)


def string_to_sign(auth: Auth, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return "AWS4-HMAC-SHA256\n" + auth.amz_date + "\n" + auth.scope + "\n" + digest


# HMAC-SHA256 with the key's inner and outer pad states hashed once per signing key: each
# signature then costs two SHA-256 copies instead of a full HMAC set-up (less than half the
# time, and the gateway signs once per request plus once per chunk). Bounded by clearing.
_PAD_STATES: dict[bytes, tuple[Any, Any]] = {}
_PAD_STATES_MAX = 4096
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _pad_states(key: bytes) -> tuple[Any, Any]:
    states = _PAD_STATES.get(key)
    if states is None:
        block = (
            key.ljust(64, b"\0")
            if len(key) <= 64
            else hashlib.sha256(key).digest().ljust(64, b"\0")
        )
        states = (hashlib.sha256(block.translate(_IPAD)), hashlib.sha256(block.translate(_OPAD)))
        if len(_PAD_STATES) >= _PAD_STATES_MAX:
            _PAD_STATES.clear()
        _PAD_STATES[key] = states
    return states


def signature(signing_key: bytes, string_to_sign: str) -> str:
    """The hex HMAC-SHA256 signature of a string to sign (also what a verify API compares)."""
    inner_state, outer_state = _pad_states(signing_key)
    inner = inner_state.copy()
    inner.update(string_to_sign.encode("utf-8"))
    outer = outer_state.copy()
    outer.update(inner.digest())
    return outer.hexdigest()


def _check_clock(auth: Auth, max_skew: float) -> None:
    now = auth.request.now
    if auth.expires is not None:
        if auth.timestamp - now > max_skew:
            raise access_denied("Request is not valid yet")
        if now > auth.timestamp + auth.expires:
            raise access_denied(
                "Request has expired",
                {
                    "X-Amz-Expires": auth.expires,
                    "Expires": _iso_extended(auth.timestamp + auth.expires),
                    "ServerTime": _iso_extended(now),
                },
            )
    elif abs(now - auth.timestamp) > max_skew:
        raise _too_skewed(auth.amz_date, now, max_skew)


def _too_skewed(amz_date: str, now: float, max_skew: float) -> S3Error:
    return S3Error(
        "RequestTimeTooSkewed",
        403,
        "The difference between the request time and the current time is too large.",
        {
            "RequestTime": amz_date,
            "ServerTime": _iso_extended(now),
            "MaxAllowedSkewMilliseconds": int(max_skew * 1000),
        },
    )


def _check_signature(
    expected: str,
    provided: str,
    access_key_id: str,
    to_sign: str,
    canonical: str | None = None,
) -> None:
    """Compare in constant time; SignatureDoesNotMatch (with what AWS echoes) if unequal."""
    if provided.isascii() and hmac.compare_digest(expected, provided):
        return
    extra = {
        "AWSAccessKeyId": access_key_id,
        "StringToSign": to_sign,
        "SignatureProvided": provided,
    }
    if canonical is not None:
        extra["CanonicalRequest"] = canonical
    raise S3Error(
        "SignatureDoesNotMatch",
        403,
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
        extra,
    )


def verify(
    auth: Auth, signing_key: SigningKeyProvider, *, max_skew: float = MAX_SKEW_SECONDS
) -> Verified:
    """Check the clock and the signature of a parsed request; raise :class:`S3Error`.

    ``signing_key`` is called once as ``signing_key(access_key_id, date, region)``.
    """
    now = auth.request.now
    timestamp = auth.timestamp
    expires = auth.expires
    if expires is None:
        if abs(now - timestamp) > max_skew:
            _check_clock(auth, max_skew)
    elif timestamp - now > max_skew or now > timestamp + expires:
        _check_clock(auth, max_skew)
    key = signing_key(auth.access_key_id, auth.scope_date, auth.region)
    canonical = canonical_request(auth)
    to_sign = (
        "AWS4-HMAC-SHA256\n"
        + auth.amz_date
        + "\n"
        + auth.scope
        + "\n"
        + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    )
    expected = signature(key, to_sign)
    _check_signature(expected, auth.signature, auth.access_key_id, to_sign, canonical)
    return Verified(auth, key, expected)


# ---------------------------------------------------------------------------------------
# A string to sign computed elsewhere (the internal verify API)


@dataclass(frozen=True, slots=True)
class SignedString:
    """A string to sign that another S3 front end computed, read back into its parts."""

    text: str
    amz_date: str
    timestamp: float
    scope_date: str
    region: str
    scope: str  # date/region/s3/aws4_request


def check_signature(expected: str, provided: str, access_key_id: str, to_sign: str) -> None:
    """Compare a signature computed here with the one provided, in constant time;
    SignatureDoesNotMatch if they differ."""
    _check_signature(expected, provided, access_key_id, to_sign)


def parse_post_credential(credential: str, amz_date: str, *, region: str) -> tuple[str, str]:
    """(access key ID, scope date) of a POST policy form's x-amz-credential and
    x-amz-date, checked by the rules of a request's Credential."""
    if _parse_amz_date(amz_date) is None:
        raise _invalid_request('x-amz-date must be in the format "yyyyMMddTHHmmssZ".')
    access_key_id, date, _ = _parse_credential(credential, region, amz_date, presigned=False)
    return access_key_id, date


def parse_string_to_sign(text: str, access_key_id: str, *, region: str) -> SignedString:
    """Read ``AWS4-HMAC-SHA256 / x-amz-date / scope / hex SHA-256`` back; raise S3Error.

    The scope line is checked by the same rules as a request's Credential (the access key
    ID followed by the scope), so a wrong region is AuthorizationHeaderMalformed naming
    ours, as the gateway answers; any other malformation is InvalidRequest (400).
    """
    lines = text.split("\n")
    if len(lines) != 4 or lines[0] != ALGORITHM:
        raise _invalid_request(
            "The string to sign must be four lines: AWS4-HMAC-SHA256, the x-amz-date, "
            "the credential scope and the hex SHA-256 of the canonical request."
        )
    amz_date, scope, digest = lines[1], lines[2], lines[3]
    timestamp = _parse_amz_date(amz_date)
    if timestamp is None:
        raise _invalid_request(
            'The date in the string to sign must be in the format "yyyyMMddTHHmmssZ".'
        )
    if len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise _invalid_request(
            "The last line of the string to sign must be a lowercase hex SHA-256 digest."
        )
    _, scope_date, scope = _parse_credential(
        access_key_id + "/" + scope, region, amz_date, presigned=False
    )
    return SignedString(text, amz_date, timestamp, scope_date, region, scope)


def verify_string_to_sign(
    signed: SignedString,
    access_key_id: str,
    provided: str,
    signing_key: SigningKeyProvider,
    *,
    now: float,
    max_skew: float = MAX_SKEW_SECONDS,
) -> bytes:
    """verify() for a string to sign computed elsewhere: the clock (the same 15 minutes),
    then the signature in constant time. Returns the signing key for the scope."""
    if abs(now - signed.timestamp) > max_skew:
        raise _too_skewed(signed.amz_date, now, max_skew)
    key = signing_key(access_key_id, signed.scope_date, signed.region)
    _check_signature(signature(key, signed.text), provided, access_key_id, signed.text)
    return key


@dataclass(slots=True)
class Verified:
    """A request whose signature verified; ``body()`` verifies what follows."""

    auth: Auth
    signing_key: bytes  # derived for this scope only: safe to hand to a chunk verifier
    seed_signature: str  # the request's signature, which chunk signatures chain from

    @property
    def access_key_id(self) -> str:
        return self.auth.access_key_id

    @property
    def region(self) -> str:
        return self.auth.region

    @property
    def scope_date(self) -> str:
        return self.auth.scope_date

    @property
    def scope(self) -> str:
        return self.auth.scope

    @property
    def amz_date(self) -> str:
        return self.auth.amz_date

    @property
    def payload(self) -> str:
        """The x-amz-content-sha256 value (or the presigned equivalent) that was signed."""
        return self.auth.payload

    @property
    def presigned(self) -> bool:
        return self.auth.presigned

    @property
    def decoded_content_length(self) -> int | None:
        return self.auth.decoded_content_length

    @property
    def trailers(self) -> tuple[str, ...]:
        return self.auth.trailers

    @property
    def headers(self) -> dict[str, list[str]]:
        return self.auth.headers

    @property
    def streaming(self) -> bool:
        """True when the body is aws-chunked: forward the decoded bytes, not the raw ones."""
        return self.payload in STREAMING_MODES

    def header_checksum(self) -> tuple[str, bytes] | None:
        """The (algorithm, digest) of an ``x-amz-checksum-*`` header, or None."""
        headers = self.auth.headers
        found = [name for name in CHECKSUM_HEADERS if name in headers]
        if not found:
            return None
        values = self.headers[found[0]]
        if len(found) > 1 or len(values) > 1:
            raise _invalid_request(
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not "
                "allowed."
            )
        algorithm = CHECKSUM_HEADERS[found[0]]
        digest = _decode_checksum(algorithm, values[0].strip())
        if digest is None:
            raise _invalid_request(f"Value for {found[0]} header is invalid.")
        return algorithm, digest

    def body(self, *, check_checksum_header: bool | None = None) -> BodyVerifier:
        """A verifier for the request body, by payload mode.

        An ``x-amz-checksum-*`` header is checked against the (decoded) body unless
        ``check_checksum_header`` is False; by default it is, except on
        CompleteMultipartUpload (POST with uploadId), whose header names the whole
        object's checksum rather than the body's.
        """
        auth = self.auth
        if check_checksum_header is None:
            request = auth.request
            check_checksum_header = not (request.method == "POST" and "uploadId=" in request.query)
        checksum = self.header_checksum() if check_checksum_header else None
        payload = auth.payload
        if payload in STREAMING_MODES:
            return ChunkedDecoder(
                signing_key=None
                if payload == STREAMING_UNSIGNED_PAYLOAD_TRAILER
                else self.signing_key,
                seed_signature=self.seed_signature,
                amz_date=auth.amz_date,
                scope=auth.scope,
                trailer=payload != STREAMING_PAYLOAD,
                declared_trailers=auth.trailers,
                decoded_content_length=auth.decoded_content_length,
                checksum=checksum,
            )
        return PayloadVerifier(
            expected_sha256=None if payload == UNSIGNED_PAYLOAD else payload.lower(),
            checksum=checksum,
        )


# ---------------------------------------------------------------------------------------
# Checksums


class _Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...

    def digest(self) -> bytes: ...


def _crc_tables(polynomial: int) -> tuple[tuple[int, ...], ...]:
    """The eight tables of "slicing-by-8" for a reflected CRC: table k advances a byte that
    still has k more bytes to travel through the register."""
    first = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ polynomial if crc & 1 else crc >> 1
        first.append(crc)
    tables = [tuple(first)]
    for _ in range(7):
        previous = tables[-1]
        tables.append(tuple((value >> 8) ^ first[value & 0xFF] for value in previous))
    return tuple(tables)


class _Crc32:
    __slots__ = ("_crc",)

    def __init__(self) -> None:
        self._crc = 0

    def update(self, data: bytes | memoryview) -> None:
        self._crc = zlib.crc32(data, self._crc)

    def digest(self) -> bytes:
        return self._crc.to_bytes(4, "big")


_LITTLE_ENDIAN = sys.byteorder == "little"


class _ReflectedCrc:
    """A reflected CRC (CRC32C, CRC64NVME) in pure Python, eight bytes per step.

    About 40-50 MB/s: enough for the occasional client that picks these algorithms; boto3
    and aws-cli send CRC32, which zlib computes in C.
    """

    __slots__ = ("_crc", "_tables", "_size", "_mask")

    def __init__(self, tables: tuple[tuple[int, ...], ...], size: int) -> None:
        self._tables = tables
        self._size = size
        self._mask = (1 << (8 * size)) - 1
        self._crc = self._mask

    def update(self, data: bytes | memoryview) -> None:
        crc = self._crc
        view = memoryview(data).cast("B")
        t0, t1, t2, t3, t4, t5, t6, t7 = self._tables
        whole = len(view) - len(view) % 8 if _LITTLE_ENDIAN else 0
        if whole:
            # Native 64-bit words are little-endian here: byte 0 is the low byte, the
            # first to enter a reflected CRC register.
            for word in view[:whole].cast("Q"):
                value = crc ^ word
                crc = (
                    t7[value & 0xFF]
                    ^ t6[(value >> 8) & 0xFF]
                    ^ t5[(value >> 16) & 0xFF]
                    ^ t4[(value >> 24) & 0xFF]
                    ^ t3[(value >> 32) & 0xFF]
                    ^ t2[(value >> 40) & 0xFF]
                    ^ t1[(value >> 48) & 0xFF]
                    ^ t0[value >> 56]
                )
        for byte in view[whole:]:
            crc = t0[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        self._crc = crc

    def digest(self) -> bytes:
        return (self._crc ^ self._mask).to_bytes(self._size, "big")


_CRC32C_TABLES = _crc_tables(0x82F63B78)
_CRC64NVME_TABLES = _crc_tables(0x9A6C9329AC4BC9B5)
_DIGEST_SIZES = {"crc32": 4, "crc32c": 4, "crc64nvme": 8, "sha1": 20, "sha256": 32}


def new_checksum(algorithm: str) -> _Hasher:
    """A hasher (update/digest) for one of CHECKSUM_ALGORITHMS; digests are big-endian."""
    if algorithm == "crc32":
        return _Crc32()
    if algorithm == "crc32c":
        return _ReflectedCrc(_CRC32C_TABLES, 4)
    if algorithm == "crc64nvme":
        return _ReflectedCrc(_CRC64NVME_TABLES, 8)
    if algorithm == "sha1":
        return hashlib.sha1()
    if algorithm == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unknown checksum algorithm {algorithm!r}")


def _decode_checksum(algorithm: str, value: str) -> bytes | None:
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest if len(digest) == _DIGEST_SIZES[algorithm] else None


def _bad_digest(algorithm: str) -> S3Error:
    return S3Error(
        "BadDigest",
        400,
        f"The {algorithm.upper()} you specified did not match the calculated checksum.",
    )


# ---------------------------------------------------------------------------------------
# Body verifiers


class BodyVerifier(Protocol):
    """Feed body pieces in; forward what comes out; forward finish()'s bytes last."""

    decoded_length: int

    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class PayloadVerifier:
    """A plain (not aws-chunked) body: the literal x-amz-content-sha256, if any, and an
    ``x-amz-checksum-*`` header, if given, are checked by finish().

    feed() returns the previous piece and holds the newest one back until finish().
    """

    __slots__ = ("_sha256", "_expected", "_checksum", "_held", "_done", "decoded_length")

    def __init__(
        self, *, expected_sha256: str | None, checksum: tuple[str, bytes] | None = None
    ) -> None:
        self._expected = expected_sha256
        self._sha256 = hashlib.sha256() if expected_sha256 is not None else None
        self._checksum = (checksum[0], checksum[1], new_checksum(checksum[0])) if checksum else None
        self._held = b""
        self._done = False
        self.decoded_length = 0

    def feed(self, data: bytes) -> bytes:
        if self._done:
            raise RuntimeError("feed() after finish()")
        if not data:
            return b""
        data = bytes(data)
        if self._sha256 is not None:
            self._sha256.update(data)
        if self._checksum is not None:
            self._checksum[2].update(data)
        self.decoded_length += len(data)
        released, self._held = self._held, data
        return released

    def finish(self) -> bytes:
        if self._done:
            raise RuntimeError("finish() called twice")
        if self._sha256 is not None:
            computed = self._sha256.hexdigest()
            if not hmac.compare_digest(computed, self._expected or ""):
                raise S3Error(
                    "XAmzContentSHA256Mismatch",
                    400,
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                    {
                        "ClientComputedContentSHA256": self._expected,
                        "S3ComputedContentSHA256": computed,
                    },
                )
        if self._checksum is not None:
            algorithm, expected, hasher = self._checksum
            if not hmac.compare_digest(hasher.digest(), expected):
                raise _bad_digest(algorithm)
        self._done = True
        released, self._held = self._held, b""
        return released


# Decoder states.
_CHUNK_HEADER, _CHUNK_DATA, _CHUNK_END, _TRAILER, _DONE = range(5)


class ChunkedDecoder:
    """An incremental aws-chunked decoder and verifier.

    Signed (``signing_key`` given): every chunk signature, the final zero-length chunk's
    included, is checked against the chain that starts at ``seed_signature``; with
    ``trailer`` the trailer signature too. Unsigned (``signing_key`` None): only the
    framing and the trailer checksum. Whatever the split of the input, the internal buffer
    never exceeds MAX_LINE_LENGTH bytes and chunk data is never buffered; a declared chunk
    size above ``max_chunk_size`` is refused as soon as its header line is read.

    feed(raw) returns decoded bytes safe to forward and keeps the newest decoded piece
    back; finish() checks that the body ended properly, its decoded length and checksums,
    and returns the held-back bytes. After any error the decoder stays failed.
    """

    __slots__ = (
        "_key",
        "_amz_date",
        "_scope",
        "_previous",
        "_trailer",
        "_declared",
        "_expected_length",
        "_max_chunk_size",
        "_state",
        "_line",
        "_remaining",
        "_crlf",
        "_chunk_hash",
        "_chunk_signature",
        "_checksums",
        "_header_checksum",
        "_trailers",
        "_trailer_signature",
        "_held",
        "_error",
        "_finished",
        "decoded_length",
    )

    def __init__(
        self,
        *,
        signing_key: bytes | None,
        seed_signature: str = "",
        amz_date: str = "",
        scope: str = "",
        trailer: bool = False,
        declared_trailers: Sequence[str] = (),
        decoded_content_length: int | None = None,
        checksum: tuple[str, bytes] | None = None,
        max_chunk_size: int = MAX_CHUNK_SIZE,
    ) -> None:
        self._key = signing_key
        self._amz_date = amz_date
        self._scope = scope
        self._previous = seed_signature
        self._trailer = trailer
        self._declared = tuple(declared_trailers)
        self._expected_length = decoded_content_length
        self._max_chunk_size = max_chunk_size
        self._state = _CHUNK_HEADER
        self._line = bytearray()
        self._remaining = 0
        self._crlf = 0
        self._chunk_hash: Any = None
        self._chunk_signature = ""
        # One running hasher per algorithm, shared by the header checksum and the trailer.
        self._checksums: dict[str, _Hasher] = {}
        for name in self._declared:
            self._checksums[CHECKSUM_HEADERS[name]] = new_checksum(CHECKSUM_HEADERS[name])
        self._header_checksum = checksum
        if checksum is not None and checksum[0] not in self._checksums:
            self._checksums[checksum[0]] = new_checksum(checksum[0])
        self._trailers: dict[str, str] = {}
        self._trailer_signature: str | None = None
        self._held = b""
        self._error: S3Error | None = None
        self._finished = False
        self.decoded_length = 0

    def feed(self, data: bytes) -> bytes:
        if self._error is not None:
            raise self._error
        if self._finished:
            raise RuntimeError("feed() after finish()")
        try:
            pieces = self._decode(bytes(data))
        except S3Error as error:
            self._error = error
            raise
        if not pieces:
            return b""
        if self._held:
            pieces.insert(0, self._held)
        self._held = bytes(pieces.pop())
        return b"".join(pieces)

    def finish(self) -> bytes:
        if self._error is not None:
            raise self._error
        if self._finished:
            raise RuntimeError("finish() called twice")
        if self._state != _DONE:
            self._error = _incomplete_body(
                "The aws-chunked body ended before its final chunk and trailer."
            )
            raise self._error
        self._finished = True
        released, self._held = self._held, b""
        return released

    def _decode(self, data: bytes) -> list[memoryview]:
        view = memoryview(data)
        end = len(data)
        position = 0
        pieces: list[memoryview] = []
        while position < end:
            state = self._state
            if state == _CHUNK_DATA:
                take = min(self._remaining, end - position)
                piece = view[position : position + take]
                if self._chunk_hash is not None:
                    self._chunk_hash.update(piece)
                for hasher in self._checksums.values():
                    hasher.update(piece)
                pieces.append(piece)
                position += take
                self._remaining -= take
                self.decoded_length += take
                expected = self._expected_length
                if expected is not None and self.decoded_length > expected:
                    raise _malformed_body("more data than x-amz-decoded-content-length declares")
                if not self._remaining:
                    self._state = _CHUNK_END
            elif state == _CHUNK_END:
                if data[position] != b"\r\n"[self._crlf]:
                    raise _malformed_body("chunk data is not followed by CRLF")
                position += 1
                self._crlf += 1
                if self._crlf == 2:
                    self._crlf = 0
                    if self._key is not None:
                        self._verify_chunk()
                    self._state = _CHUNK_HEADER
            elif state == _DONE:
                # Some clients add a CRLF after the last one; anything else is an error.
                if data[position] not in b"\r\n":
                    raise _malformed_body("data after the final chunk")
                position += 1
            else:
                newline = data.find(b"\n", position)
                stop = end if newline < 0 else newline
                if len(self._line) + (stop - position) > MAX_LINE_LENGTH:
                    raise _malformed_body("line too long")
                self._line += view[position:stop]
                if newline < 0:
                    position = end
                    continue
                position = newline + 1
                line = bytes(self._line)
                self._line.clear()
                if state == _CHUNK_HEADER:
                    self._chunk_header(line)
                else:
                    self._trailer_line(line)
        return pieces

    def _chunk_header(self, line: bytes) -> None:
        if not line.endswith(b"\r"):
            raise _malformed_body("chunk header does not end with CRLF")
        line = line[:-1]
        match = (_SIGNED_CHUNK if self._key is not None else _UNSIGNED_CHUNK)(line)
        if match is None:
            raise _malformed_body("invalid chunk header")
        size = int(match[1], 16)
        if size > self._max_chunk_size:
            raise _malformed_body(
                f"chunk size {size} exceeds the maximum of {self._max_chunk_size} bytes"
            )
        if self._key is not None:
            self._chunk_signature = match[2].decode("ascii")
            self._chunk_hash = hashlib.sha256()
        if size:
            self._remaining = size
            self._state = _CHUNK_DATA
        else:
            if self._key is not None:
                self._verify_chunk()
            self._state = _TRAILER

    def _verify_chunk(self) -> None:
        to_sign = (
            f"AWS4-HMAC-SHA256-PAYLOAD\n{self._amz_date}\n{self._scope}\n{self._previous}\n"
            f"{EMPTY_SHA256}\n{self._chunk_hash.hexdigest()}"
        )
        assert self._key is not None
        expected = signature(self._key, to_sign)
        if not hmac.compare_digest(expected.encode(), self._chunk_signature.encode()):
            raise S3Error(
                "SignatureDoesNotMatch",
                403,
                "The chunk signature we calculated does not match the signature you provided.",
                {"StringToSign": to_sign, "SignatureProvided": self._chunk_signature},
            )
        self._previous = expected

    def _trailer_line(self, line: bytes) -> None:
        # Trailer lines end in CRLF, though some clients send a bare LF.
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            self._end_trailers()
            self._state = _DONE
            return
        if not self._trailer:
            raise _malformed_body("the final chunk is not followed by CRLF")
        if self._trailer_signature is not None:
            raise _malformed_trailer("x-amz-trailer-signature must be the last trailer")
        if len(self._trailers) >= MAX_TRAILER_LINES:
            raise _malformed_trailer("too many trailers")
        raw_name, colon, raw_value = line.partition(b":")
        if not colon or not raw_name.isascii() or not raw_value.isascii():
            raise _malformed_trailer("a trailer is not a name:value line")
        name = raw_name.strip().lower().decode("ascii")
        value = raw_value.strip().decode("ascii")
        if name == "x-amz-trailer-signature":
            if self._key is None:
                raise _malformed_trailer("a trailer signature on an unsigned payload")
            self._trailer_signature = value
            return
        if name not in self._declared or name in self._trailers:
            raise _malformed_trailer(f"trailer {name} was not declared in x-amz-trailer")
        self._trailers[name] = value

    def _end_trailers(self) -> None:
        if self._trailer and self._key is not None:
            canonical = "".join(f"{name}:{value}\n" for name, value in self._trailers.items())
            digest = hashlib.sha256(canonical.encode("ascii")).hexdigest()
            to_sign = (
                f"AWS4-HMAC-SHA256-TRAILER\n{self._amz_date}\n{self._scope}\n{self._previous}\n"
                f"{digest}"
            )
            expected = signature(self._key, to_sign)
            provided = self._trailer_signature or ""
            if not hmac.compare_digest(expected.encode(), provided.encode()):
                raise S3Error(
                    "SignatureDoesNotMatch",
                    403,
                    "The trailer signature we calculated does not match the signature you "
                    "provided.",
                    {"StringToSign": to_sign, "SignatureProvided": provided},
                )
        missing = [name for name in self._declared if name not in self._trailers]
        if missing:
            raise _malformed_trailer(f"the declared trailer {missing[0]} is missing")
        expected_length = self._expected_length
        if expected_length is not None and self.decoded_length != expected_length:
            raise _incomplete_body(
                "You did not provide the number of bytes specified by the "
                "x-amz-decoded-content-length HTTP header."
            )
        if self._header_checksum is not None:
            algorithm, digest = self._header_checksum
            if not hmac.compare_digest(self._checksums[algorithm].digest(), digest):
                raise _bad_digest(algorithm)
        for name, value in self._trailers.items():
            algorithm = CHECKSUM_HEADERS[name]
            digest = _decode_checksum(algorithm, value)
            if digest is None:
                raise _invalid_request(f"Value for {name} trailing header is invalid.")
            if not hmac.compare_digest(self._checksums[algorithm].digest(), digest):
                raise _bad_digest(algorithm)


def _malformed_trailer(detail: str) -> S3Error:
    return S3Error(
        "MalformedTrailerError",
        400,
        f"The request contained trailing data that was not well-formed: {detail}.",
    )


def strip_aws_chunked(content_encoding: str | None) -> str | None:
    """Content-Encoding without its ``aws-chunked`` token, for the object as stored."""
    if not content_encoding:
        return None
    kept = [
        token.strip()
        for token in content_encoding.split(",")
        if token.strip() and token.strip().lower() != "aws-chunked"
    ]
    return ", ".join(kept) or None
