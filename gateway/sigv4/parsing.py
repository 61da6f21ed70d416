"""Reading a request's SigV4 authentication, header or presigned, before any secret is used."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from .canonical import _decode_query_value
from .checksums import CHECKSUM_HEADERS
from .constants import (
    ALGORITHM,
    EMPTY_SHA256,
    PRESIGN_PARAMS,
    PRESIGN_REQUIRED,
    QUERY_ALGORITHM,
    QUERY_CONTENT_SHA256,
    QUERY_CREDENTIAL,
    QUERY_DATE,
    QUERY_EXPIRES,
    QUERY_SIGNATURE,
    QUERY_SIGNED_HEADERS,
    SERVICE,
    STREAMING_MODES,
    STREAMING_PAYLOAD,
    STREAMING_UNSIGNED_PAYLOAD_TRAILER,
    TERMINATOR,
    UNSIGNED_PAYLOAD,
)
from .errors import (
    S3Error,
    _header_malformed,
    _invalid_request,
    _no_date,
    _query_error,
    access_denied,
)
from .request import Request, _header_map

MAX_EXPIRES_SECONDS = 7 * 24 * 60 * 60

_PRESIGN_REQUIRED_SET = frozenset(PRESIGN_REQUIRED)

_AMZ_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})T([0-9]{2})([0-9]{2})([0-9]{2})Z").fullmatch
_SCOPE_DATE = re.compile(r"[0-9]{8}").fullmatch
_INTEGER = re.compile(r"-?[0-9]{1,12}").fullmatch
_HEX_DIGITS = "0123456789abcdefABCDEF"
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}").fullmatch


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
