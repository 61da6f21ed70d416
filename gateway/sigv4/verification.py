"""The clock and signature of a parsed request, and of a string to sign computed elsewhere."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from .canonical import _canonical_query, canonical_query, canonical_uri
from .checksums import CHECKSUM_HEADERS, _decode_checksum
from .chunked import BodyVerifier, ChunkedDecoder, PayloadVerifier
from .constants import (
    ALGORITHM,
    QUERY_SIGNATURE,
    STREAMING_MODES,
    STREAMING_PAYLOAD,
    STREAMING_UNSIGNED_PAYLOAD_TRAILER,
    UNSIGNED_PAYLOAD,
)
from .errors import S3Error, _invalid_request, access_denied
from .parsing import Auth, _iso_extended, _parse_amz_date, _parse_credential
from .signing import SigningKeyProvider, signature

MAX_SKEW_SECONDS = 15 * 60


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
