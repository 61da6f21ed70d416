"""The S3 endpoint: an ASGI application that verifies SigV4, authorizes, and proxies.

Serve it with ``python -m gateway.serve`` (uvicorn with a cap on request heads, and
limits on how long a head may take and how many requests run at once). For each request:
refuse a body larger than S3 takes in one request, classify it and validate every name it
touches (gateway.operations), read the SigV4 authentication (gateway.sigv4), look the key
and the buckets up (gateway.authority, the only module that touches Django), verify the
signature, authorize the classified operation, then forward exactly the authorized bucket
and object to the upstream object store, re-signed with the gateway's own credentials,
streaming the body through the payload verifier both ways so memory stays flat whatever
the object size.

Every wait has a limit: on the store, each connect and each read or write; on the client,
each pause of the request body (400 RequestTimeout, the upload to the store aborted) and of
its reading the answer (the connection closed). A store that fails or does not answer in
time is 503 ServiceUnavailable; once an answer has begun, the connection is closed instead,
so the client sees a short body.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import httpx

from excloud_portal.logs import bind_request_id

from . import authority as auth_module
from . import cors, health, metrics, names, operations, post_object, sigv4
from .authority import Authority
from .guard import FailureGuard
from .operations import Operation
from .post_object import ClientGone
from .serve import MAX_HEAD_BYTES
from .upstream import Signer
from .usage import UsageRecorder

log = logging.getLogger(__name__)
T = TypeVar("T")

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
# The ASGI server writes its own Date and Server, and gateway.cors alone decides what a
# browser may do (a store may allow everything to everyone).
NOT_RELAYED = HOP_BY_HOP | {
    "date",
    "server",
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-expose-headers",
    "access-control-max-age",
    "vary",
}
# A ranged answer carries no whole-object checksum on AWS; some stores send one anyway,
# which clients then check against the range and fail.
WHOLE_OBJECT_CHECKSUM_HEADERS = frozenset(
    {*sigv4.CHECKSUM_HEADERS, "x-amz-checksum-type", "x-amz-sdk-checksum-algorithm"}
)
LIST_BUCKETS_MAX_BYTES = 16 * 1024 * 1024
# A refused request's body up to this size is read and dropped, so the connection stays
# usable; a larger one closes the connection instead.
DRAIN_MAX_BYTES = 1024 * 1024
# S3's limit on one PutObject or UploadPart body; multipart uploads go past it.
MAX_OBJECT_BYTES = post_object.MAX_OBJECT_BYTES
# S3's limits: one header line, and the user metadata (x-amz-meta-*) of one request.
MAX_HEADER_BYTES = 8 * 1024
MAX_METADATA_BYTES = 16 * 1024
# Object responses are served from the S3 origin; a browser must never sniff them into
# something executable.
SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"),)


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


def check_header_sizes(headers: dict[str, list[str]]) -> None:
    """S3's limits on what a request's headers may carry. The server (gateway.serve) bounds
    what it buffers of a head, with a margin of one read; this refuses exactly."""
    metadata = 0
    total = 0
    for name, values in headers.items():
        for value in values:
            total += len(name) + len(value) + 4
            if len(name) + len(value) > MAX_HEADER_BYTES:
                raise sigv4.S3Error(
                    "RequestHeaderSectionTooLarge",
                    400,
                    f"Your request header is over {MAX_HEADER_BYTES} bytes.",
                )
            if name.startswith("x-amz-meta-"):
                metadata += len(name) - len("x-amz-meta-") + len(value)
    if total > MAX_HEAD_BYTES:
        raise sigv4.S3Error(
            "RequestHeaderSectionTooLarge",
            431,
            f"Your request's headers are over {MAX_HEAD_BYTES} bytes.",
        )
    if metadata > MAX_METADATA_BYTES:
        raise sigv4.S3Error(
            "MetadataTooLarge",
            400,
            "Your metadata headers exceed the maximum allowed metadata size.",
            {"MaxMetadataSize": MAX_METADATA_BYTES},
        )


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
        raise entity_too_large(size, limit)


def entity_too_large(size: int | None, limit: int) -> sigv4.S3Error:
    extra = {"ProposedSize": size} if size is not None else {}
    return sigv4.S3Error(
        "EntityTooLarge",
        400,
        "Your proposed upload exceeds the maximum allowed size",
        {**extra, "MaxSizeAllowed": limit},
    )


def request_timeout() -> sigv4.S3Error:
    return sigv4.S3Error(
        "RequestTimeout",
        400,
        "Your socket connection to the server was not read from or written to within the "
        "timeout period. Idle connections will be closed.",
    )


def _error_response(
    error: sigv4.S3Error, request_id: str, resource: str
) -> tuple[int, list, bytes]:
    body = error.to_xml(request_id, resource)
    headers = [
        (b"content-type", b"application/xml"),
        (b"content-length", str(len(body)).encode()),
        (b"x-amz-request-id", request_id.encode()),
        *SECURITY_HEADERS,
    ]
    if error.status == 503:
        retry_after = error.extra.get("RetryAfterSeconds", "1")
        headers.append((b"retry-after", retry_after.encode()))
    return error.status, headers, body


def _filter_list_buckets(body: bytes, allowed: set[str]) -> bytes:
    ET.register_namespace("", S3_NS)
    root = ET.fromstring(body)
    for container in list(root.iter()):
        for child in list(container):
            if _local(child.tag) == "ContinuationToken":
                container.remove(child)
            elif _local(child.tag) == "Bucket":
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
    """ASGI receive, remembering whether the request body has been read to its end.

    Each wait for the next piece of the body is limited to ``timeout`` seconds (a client
    that stops sending is answered RequestTimeout), and a body that declared no length is
    refused once it passes ``limit`` bytes."""

    def __init__(self, receive, timeout: float, limit: int | None = None) -> None:
        self._receive = receive
        self._timeout = timeout
        self._limit = limit
        self.done = False
        self.timed_out = False
        self.bytes = 0

    async def __call__(self) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self._timeout):
                message = await self._receive()
        except TimeoutError:
            self.timed_out = True
            raise request_timeout() from None
        self.bytes += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.done = True
        if self._limit is not None and self.bytes > self._limit:
            raise entity_too_large(None, self._limit)
        return message

    async def drain(self, request: sigv4.Request) -> bool:
        """Read and drop what is left of a small body; False if the connection must close."""
        if self.done:
            return True
        if self.timed_out:
            return False
        headers = request.header_map or {}
        if "transfer-encoding" in headers:
            return False
        try:
            length = int((headers.get("content-length") or ["0"])[0])
        except ValueError:
            return False
        if length > DRAIN_MAX_BYTES:
            return False
        try:
            while not self.done:
                if (await self())["type"] == "http.disconnect":
                    return False
        except sigv4.S3Error:
            return False
        return True


class ClientStalled(Exception):
    """The client stopped reading the answer."""


class _Sender:
    """ASGI send, remembering whether the response has begun.

    Each piece of a response body must be taken by the client within ``timeout`` seconds
    (the server waits while the client reads too slowly for its buffers to drain): a client
    that stops reading gets its connection closed, and the store's connection is freed."""

    def __init__(self, send, timeout: float) -> None:
        self._send = send
        self._timeout = timeout
        self.started = False
        self.status = 0
        self.bytes = 0

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            self.status = message["status"]
            await self._send(message)
            return
        self.bytes += len(message.get("body", b""))
        try:
            async with asyncio.timeout(self._timeout):
                await self._send(message)
        except TimeoutError:
            raise ClientStalled() from None


@dataclass(slots=True)
class Exchange:
    """One request on its way through the gateway, and what usage recording needs to
    know once it is answered."""

    request: sigv4.Request
    request_id: str
    receive: _Receiver
    send: _Sender
    ip: str | None
    operation: Operation | None = None
    # The key the request was signed with: set only once its signature verified.
    access_key_id: str | None = None
    authenticated: bool = False
    denied: bool = False
    # A key ID the request named without authenticating (a denied attempt).
    claimed_key_id: str | None = None
    failures: list[BaseException] = field(default_factory=list)
    # This request claimed its CreateBucket's name, to give back if the store refuses.
    claimed_bucket: bool = False
    # The S3 error code the request was answered with, if any.
    error_code: str | None = None


def _signature_v2_refused() -> sigv4.S3Error:
    return sigv4.S3Error(
        "InvalidRequest",
        400,
        "The authorization mechanism you have provided is not supported. "
        "Please use AWS4-HMAC-SHA256.",
    )


def _refuse_signature_v2(request: sigv4.Request) -> None:
    authorization = (request.header_map or {}).get("authorization") or [""]
    if authorization[0].startswith("AWS ") or "AWSAccessKeyId=" in request.query:
        raise _signature_v2_refused()


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
        self.endpoint_url = auth_module.endpoint().rstrip("/")
        self.endpoint_host = urlsplit(self.endpoint_url).hostname
        self.usage = UsageRecorder()
        self.probes = health.Probes(self.signer)
        self.guard = FailureGuard(*auth_module.failure_limit())
        self.flush_seconds = auth_module.usage_flush_seconds()
        self.upstream_timeouts = auth_module.upstream_timeouts()
        self.body_timeout = auth_module.body_timeout_seconds()
        self._flusher: asyncio.Task | None = None
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            # Every wait on the store is limited: connecting, and each read or write (not
            # a whole transfer, so a long healthy one is never cut), and the wait for a
            # free connection.
            connect, between_bytes = self.upstream_timeouts
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(between_bytes, connect=connect),
                transport=metrics.CountingTransport(
                    limits=httpx.Limits(max_connections=512, max_keepalive_connections=64)
                ),
            )
            # Only what the client sent (and our signature) goes upstream: no Accept,
            # User-Agent or Connection of httpx's own (assigning headers keeps those).
            for name in list(self._client.headers):
                del self._client.headers[name]
        return self._client

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        await self.flush_usage()
        if self._client is not None:
            await self._client.aclose()
        await self.probes.aclose()
        await self.authority.aclose()

    async def flush_usage(self) -> None:
        """Send the usage batches, oldest first; keep the ones the broker did not take."""
        batches = self.usage.outgoing()
        for index, batch in enumerate(batches):
            if not await self.authority.send_usage(batch):
                for unsent in batches[index:]:
                    self.usage.restore(unsent)
                return

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
        request = sigv4.Request.from_asgi(scope)
        if self.probes.wants(request, scope):
            await self.probes.answer(request, send)
            return
        started = time.perf_counter()
        # A body without a declared length (chunked) is counted as it arrives.
        undeclared = "content-length" not in (request.header_map or {})
        exchange = Exchange(
            request,
            secrets.token_hex(8).upper(),
            _Receiver(
                receive, self.body_timeout, post_object.MAX_FORM_BYTES if undeclared else None
            ),
            _Sender(send, self.body_timeout),
            (scope.get("client") or (None,))[0],
        )
        bind_request_id(exchange.request_id)
        try:
            await self._serve(exchange)
        finally:
            self._count(exchange)
            metrics.request_done(exchange, time.perf_counter() - started)

    def _count(self, exchange: Exchange) -> None:
        now = time.time()
        if exchange.access_key_id is not None:
            operation = exchange.operation
            self.usage.record(
                exchange.access_key_id,
                at=now,
                ip=exchange.ip,
                operation=operation.name if operation else "",
                bucket=(operation.bucket or "") if operation else "",
                bytes_in=exchange.receive.bytes,
                bytes_out=exchange.send.bytes,
                status=exchange.send.status or 499,
                denied=exchange.denied,
                authenticated=exchange.authenticated,
            )
        elif exchange.claimed_key_id is not None:
            self.usage.record_denied_attempt(
                auth_module.counted_key_id(exchange.claimed_key_id), at=now, ip=exchange.ip
            )

    async def _serve(self, exchange: Exchange) -> None:
        request = exchange.request
        try:
            await self._handle(exchange)
        except ClientGone:
            return
        except Exception as error:
            if exchange.send.started:
                # Too late for an error answer: dropping the connection tells the client
                # that the body it got is incomplete. An answer left unfinished makes the
                # server drop it, as an exception does; only a bug needs the traceback.
                log.warning(
                    "request %s failed after its answer began: %r", exchange.request_id, error
                )
                if isinstance(error, (httpx.TransportError, ClientStalled)):
                    return
                raise
            if isinstance(error, httpx.TransportError):
                log.warning("request %s: the store failed: %r", exchange.request_id, error)
                error = _store_unavailable()
            elif not isinstance(error, sigv4.S3Error):
                log.exception("request %s failed", exchange.request_id)
                error = sigv4.S3Error(
                    "InternalError", 500, "We encountered an internal error. Please try again."
                )
            exchange.error_code = error.code
            status, headers, body = _error_response(error, exchange.request_id, request.path)
            if error.status == 431 or not await exchange.receive.drain(request):
                # Whatever is left of the body would be read as the next request (and a
                # client that sent an oversized head is not worth keeping).
                headers.append((b"connection", b"close"))
            start = {"type": "http.response.start", "status": status, "headers": headers}
            await exchange.send(start)
            await exchange.send(
                {"type": "http.response.body", "body": b"" if request.method == "HEAD" else body}
            )

    async def _handle(self, exchange: Exchange) -> None:
        request = exchange.request
        headers = request.header_map or {}
        check_header_sizes(headers)
        check_declared_size(request)
        if request.method == "OPTIONS":
            await self._preflight(exchange)
            return
        if request.method == "POST":
            boundary = post_object.boundary_of((headers.get("content-type") or [""])[0])
            if boundary is not None:
                await self._post_object(exchange, boundary)
                return
        _refuse_signature_v2(request)
        # Names are validated before anything else is decided, the key included.
        operation = operations.classify(
            request.method, request.path, request.query, headers, self.endpoint_host
        )
        exchange.operation = operation
        auth = sigv4.parse(request, region=self.region)
        key, verified, owners = await self._authenticate(
            exchange,
            auth.access_key_id,
            operation,
            lambda signing_keys: sigv4.verify(auth, signing_keys),
        )
        auth_module.check_access(key, operation, owners)
        body = None
        if operation.reads_body_first:
            body = await self._read_small_body(verified, key, exchange)
        if operation.name == "DeleteObjects":
            operation = exchange.operation = operations.with_deleted_objects(operation, body)
            auth_module.check_access(key, operation, owners)
        if operation.answered_here:
            await self._answer_cors_configuration(exchange, key, operation, body)
            return
        if operation.name == auth_module.CREATE_BUCKET:
            await self._claim_bucket(exchange, key, operation)
        await self._proxy(exchange, verified, key, operation, body)

    async def _authenticate(
        self,
        exchange: Exchange,
        access_key_id: str,
        operation: Operation,
        verify: Callable[[sigv4.SigningKeyProvider], T],
    ) -> tuple[auth_module.KeyInfo, T, dict[str, int | None]]:
        """The usable key whose secret made the request's signature (``verify`` checks it),
        what ``verify`` returned, and the owners of the operation's buckets; or S3Error,
        with the failure counted against the source."""
        now = time.monotonic()
        self.guard.check(exchange.ip, now)
        if not auth_module.well_formed_key_id(access_key_id):
            exchange.claimed_key_id = access_key_id
            self.guard.failed(exchange.ip, now)
            raise sigv4.invalid_access_key_id(access_key_id)
        found = await self.authority.lookup(access_key_id, operation.buckets)
        metrics.key_looked_up(self.authority)
        key = found.key
        try:
            verified = auth_module.authenticate(access_key_id, key, self.signing_keys, verify)
        except sigv4.S3Error:
            exchange.claimed_key_id = access_key_id
            self.guard.failed(exchange.ip, now)
            raise
        # Signed with this key's secret: from here on the request counts as the key's.
        assert key is not None
        exchange.access_key_id = key.id
        if not key.usable():
            exchange.denied = True
            self.guard.failed(exchange.ip, now)
        auth_module.require_usable(key)
        exchange.authenticated = True
        return key, verified, found.owners

    async def _post_object(self, exchange: Exchange, boundary: bytes) -> None:
        """A browser upload: a multipart form signed by a POST policy, stored as a
        PutObject of the form's key, read and forwarded as it streams."""
        request = exchange.request
        headers = request.header_map or {}
        bucket = operations.post_object_bucket(
            request.path, request.query, headers, self.endpoint_host
        )
        reader = post_object.FormReader(boundary, exchange.receive)
        fields, file = await reader.fields()
        if "awsaccesskeyid" in fields or "signature" in fields:
            raise _signature_v2_refused()
        for name in ("key", "policy", "x-amz-algorithm", "x-amz-credential", "x-amz-date"):
            if name not in fields:
                raise sigv4.S3Error(
                    "InvalidArgument", 400, f"Bucket POST must contain a field named '{name}'."
                )
        if fields["x-amz-algorithm"] != sigv4.ALGORITHM or "x-amz-signature" not in fields:
            raise sigv4.S3Error(
                "InvalidArgument",
                400,
                "POST requires x-amz-algorithm AWS4-HMAC-SHA256 and x-amz-signature.",
            )
        if fields.get("acl", "private") != "private":
            raise operations.not_implemented("the acl field (ACLs)")
        access_key_id, date = sigv4.parse_post_credential(
            fields["x-amz-credential"], fields["x-amz-date"], region=self.region
        )
        name = names.check_object_name(post_object.object_key(fields["key"], file.filename))
        operation = exchange.operation = operations.put_object(bucket, name)
        policy = post_object.Policy.parse(fields["policy"])

        def verify(signing_keys: sigv4.SigningKeyProvider) -> None:
            expected = sigv4.signature(
                signing_keys(access_key_id, date, self.region), fields["policy"]
            )
            sigv4.check_signature(
                expected, fields["x-amz-signature"], access_key_id, fields["policy"]
            )

        key, _, owners = await self._authenticate(exchange, access_key_id, operation, verify)
        auth_module.check_access(key, operation, owners)
        length = policy.check(fields, bucket)
        upload_headers = post_object.object_headers(fields, file)
        etag = await post_object.store(
            self._ask_upstream,
            operation.upstream_path(),
            upload_headers,
            reader.file(),
            length,
            lambda: self.authority.still_usable(key.id),
        )
        status, body, answer = post_object.answer(fields, bucket, name, etag, self.endpoint_url)
        answer.extend(await self._cors_headers(exchange, bucket))
        await self._answer(exchange, status, body, answer)

    async def _preflight(self, exchange: Exchange) -> None:
        """Answer a CORS preflight from the bucket's rules. It carries no credentials, so a
        bucket no org holds answers as one without rules: nothing about it is told."""
        request = exchange.request
        headers = request.header_map or {}
        bucket, _ = operations.preflight_target(request.path, headers, self.endpoint_host)
        rules = cors.from_json(await self.authority.bucket_cors(bucket))
        allowed = cors.preflight(
            rules,
            (headers.get("origin") or [None])[0],
            (headers.get("access-control-request-method") or [None])[0],
            ",".join(headers.get("access-control-request-headers") or []),
        )
        await self._answer(exchange, 200, b"", allowed)

    async def _answer_cors_configuration(
        self,
        exchange: Exchange,
        key: auth_module.KeyInfo,
        operation: Operation,
        body: bytes | None,
    ) -> None:
        """GetBucketCors, PutBucketCors and DeleteBucketCors, kept with the org's bucket."""
        if operation.name == "GetBucketCors":
            rules = cors.from_json(await self.authority.bucket_cors(operation.bucket))
            if not rules:
                raise cors.no_configuration()
            await self._answer(
                exchange, 200, cors.to_xml(rules), [(b"content-type", b"application/xml")]
            )
            return
        rules_json = None
        if operation.name == "PutBucketCors":
            rules_json = cors.to_json(cors.parse_configuration(body or b""))
        await self.authority.set_bucket_cors(
            key.id, operation.bucket, rules_json, exchange.ip, exchange.request_id
        )
        await self._answer(exchange, 200 if rules_json is not None else 204, b"", [])

    async def _cors_headers(self, exchange: Exchange, bucket: str) -> list[tuple[bytes, bytes]]:
        """The CORS headers an answer about ``bucket`` carries for the request's Origin."""
        request = exchange.request
        origin = (request.header_map or {}).get("origin")
        if not origin:
            return []
        rules = cors.from_json(await self.authority.bucket_cors(bucket))
        return cors.actual(rules, origin[0], request.method)

    async def _answer(
        self, exchange: Exchange, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """A whole answer the gateway makes itself."""
        headers = [
            *headers,
            (b"content-length", str(len(body)).encode()),
            (b"x-amz-request-id", exchange.request_id.encode()),
            *SECURITY_HEADERS,
        ]
        await exchange.send({"type": "http.response.start", "status": status, "headers": headers})
        await exchange.send({"type": "http.response.body", "body": body})

    async def _claim_bucket(
        self, exchange: Exchange, key: auth_module.KeyInfo, operation: Operation
    ) -> None:
        """Claim the bucket's name for the key's org before the store creates it (check_access
        let only names no org holds through); refuse a name the store already holds for
        nobody (it would hand over its contents)."""
        if await self._exists_upstream(operation):
            raise auth_module.bucket_already_exists(operation.bucket)
        claim = await self.authority.claim_bucket(
            key.id, operation.bucket, exchange.ip, exchange.request_id
        )
        # Another request got the name between the lookup and the claim.
        if claim == "owned":
            raise auth_module.bucket_already_owned_by_you(operation.bucket)
        if claim == "taken":
            raise auth_module.bucket_already_exists(operation.bucket)
        exchange.claimed_bucket = True

    async def _ask_upstream(
        self,
        method: str,
        path: str,
        query: str = "",
        headers: list[tuple[str, str]] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """One whole request of the gateway's own to the store (raises httpx.HTTPError)."""
        headers = list(headers or [])
        body = None
        if content is not None:
            headers.append(("content-length", str(len(content))))
            # Sent from an iterator, not as bytes: httpx's response keeps its request in a
            # reference cycle, and a request holding bytes would keep each 8 MiB part of a
            # POST upload alive until the cycle collector happened to run.
            body = _once(content)
        url, signed = self.signer.sign(method, path, query, headers)
        request = self.client.build_request(method, url, headers=signed, content=body)
        request.extensions["target"] = self._target(path, query)
        return await self.client.send(request)

    async def _exists_upstream(self, operation: Operation) -> bool:
        try:
            response = await self._ask_upstream("HEAD", operation.upstream_path())
        except httpx.HTTPError as error:
            log.warning("upstream HeadBucket failed: %r", error)
            raise _store_unavailable() from None
        if response.status_code >= 500:
            raise _store_unavailable()
        # 404: free. 200: ours already. 403 and 301 (another account's, elsewhere): taken.
        return response.status_code != 404

    async def _holds_objects(self, operation: Operation) -> bool:
        """Does the bucket hold any object? Asked of a bucket just created; when the store
        cannot say, the answer is yes, so nothing is handed over on a guess."""
        try:
            response = await self._ask_upstream(
                "GET", operation.upstream_path(), "list-type=2&max-keys=1"
            )
        except httpx.HTTPError as error:
            log.warning("upstream ListObjectsV2 after CreateBucket failed: %r", error)
            return True
        return response.status_code != 200 or b"<Key>" in response.content

    def _target(self, path: str, query: str) -> bytes:
        """The request target to send upstream, byte for byte: the HTTP client must not
        resolve dot segments or re-encode anything in it."""
        return (self.signer.prefix + path + ("?" + query if query else "")).encode("ascii")

    async def _read_small_body(
        self, verified: sigv4.Verified, key: auth_module.KeyInfo, exchange: Exchange
    ) -> bytes:
        """The whole verified body of a request that is decided on its body."""
        pieces = []
        size = 0
        async for piece in self._body(verified, key, exchange):
            size += len(piece)
            if size > operations.MAX_SMALL_BODY:
                raise sigv4.S3Error("MaxMessageLengthExceeded", 400, "Your request was too big.")
            pieces.append(piece)
        return b"".join(pieces)

    async def _proxy(
        self,
        exchange: Exchange,
        verified: sigv4.Verified,
        key: auth_module.KeyInfo,
        operation: Operation,
        body: bytes | None,
    ) -> None:
        request = exchange.request
        headers_in = verified.headers
        path = operation.upstream_path()
        # ListBuckets is answered whole and filtered here (a page of the store's own list,
        # with its continuation token, would speak of other orgs' buckets).
        query = "" if operation.name == "ListBuckets" else _forwarded_query(request.query)
        forwarded: list[tuple[str, str]] = []
        streaming = verified.streaming
        for name, values in headers_in.items():
            if name in NOT_FORWARDED or not (
                name in FORWARDED_HEADERS or name.startswith("x-amz-")
            ):
                continue
            if streaming and name == "x-amz-sdk-checksum-algorithm" and verified.trailers:
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

        if body is not None:
            length: int | None = len(body)
            content: Any = body
        else:
            length = self._body_length(verified, headers_in)
            content = self._body(verified, key, exchange) if length is not None else None
        if length is not None:
            forwarded.append(("content-length", str(length)))
        url, out_headers = self.signer.sign(request.method, path, query, forwarded)
        upstream_request = self.client.build_request(
            request.method,
            url,
            headers=[(n.encode("latin-1"), v.encode("latin-1")) for n, v in out_headers],
            content=content,
        )
        upstream_request.extensions["target"] = self._target(path, query)
        try:
            response = await self.client.send(upstream_request, stream=True)
        except Exception as error:
            await self._creation_failed(exchange, key, operation, 503)
            if exchange.failures:
                raise exchange.failures[0] from None
            log.warning("upstream request failed: %r", error)
            raise _store_unavailable() from None
        try:
            if exchange.failures:
                if not 200 <= response.status_code < 300:
                    await self._creation_failed(exchange, key, operation, response.status_code)
                raise exchange.failures[0]
            await self._respond(exchange, key, operation, response)
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

    async def _body(self, verified: sigv4.Verified, key, exchange: Exchange):
        """The verified, decoded request body; the last piece only once all of it checked
        out and the key is still usable, so the upstream never completes a bad upload."""
        verifier = verified.body()
        receive = exchange.receive
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
            exchange.failures.append(error)
            raise
        if tail:
            yield tail

    async def _settle_claim(
        self,
        exchange: Exchange,
        key: auth_module.KeyInfo,
        operation: Operation,
        status: int,
    ) -> None:
        """Keep or give back the name this CreateBucket claimed, by what the store said."""
        if 200 <= status < 300:
            if await self._holds_objects(operation):
                # Some stores answer 200 for a bucket they already have (and one with a
                # stale listing may not have said so when asked): what was there stays
                # nobody's.
                await self._creation_failed(exchange, key, operation, 409)
                raise auth_module.bucket_already_exists(operation.bucket)
        elif status == 409 and not await self._holds_objects(operation):
            # Created in the store after this request claimed the name: only the org's own
            # requests could ask for it since, so it stays the org's.
            return
        else:
            await self._creation_failed(exchange, key, operation, status)

    async def _creation_failed(
        self, exchange: Exchange, key: auth_module.KeyInfo, operation: Operation, status: int
    ) -> None:
        """Give back the name a refused CreateBucket claimed (and only then: a bucket the
        org held before this request stays the org's whatever the store answers)."""
        if exchange.claimed_bucket:
            await self.authority.release_bucket_claim(
                key.id, operation.bucket, exchange.ip, exchange.request_id, status
            )

    async def _respond(
        self,
        exchange: Exchange,
        key: auth_module.KeyInfo,
        operation: Operation,
        response: httpx.Response,
    ) -> None:
        request = exchange.request
        send = exchange.send
        status = response.status_code
        headers = [
            (name.lower(), value)
            for name, value in response.headers.raw
            if name.lower().decode("latin-1") not in NOT_RELAYED
        ]
        headers.extend(SECURITY_HEADERS)
        if operation.bucket is not None:
            headers.extend(await self._cors_headers(exchange, operation.bucket))
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
        if operation.name == "ListBuckets" and status == 200 and request.method == "GET":
            body = await self._read_limited(response)
            prefix = operations.query_params(request.query).get("prefix", "")
            names = [name for name in _bucket_names(body) if name.startswith(prefix)]
            allowed = await self.authority.org_bucket_names(key.org_id, names)
            body = _filter_list_buckets(body, allowed)
            headers = [(n, v) for n, v in headers if n != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if exchange.claimed_bucket:
            await self._settle_claim(exchange, key, operation, status)
        elif operation.name == "DeleteBucket" and status in (200, 204):
            await self.authority.bucket_deleted(
                key.id, operation.bucket, exchange.ip, exchange.request_id
            )
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


async def _once(data: bytes):
    yield data


def _store_unavailable() -> sigv4.S3Error:
    return sigv4.S3Error("ServiceUnavailable", 503, "The object store could not be reached.")


app = Gateway()
