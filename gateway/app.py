"""The S3 endpoint: an ASGI application that verifies SigV4, authorizes, and proxies.

Serve it with ``uvicorn gateway.app:app``. For each request: read the SigV4
authentication (gateway.sigv4), look the key and the buckets up (gateway.authority, the
only module that touches Django), verify the signature, authorize, then forward to the
upstream object store re-signed with the gateway's own credentials, streaming the body
through the payload verifier both ways so memory stays flat whatever the object size.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from . import authority as auth_module
from . import sigv4
from .authority import CREATE_BUCKET, DELETE_BUCKET, LIST_BUCKETS, READ, WRITE, Authority
from .upstream import Signer
from .usage import UsageRecorder, operation_name

log = logging.getLogger(__name__)

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
# Headers that concern one connection, or that the gateway sets itself for the upstream.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
NOT_FORWARDED = HOP_BY_HOP | {
    "host",
    "authorization",
    "content-length",
    "expect",
    "x-amz-date",
    "x-amz-content-sha256",
    "x-amz-decoded-content-length",
    "x-amz-trailer",
    "x-amz-security-token",
}
# The ASGI server writes its own Date and Server.
NOT_RELAYED = HOP_BY_HOP | {"date", "server"}
# A ranged answer carries no whole-object checksum on AWS; some stores send one anyway,
# which clients then check against the range and fail.
WHOLE_OBJECT_CHECKSUM_HEADERS = frozenset(
    {*sigv4.CHECKSUM_HEADERS, "x-amz-checksum-type", "x-amz-sdk-checksum-algorithm"}
)
LIST_BUCKETS_MAX_BYTES = 16 * 1024 * 1024
# A refused request's body up to this size is read and dropped, so the connection stays
# usable; a larger one closes the connection instead.
DRAIN_MAX_BYTES = 1024 * 1024


class ClientGone(Exception):
    """The client disconnected before its body was read."""


@dataclass(slots=True)
class Target:
    """What a request addresses: bucket (None for the service), key path (raw), action."""

    bucket: str | None
    key_path: str  # raw, still percent-encoded, with its leading "/" ("" for none)
    action: str
    copy_source_bucket: str | None = None


def _forwarded_query(query: str) -> str:
    """The canonical query without the presigned-URL parameters, for the upstream."""
    if not query:
        return ""
    kept = [
        part
        for part in query.split("&")
        if part and unquote(part.partition("=")[0]) not in sigv4.PRESIGN_PARAMS
    ]
    return sigv4.canonical_query("&".join(kept))


def route(request: sigv4.Request, endpoint_host: str | None) -> Target:
    """Find the bucket (path style, or virtual-hosted under the endpoint's host name) and
    the action the request performs."""
    headers = request.header_map or {}
    host = (headers.get("host") or [""])[0].lower()
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    path = request.path or "/"
    if endpoint_host and hostname.endswith("." + endpoint_host):
        bucket: str | None = hostname[: -len(endpoint_host) - 1]
        key_path = path if path != "/" else ""
    else:
        first, slash, rest = path.lstrip("/").partition("/")
        bucket = unquote(first) or None
        key_path = slash + rest if rest else ""
    method = request.method
    query = _forwarded_query(request.query)
    if bucket is None:
        if method not in ("GET", "HEAD"):
            raise sigv4.S3Error(
                "MethodNotAllowed",
                405,
                "The specified method is not allowed against this resource.",
            )
        return Target(None, "", LIST_BUCKETS)
    copy_source = headers.get("x-amz-copy-source")
    copy_bucket = None
    if copy_source and method == "PUT":
        source = unquote(copy_source[0]).lstrip("/")
        copy_bucket = source.partition("/")[0] or None
        if copy_bucket is None:
            raise sigv4.S3Error(
                "InvalidArgument", 400, "Copy Source must mention the source bucket"
            )
    if not key_path:
        if method == "PUT" and not query:
            return Target(bucket, "", CREATE_BUCKET)
        if method == "DELETE" and not query:
            return Target(bucket, "", DELETE_BUCKET)
    action = READ if method in ("GET", "HEAD") else WRITE
    return Target(bucket, key_path, action, copy_bucket)


def _error_response(
    error: sigv4.S3Error, request_id: str, resource: str
) -> tuple[int, list, bytes]:
    body = error.to_xml(request_id, resource)
    headers = [
        (b"content-type", b"application/xml"),
        (b"content-length", str(len(body)).encode()),
        (b"x-amz-request-id", request_id.encode()),
    ]
    return error.status, headers, body


def _filter_list_buckets(body: bytes, allowed: set[str]) -> bytes:
    ET.register_namespace("", S3_NS)
    root = ET.fromstring(body)
    for container in root.iter():
        for child in list(container):
            if _local(child.tag) == "Bucket":
                names = [c.text for c in child if _local(c.tag) == "Name"]
                if not names or names[0] not in allowed:
                    container.remove(child)
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        + ET.tostring(root, encoding="utf-8").split(b"?>", 1)[-1].lstrip()
    )


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _bucket_names(body: bytes) -> list[str]:
    root = ET.fromstring(body)
    return [el.text or "" for el in root.iter() if _local(el.tag) == "Name" and el.text is not None]


class _Receiver:
    """ASGI receive, remembering whether the request body has been read to its end."""

    def __init__(self, receive) -> None:
        self._receive = receive
        self.done = False
        self.bytes = 0

    async def __call__(self) -> dict[str, Any]:
        message = await self._receive()
        self.bytes += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        return message

    async def drain(self, request: sigv4.Request) -> bool:
        """Read and drop what is left of a small body; False if the connection must close."""
        if self.done:
            return True
        headers = request.header_map or {}
        if "transfer-encoding" in headers:
            return False
        try:
            length = int((headers.get("content-length") or ["0"])[0])
        except ValueError:
            return False
        if length > DRAIN_MAX_BYTES:
            return False
        while not self.done:
            if (await self())["type"] == "http.disconnect":
                return False
        return True


class _Sender:
    """ASGI send, remembering whether the response has begun."""

    def __init__(self, send) -> None:
        self._send = send
        self.started = False
        self.status = 0
        self.bytes = 0

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            self.status = message["status"]
        else:
            self.bytes += len(message.get("body", b""))
        await self._send(message)


@dataclass(slots=True)
class Outcome:
    """What usage recording needs to know about a request once it is answered."""

    access_key_id: str | None = None
    authenticated: bool = False
    denied: bool = False
    operation: str = ""
    bucket: str = ""


def _refuse_signature_v2(request: sigv4.Request) -> None:
    authorization = (request.header_map or {}).get("authorization") or [""]
    if authorization[0].startswith("AWS ") or "AWSAccessKeyId=" in request.query:
        raise sigv4.S3Error(
            "InvalidRequest",
            400,
            "The authorization mechanism you have provided is not supported. "
            "Please use AWS4-HMAC-SHA256.",
        )


class Gateway:
    def __init__(self) -> None:
        self.authority = Authority()
        self.signing_keys = sigv4.SigningKeyCache()
        self.authority.on_invalidate.append(self.signing_keys.clear)
        upstream = auth_module.upstream()
        self.signer = Signer(
            upstream.url, upstream.access_key_id, upstream.secret_access_key, upstream.region
        )
        self.region = auth_module.region()
        self.endpoint_host = urlsplit(auth_module.endpoint()).hostname
        self.usage = UsageRecorder()
        self.flush_seconds = auth_module.usage_flush_seconds()
        self._flusher: asyncio.Task | None = None
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(300.0, connect=10.0, pool=60.0),
                limits=httpx.Limits(max_connections=512, max_keepalive_connections=64),
            )
            # Only what the client sent (and our signature) goes upstream.
            self._client.headers = httpx.Headers()
        return self._client

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        await self.flush_usage()
        if self._client is not None:
            await self._client.aclose()
        await self.authority.aclose()

    async def flush_usage(self) -> None:
        batch = self.usage.drain()
        if batch is not None and not await self.authority.send_usage(batch):
            self.usage.restore(batch)

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await self.flush_usage()
            except Exception:  # noqa: BLE001 - keep counting whatever happened
                log.exception("usage flush failed")

    async def __call__(self, scope: dict[str, Any], receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_periodically())
        request_id = secrets.token_hex(8).upper()
        request = sigv4.Request.from_asgi(scope)
        receiver = _Receiver(receive)
        sender = _Sender(send)
        outcome = Outcome()
        try:
            await self._serve(scope, request, request_id, receiver, sender, outcome)
        finally:
            if outcome.access_key_id is not None:
                self.usage.record(
                    outcome.access_key_id,
                    at=time.time(),
                    ip=(scope.get("client") or (None,))[0],
                    operation=outcome.operation,
                    bucket=outcome.bucket,
                    bytes_in=receiver.bytes,
                    bytes_out=sender.bytes,
                    status=sender.status or 499,
                    denied=outcome.denied,
                    authenticated=outcome.authenticated,
                )

    async def _serve(self, scope, request, request_id, receiver, sender, outcome) -> None:
        try:
            await self._handle(scope, request, request_id, receiver, sender, outcome)
        except ClientGone:
            return
        except Exception as error:
            if sender.started:
                # Too late for an error answer: dropping the connection tells the client
                # that the body it got is incomplete.
                log.warning("request %s failed after its answer began: %r", request_id, error)
                raise
            if not isinstance(error, sigv4.S3Error):
                log.exception("request %s failed", request_id)
                error = sigv4.S3Error(
                    "InternalError", 500, "We encountered an internal error. Please try again."
                )
            status, headers, body = _error_response(error, request_id, request.path)
            if not await receiver.drain(request):
                # Whatever is left of the body would be read as the next request.
                headers.append((b"connection", b"close"))
            await sender({"type": "http.response.start", "status": status, "headers": headers})
            await sender(
                {"type": "http.response.body", "body": b"" if request.method == "HEAD" else body}
            )

    async def _handle(
        self, scope, request: sigv4.Request, request_id: str, receive, send, outcome: Outcome
    ) -> None:
        target = route(request, self.endpoint_host)
        _refuse_signature_v2(request)
        auth = sigv4.parse(request, region=self.region)
        outcome.operation = operation_name(
            request.method,
            target.bucket is not None,
            bool(target.key_path),
            _forwarded_query(request.query),
            "x-amz-copy-source" in (request.header_map or {}),
        )
        outcome.bucket = target.bucket or ""
        names = tuple(
            {name for name in (target.bucket, target.copy_source_bucket) if name is not None}
        )
        found = await self.authority.lookup(auth.access_key_id, names)
        key = found.key
        if key is not None:
            outcome.access_key_id = key.id
            outcome.denied = not key.usable()
        key, signing_keys = auth_module.admit(auth.access_key_id, key, self.signing_keys)
        verified = sigv4.verify(auth, signing_keys)
        outcome.authenticated = True
        auth_module.check_access(
            key,
            target.action,
            found.buckets.get(target.bucket) if target.bucket else None,
            found.buckets[target.copy_source_bucket] if target.copy_source_bucket else None,
        )
        await self._proxy(scope, request, request_id, verified, key, target, receive, send)

    async def _proxy(
        self,
        scope,
        request: sigv4.Request,
        request_id: str,
        verified: sigv4.Verified,
        key: auth_module.KeyInfo,
        target: Target,
        receive,
        send,
    ) -> None:
        headers_in = verified.headers
        if target.bucket is None:
            path = "/"
        else:
            path = sigv4.canonical_uri(
                "/"
                + sigv4.quote_from_bytes(target.bucket.encode(), safe="")
                + (target.key_path or "")
            )
        query = _forwarded_query(request.query)
        forwarded: list[tuple[str, str]] = []
        streaming = verified.streaming
        for name, values in headers_in.items():
            if name in NOT_FORWARDED or name.startswith("proxy-"):
                continue
            if streaming and name == "x-amz-sdk-checksum-algorithm" and verified.trailers:
                # The checksum travels in the trailer, which is not forwarded.
                continue
            if name == "content-encoding":
                value = sigv4.strip_aws_chunked(",".join(values))
                if value:
                    forwarded.append((name, value))
                continue
            forwarded.append((name, ",".join(values)))
        if "accept-encoding" not in headers_in:
            forwarded.append(("accept-encoding", "identity"))

        length = self._body_length(verified, headers_in)
        if length is not None:
            forwarded.append(("content-length", str(length)))
        url, out_headers = self.signer.sign(request.method, path, query, forwarded)
        failure: list[BaseException] = []
        content = self._body(verified, key, receive, failure) if length is not None else None
        upstream_request = self.client.build_request(
            request.method,
            url,
            headers=[(n.encode("latin-1"), v.encode("latin-1")) for n, v in out_headers],
            content=content,
        )
        try:
            response = await self.client.send(upstream_request, stream=True)
        except Exception as error:
            if failure:
                raise failure[0] from None
            log.warning("upstream request failed: %r", error)
            raise sigv4.S3Error(
                "ServiceUnavailable", 503, "The object store could not be reached."
            ) from None
        try:
            if failure:
                raise failure[0]
            await self._respond(request, request_id, key, target, response, send, scope)
        finally:
            await response.aclose()

    @staticmethod
    def _body_length(verified: sigv4.Verified, headers: dict[str, list[str]]) -> int | None:
        if verified.streaming:
            if verified.decoded_content_length is None:
                raise sigv4.S3Error(
                    "MissingContentLength", 411, "You must provide the Content-Length HTTP header."
                )
            return verified.decoded_content_length
        values = headers.get("content-length")
        if values:
            try:
                return int(values[0])
            except ValueError:
                raise sigv4.S3Error("InvalidArgument", 400, "Invalid Content-Length") from None
        if "transfer-encoding" in headers:
            raise sigv4.S3Error(
                "MissingContentLength", 411, "You must provide the Content-Length HTTP header."
            )
        return None

    async def _body(self, verified: sigv4.Verified, key, receive, failure: list):
        """The verified, decoded request body; the last piece only once all of it checked
        out and the key is still usable, so the upstream never completes a bad upload."""
        verifier = verified.body()
        try:
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone()
                more = message.get("more_body", False)
                piece = verifier.feed(message.get("body", b""))
                if piece:
                    yield piece
            tail = verifier.finish()
            # A revoke during the upload refuses its end, so the object is never written.
            if verifier.decoded_length and not await self.authority.still_usable(key.id):
                raise sigv4.invalid_access_key_id(key.id)
        except (sigv4.S3Error, ClientGone) as error:
            failure.append(error)
            raise
        if tail:
            yield tail

    async def _respond(self, request, request_id, key, target, response, send, scope) -> None:
        status = response.status_code
        headers = [
            (name.lower(), value)
            for name, value in response.headers.raw
            if name.lower().decode("latin-1") not in NOT_RELAYED
        ]
        if (
            status == 200
            and "range" in request.header_map
            and response.headers.get("content-range")
        ):
            # rclone serve s3 answers a range with 200 and the range's bytes.
            status = 206
        if status == 206:
            headers = [
                (n, v)
                for n, v in headers
                if n.decode("latin-1") not in WHOLE_OBJECT_CHECKSUM_HEADERS
            ]
        ip = (scope.get("client") or (None,))[0]
        if target.action == LIST_BUCKETS and status == 200 and request.method == "GET":
            body = await self._read_limited(response)
            allowed = await self.authority.org_bucket_names(key.org_id, _bucket_names(body))
            body = _filter_list_buckets(body, allowed)
            headers = [(n, v) for n, v in headers if n != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if target.action == CREATE_BUCKET and status == 200:
            if not await self.authority.bucket_created(key.id, target.bucket, ip, request_id):
                log.error("bucket %s created upstream but owned by another org", target.bucket)
        elif target.action == DELETE_BUCKET and status in (200, 204):
            await self.authority.bucket_deleted(key.id, target.bucket, ip, request_id)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        async for piece in response.aiter_raw():
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    async def _read_limited(response: httpx.Response) -> bytes:
        parts = []
        size = 0
        async for piece in response.aiter_raw():
            size += len(piece)
            if size > LIST_BUCKETS_MAX_BYTES:
                raise sigv4.S3Error("InternalError", 500, "The bucket list is too large.")
            parts.append(piece)
        return b"".join(parts)


app = Gateway()
