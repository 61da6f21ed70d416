"""S3's limits on what one request may carry, checked before any of its body is read.

Django-free. The server (gateway.serve) bounds what it buffers of a request head, with a
margin of one read; these refuse exactly, as S3 does: one header line, all headers, the
user metadata, and the body a request declares.
"""

from __future__ import annotations

from collections.abc import Mapping

from . import post_object, s3errors, sigv4
from .serve import MAX_HEAD_BYTES

# S3's limit on one PutObject or UploadPart body; multipart uploads go past it.
MAX_OBJECT_BYTES = post_object.MAX_OBJECT_BYTES
# S3's limits: one header line, and the user metadata (x-amz-meta-*) of one request.
MAX_HEADER_BYTES = 8 * 1024
MAX_METADATA_BYTES = 16 * 1024


def check_header_sizes(headers: Mapping[str, list[str]]) -> None:
    """S3's limits on what a request's headers may carry."""
    metadata = 0
    total = 0
    for name, values in headers.items():
        for value in values:
            total += len(name) + len(value) + 4
            if len(name) + len(value) > MAX_HEADER_BYTES:
                raise s3errors.header_line_too_large(MAX_HEADER_BYTES)
            if name.startswith("x-amz-meta-"):
                metadata += len(name) - len("x-amz-meta-") + len(value)
    if total > MAX_HEAD_BYTES:
        raise s3errors.headers_too_large(MAX_HEAD_BYTES)
    if metadata > MAX_METADATA_BYTES:
        raise s3errors.metadata_too_large(MAX_METADATA_BYTES)


def check_declared_size(request: sigv4.Request) -> None:
    """Refuse, before any of it is read, a body that claims more than S3 takes in one
    request: the object's bytes (x-amz-decoded-content-length for aws-chunked), or a POST
    form whose file could be no smaller."""
    headers = request.header_map or {}
    content_type = (headers.get("content-type") or [""])[0]
    if request.method == "POST" and post_object.boundary_of(content_type) is not None:
        limit = post_object.MAX_FORM_BYTES
    else:
        limit = MAX_OBJECT_BYTES
    sha256 = (headers.get("x-amz-content-sha256") or [""])[0]
    name = "x-amz-decoded-content-length" if sha256.startswith("STREAMING-") else "content-length"
    try:
        size = int((headers.get(name) or ["0"])[0])
    except ValueError:
        return  # answered as malformed where the length is read
    if size > limit:
        raise s3errors.entity_too_large(size, limit)


def undeclared_body_limit(request: sigv4.Request) -> int | None:
    """The most a body that declared no length (chunked) may carry, counted as it
    arrives; None for a body that declared one (check_declared_size has judged it)."""
    if "content-length" in (request.header_map or {}):
        return None
    return post_object.MAX_FORM_BYTES


def body_length(verified: sigv4.Verified) -> int | None:
    """The length of the (decoded) body a verified request sends on, or None when it has
    none; a body whose length cannot be known in advance is refused."""
    headers = verified.headers
    if verified.streaming:
        if verified.decoded_content_length is None:
            raise s3errors.missing_content_length()
        return verified.decoded_content_length
    values = headers.get("content-length")
    if values:
        try:
            return int(values[0])
        except ValueError:
            raise s3errors.invalid_argument("Invalid Content-Length") from None
    if "transfer-encoding" in headers:
        raise s3errors.missing_content_length()
    return None
