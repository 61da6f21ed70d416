"""What of a request goes on to the store, and what of the store's answer comes back.

Django-free. Upstream goes exactly the authorized bucket and object (the operation's
path and copy source, never the client's spelling of them), the query less presigning's
parameters, and only the headers S3 reads; back come the store's status and headers less
those that concern one connection or that the gateway decides itself (CORS), and the body
streamed piece by piece.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from . import http1, operations, s3errors, sigv4
from .operations import Operation

# What goes upstream of a client's headers: S3's own (x-amz-*, less those the gateway sets
# or that describe the client's signature) and the plain HTTP ones S3 reads. Anything else
# (X-Forwarded-Host, Cookie, method overrides) could make the store read a request other
# than the one authorized.
FORWARDED_HEADERS = frozenset(
    {
        "accept-encoding",
        "cache-control",
        "content-disposition",
        "content-encoding",
        "content-language",
        "content-md5",
        "content-type",
        "expires",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-unmodified-since",
        "range",
    }
)
NOT_FORWARDED = {
    "x-amz-date",
    "x-amz-content-sha256",
    "x-amz-decoded-content-length",
    "x-amz-trailer",
    "x-amz-security-token",
}
# What comes back of the store's answer: S3's own headers (x-amz-*, user metadata
# included) and the plain HTTP ones S3 answers with. The ASGI server writes its own Date
# and Server, gateway.cors alone decides what a browser may do (a store may allow
# everything to everyone), and a store's own headers (SeaweedFS's Seaweed-*, rclone's)
# describe the store, not the object.
RELAYED = frozenset(
    {
        "accept-ranges",
        "cache-control",
        "content-disposition",
        "content-encoding",
        "content-language",
        "content-length",
        "content-range",
        "content-type",
        "etag",
        "expires",
        "last-modified",
        "location",
        "retry-after",
    }
)
RELAYED_PREFIX = "x-amz-"


def is_relayed(name: str) -> bool:
    """Does a header of the store's answer (lowercase) go on to the client?"""
    return name in RELAYED or name.startswith(RELAYED_PREFIX)


# A ranged answer carries no whole-object checksum on AWS; some stores send one anyway,
# which clients then check against the range and fail.
WHOLE_OBJECT_CHECKSUM_HEADERS = frozenset(
    {*sigv4.CHECKSUM_HEADERS, "x-amz-checksum-type", "x-amz-sdk-checksum-algorithm"}
)
Headers = list[tuple[bytes, bytes]]


def forwarded_query(query: str) -> str:
    """The canonical query without the presigned-URL parameters, for the upstream."""
    if not query:
        return ""
    kept = [
        part
        for part in query.split("&")
        if part and unquote(part.partition("=")[0]) not in sigv4.PRESIGN_PARAMS
    ]
    return sigv4.canonical_query("&".join(kept))


def forwarded_headers(verified: sigv4.Verified, operation: Operation) -> list[tuple[str, str]]:
    """The client's headers that go upstream with the authorized operation."""
    headers_in = verified.headers
    forwarded: list[tuple[str, str]] = []
    for name, values in headers_in.items():
        if name in NOT_FORWARDED or not (name in FORWARDED_HEADERS or name.startswith("x-amz-")):
            continue
        if verified.streaming and name == "x-amz-sdk-checksum-algorithm" and verified.trailers:
            # The checksum travels in the trailer, which is not forwarded.
            continue
        if name == "content-encoding":
            value = sigv4.strip_aws_chunked(",".join(values))
            if value:
                forwarded.append((name, value))
            continue
        if name == operations.COPY_SOURCE_HEADER:
            # Exactly the source that was authorized, however the client spelled it.
            assert operation.copy_source is not None
            forwarded.append((name, operation.copy_source.header()))
            continue
        forwarded.append((name, ",".join(values)))
    if "accept-encoding" not in headers_in:
        forwarded.append(("accept-encoding", "identity"))
    return forwarded


def relayed(response: http1.Response, request: sigv4.Request) -> tuple[int, Headers]:
    """The status and headers of the store's answer as the client gets them."""
    status = response.status_code
    headers = [
        (name.lower(), value)
        for name, value in response.headers.raw
        if is_relayed(name.lower().decode("latin-1"))
    ]
    headers.extend(s3errors.SECURITY_HEADERS)
    if (
        status == 200
        and "range" in (request.header_map or {})
        and response.headers.get("content-range")
    ):
        # rclone serve s3 answers a range with 200 and the range's bytes.
        status = 206
    if status == 206:
        headers = [
            (n, v) for n, v in headers if n.decode("latin-1") not in WHOLE_OBJECT_CHECKSUM_HEADERS
        ]
    return status, headers


async def send_whole(send: Any, status: int, headers: Headers, body: bytes) -> None:
    """An answer whose body is all at hand, with its length."""
    headers = [(n, v) for n, v in headers if n != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def stream(send: Any, status: int, headers: Headers, response: http1.Response) -> None:
    """The store's answer, its body passed on piece by piece as it arrives."""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    # Each piece is passed on once the next has come, so the last goes out as the end of
    # the answer (one write to the client, not two).
    held = b""
    async for piece in response.aiter_raw():
        if held:
            await send({"type": "http.response.body", "body": held, "more_body": True})
        held = piece
    await send({"type": "http.response.body", "body": held})
