"""The S3 errors the gateway answers, and the one way an error becomes an answer.

Django-free. The errors of SigV4 itself (a malformed Authorization, a bad signature, an
unknown key) are made in gateway.sigv4, beside the code that finds them; every other error
the gateway sends is made by one of the functions here, so each code carries one status
and one wording wherever it is raised. ``error_response`` and ``send_error`` turn any
S3Error into the HTTP answer, so every error answer carries the same headers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

# SigV4's own errors that the rest of the gateway raises too, from here like every other.
from .sigv4 import S3Error, access_denied
from .sigv4 import invalid_access_key_id as invalid_access_key_id

# Answers are served from the S3 origin; a browser must never sniff one into something
# executable.
SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"),)
# What a 503 tells a client to wait before it retries, unless the error says otherwise.
DEFAULT_RETRY_AFTER = "1"
ASGISend = Callable[[dict[str, Any]], Awaitable[None]]


# ---------------------------------------------------------------------------------------
# Turning an error into an answer


def error_response(
    error: S3Error, request_id: str, resource: str
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, headers, body) of the answer to ``error``: AWS's XML error body, and
    ``Retry-After`` on a 503."""
    body = error.to_xml(request_id, resource)
    headers = [
        (b"content-type", b"application/xml"),
        (b"content-length", str(len(body)).encode()),
        (b"x-amz-request-id", request_id.encode()),
        *SECURITY_HEADERS,
    ]
    if error.status == 503:
        retry_after = error.extra.get("RetryAfterSeconds", DEFAULT_RETRY_AFTER)
        headers.append((b"retry-after", retry_after.encode()))
    return error.status, headers, body


async def send_error(
    send: ASGISend,
    error: S3Error,
    *,
    request_id: str,
    resource: str,
    head: bool,
    close: bool,
) -> None:
    """Send the answer to ``error`` through ASGI ``send`` (no body for a HEAD request);
    ``close`` asks the server to close the connection after it."""
    status, headers, body = error_response(error, request_id, resource)
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


# ---------------------------------------------------------------------------------------
# Requests S3 would not take, whatever they ask


def invalid_argument(message: str, argument_name: str | None = None) -> S3Error:
    extra = {"ArgumentName": argument_name} if argument_name is not None else None
    return S3Error("InvalidArgument", 400, message, extra)


def invalid_request(message: str) -> S3Error:
    return S3Error("InvalidRequest", 400, message)


def bad_request(message: str) -> S3Error:
    return S3Error("BadRequest", 400, message)


def invalid_uri() -> S3Error:
    return S3Error("InvalidURI", 400, "Couldn't parse the specified URI.")


def malformed_xml(detail: str = "") -> S3Error:
    return S3Error(
        "MalformedXML",
        400,
        "The XML you provided was not well-formed or did not validate against our published "
        f"schema. {detail}".strip(),
    )


def method_not_allowed() -> S3Error:
    return S3Error(
        "MethodNotAllowed", 405, "The specified method is not allowed against this resource."
    )


def not_implemented(what: str) -> S3Error:
    return S3Error(
        "NotImplemented",
        501,
        f"A header or query you provided implies functionality that is not implemented: {what}.",
    )


def signature_v2_refused() -> S3Error:
    return invalid_request(
        "The authorization mechanism you have provided is not supported. "
        "Please use AWS4-HMAC-SHA256."
    )


# ---------------------------------------------------------------------------------------
# Names


def invalid_bucket_name(problem: str = "", name: str | None = None) -> S3Error:
    extra = {"BucketName": name} if name is not None else None
    return S3Error(
        "InvalidBucketName", 400, f"The specified bucket is not valid. {problem}".strip(), extra
    )


def key_too_long() -> S3Error:
    return S3Error("KeyTooLongError", 400, "Your key is too long.")


def no_such_bucket(name: str) -> S3Error:
    return S3Error("NoSuchBucket", 404, "The specified bucket does not exist", {"BucketName": name})


def bucket_already_exists(name: str) -> S3Error:
    return S3Error(
        "BucketAlreadyExists",
        409,
        "The requested bucket name is not available. The bucket namespace is shared by all "
        "users of the system. Please select a different name and try again.",
        {"BucketName": name},
    )


def bucket_already_owned_by_you(name: str) -> S3Error:
    return S3Error(
        "BucketAlreadyOwnedByYou",
        409,
        "Your previous request to create the named bucket succeeded and you already own it.",
        {"BucketName": name},
    )


# ---------------------------------------------------------------------------------------
# Sizes and time


def header_line_too_large(limit: int) -> S3Error:
    return S3Error(
        "RequestHeaderSectionTooLarge", 400, f"Your request header is over {limit} bytes."
    )


def headers_too_large(limit: int) -> S3Error:
    return S3Error(
        "RequestHeaderSectionTooLarge", 431, f"Your request's headers are over {limit} bytes."
    )


def metadata_too_large(limit: int) -> S3Error:
    return S3Error(
        "MetadataTooLarge",
        400,
        "Your metadata headers exceed the maximum allowed metadata size.",
        {"MaxMetadataSize": limit},
    )


def entity_too_large(size: int | None, limit: int) -> S3Error:
    extra = {"ProposedSize": size} if size is not None else {}
    return S3Error(
        "EntityTooLarge",
        400,
        "Your proposed upload exceeds the maximum allowed size",
        {**extra, "MaxSizeAllowed": limit},
    )


def entity_too_small(limit: int) -> S3Error:
    return S3Error(
        "EntityTooSmall",
        400,
        "Your proposed upload is smaller than the minimum allowed size",
        {"MinSizeAllowed": limit},
    )


def message_too_long() -> S3Error:
    return S3Error("MaxMessageLengthExceeded", 400, "Your request was too big.")


def missing_content_length() -> S3Error:
    return S3Error("MissingContentLength", 411, "You must provide the Content-Length HTTP header.")


def request_timeout() -> S3Error:
    return S3Error(
        "RequestTimeout",
        400,
        "Your socket connection to the server was not read from or written to within the "
        "timeout period. Idle connections will be closed.",
    )


# ---------------------------------------------------------------------------------------
# POST Object (browser uploads)


def post_fields_too_large() -> S3Error:
    return S3Error(
        "MaxPostPreDataLengthExceeded",
        400,
        "Your POST request fields preceding the upload file were too large.",
    )


def malformed_post(message: str) -> S3Error:
    return S3Error("MalformedPOSTRequest", 400, message)


def not_one_file() -> S3Error:
    return S3Error(
        "IncorrectNumberOfFilesInPostRequest",
        400,
        "POST requires exactly one file upload per request.",
    )


def invalid_policy_document(detail: str) -> S3Error:
    return S3Error("InvalidPolicyDocument", 400, f"Invalid Policy: {detail}")


def policy_failed(detail: str) -> S3Error:
    return access_denied(f"Invalid according to Policy: {detail}")


# ---------------------------------------------------------------------------------------
# CORS


def no_cors_configuration() -> S3Error:
    return S3Error("NoSuchCORSConfiguration", 404, "The CORS configuration does not exist")


def cors_forbidden(message: str) -> S3Error:
    return S3Error("AccessForbidden", 403, message, {"Method": "OPTIONS"})


# ---------------------------------------------------------------------------------------
# The gateway or what it depends on failing


def internal_error(message: str = "We encountered an internal error. Please try again.") -> S3Error:
    return S3Error("InternalError", 500, message)


def service_unavailable() -> S3Error:
    """The database could not answer: the client retries."""
    return S3Error(
        "ServiceUnavailable", 503, "The service is unavailable. Please retry your request."
    )


def store_unavailable() -> S3Error:
    return S3Error("ServiceUnavailable", 503, "The object store could not be reached.")


def store_refused_upload() -> S3Error:
    return S3Error("ServiceUnavailable", 503, "The object store refused the upload.")


def slow_down(retry_after_seconds: int | None = None) -> S3Error:
    extra = {"RetryAfterSeconds": retry_after_seconds} if retry_after_seconds is not None else None
    return S3Error("SlowDown", 503, "Please reduce your request rate.", extra)
