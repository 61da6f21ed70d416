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

The package is split along those steps; each module imports only the ones listed before
it, and this one re-exports the names the gateway, the verify API, tests and benchmarks use::

    constants     algorithm, scope terms, payload modes, presign parameters
    errors        S3Error, the XML error body and the error constructors
    request       Request: the raw path, query and header lines as received
    signing       signing keys, SigningKeyCache, signature()
    canonical     canonical URI and query string
    checksums     x-amz-checksum-* algorithms
    parsing       Auth and parse(): header and presigned authentication
    chunked       body verifiers: PayloadVerifier, ChunkedDecoder
    verification  verify(), Verified, strings to sign computed elsewhere
"""

from __future__ import annotations

from .canonical import canonical_query, canonical_uri
from .checksums import CHECKSUM_ALGORITHMS, CHECKSUM_HEADERS, new_checksum
from .chunked import (
    MAX_CHUNK_SIZE,
    MAX_LINE_LENGTH,
    MAX_TRAILER_LINES,
    BodyVerifier,
    ChunkedDecoder,
    PayloadVerifier,
    strip_aws_chunked,
)
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
    STREAMING_PAYLOAD_TRAILER,
    STREAMING_UNSIGNED_PAYLOAD_TRAILER,
    TERMINATOR,
    UNSIGNED_PAYLOAD,
)
from .errors import S3Error, access_denied, error_xml, invalid_access_key_id
from .parsing import MAX_EXPIRES_SECONDS, Auth, parse
from .request import Request
from .signing import SigningKeyCache, SigningKeyProvider, derive_signing_key, signature
from .verification import (
    MAX_SKEW_SECONDS,
    SignedString,
    Verified,
    canonical_request,
    check_signature,
    parse_post_credential,
    parse_string_to_sign,
    string_to_sign,
    verify,
    verify_string_to_sign,
)

__all__ = [
    "ALGORITHM",
    "Auth",
    "BodyVerifier",
    "CHECKSUM_ALGORITHMS",
    "CHECKSUM_HEADERS",
    "ChunkedDecoder",
    "EMPTY_SHA256",
    "MAX_CHUNK_SIZE",
    "MAX_EXPIRES_SECONDS",
    "MAX_LINE_LENGTH",
    "MAX_SKEW_SECONDS",
    "MAX_TRAILER_LINES",
    "PRESIGN_PARAMS",
    "PRESIGN_REQUIRED",
    "PayloadVerifier",
    "QUERY_ALGORITHM",
    "QUERY_CONTENT_SHA256",
    "QUERY_CREDENTIAL",
    "QUERY_DATE",
    "QUERY_EXPIRES",
    "QUERY_SIGNATURE",
    "QUERY_SIGNED_HEADERS",
    "Request",
    "S3Error",
    "SERVICE",
    "STREAMING_MODES",
    "STREAMING_PAYLOAD",
    "STREAMING_PAYLOAD_TRAILER",
    "STREAMING_UNSIGNED_PAYLOAD_TRAILER",
    "SignedString",
    "SigningKeyCache",
    "SigningKeyProvider",
    "TERMINATOR",
    "UNSIGNED_PAYLOAD",
    "Verified",
    "access_denied",
    "canonical_query",
    "canonical_request",
    "canonical_uri",
    "check_signature",
    "derive_signing_key",
    "error_xml",
    "invalid_access_key_id",
    "new_checksum",
    "parse",
    "parse_post_credential",
    "parse_string_to_sign",
    "signature",
    "string_to_sign",
    "strip_aws_chunked",
    "verify",
    "verify_string_to_sign",
]
