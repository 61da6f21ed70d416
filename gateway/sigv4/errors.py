"""S3 errors, AWS's XML error body, and the constructors of the errors the other modules raise."""

from __future__ import annotations

import re
from collections.abc import Mapping

_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


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
