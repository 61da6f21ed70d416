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
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from excloud_portal.logs import bind_request_id

from . import authority as auth_module
from . import (
    config,
    cors,
    health,
    http1,
    limits,
    listing,
    metrics,
    names,
    operations,
    post_object,
    proxy,
    s3errors,
    sigv4,
)
from .asgi_io import ClientStalled
from .authority import Authority
from .exchange import Exchange
from .guard import FailureGuard
from .post_object import ClientGone
from .upstream import Signer, Store
from .usage import UsageRecorder

log = logging.getLogger(__name__)
T = TypeVar("T")


def _refuse_signature_v2(request: sigv4.Request) -> None:
    authorization = (request.header_map or {}).get("authorization") or [""]
    if authorization[0].startswith("AWS ") or "AWSAccessKeyId=" in request.query:
        raise s3errors.signature_v2_refused()


class Gateway:
    def __init__(self) -> None:
        self.authority = Authority()
        self.signing_keys = sigv4.SigningKeyCache()
        self.authority.on_invalidate.append(self.signing_keys.clear)
        upstream = config.upstream()
        self.store = Store(
            Signer(
                upstream.url, upstream.access_key_id, upstream.secret_access_key, upstream.region
            ),
            config.upstream_timeouts(),
        )
        self.region = config.region()
        self.endpoint_url = config.endpoint().rstrip("/")
        self.endpoint_host = urlsplit(self.endpoint_url).hostname
        self.usage = UsageRecorder()
        self.probes = health.Probes(self.store.signer)
        self.guard = FailureGuard(*config.failure_limit())
        self.flush_seconds = config.usage_flush_seconds()
        self.body_timeout = config.body_timeout_seconds()
        self._flusher: asyncio.Task | None = None

    async def aclose(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        await self.flush_usage()
        await self.store.aclose()
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
        exchange = Exchange.begin(scope, receive, send, self.body_timeout)
        if self.probes.wants(exchange.request, scope):
            await self.probes.answer(exchange.request, send)
            return
        started = time.perf_counter()
        bind_request_id(exchange.request_id)
        try:
            await self._serve(exchange)
        finally:
            exchange.close()
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
                user_agent=exchange.header("user-agent") or "",
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
                if isinstance(error, (http1.StoreError, ClientStalled)):
                    return
                raise
            if isinstance(error, http1.StoreError):
                log.warning("request %s: the store failed: %r", exchange.request_id, error)
                error = s3errors.store_unavailable()
            elif not isinstance(error, sigv4.S3Error):
                log.exception("request %s failed", exchange.request_id)
                error = s3errors.internal_error()
            # Whatever is left of the body would be read as the next request (and a
            # client that sent an oversized head is not worth keeping).
            exchange.error_code = error.code
            close = error.status == 431 or not await exchange.receive.drain(request)
            await s3errors.send_error(
                exchange.send,
                error,
                request_id=exchange.request_id,
                resource=request.path,
                head=request.method == "HEAD",
                close=close,
            )

    async def _handle(self, exchange: Exchange) -> None:
        request = exchange.request
        limits.check_header_sizes(exchange.headers)
        limits.check_declared_size(request)
        if request.method == "OPTIONS":
            await self._preflight(exchange)
            return
        if request.method == "POST":
            boundary = post_object.boundary_of(exchange.header("content-type") or "")
            if boundary is not None:
                await self._post_object(exchange, boundary)
                return
        _refuse_signature_v2(request)
        # Names are validated before anything else is decided, the key included.
        operation = exchange.operation = operations.classify(
            request.method, request.path, request.query, exchange.headers, self.endpoint_host
        )
        auth = sigv4.parse(request, region=self.region)
        exchange.verified = await self._authenticate(
            exchange, auth.access_key_id, lambda signing_keys: sigv4.verify(auth, signing_keys)
        )
        key = exchange.key
        assert key is not None
        auth_module.check_access(key, operation, exchange.owners, exchange.ip)
        if operation.reads_body_first:
            exchange.body = await self._read_small_body(exchange)
        if operation.name == "DeleteObjects":
            operation = exchange.operation = operations.with_deleted_objects(
                operation, exchange.body
            )
            auth_module.check_access(key, operation, exchange.owners, exchange.ip)
        if operation.answered_here:
            await self._answer_cors_configuration(exchange)
            return
        if operation.name == auth_module.CREATE_BUCKET:
            await self._claim_bucket(exchange)
        await self._proxy(exchange)

    async def _authenticate(
        self,
        exchange: Exchange,
        access_key_id: str,
        verify: Callable[[sigv4.SigningKeyProvider], T],
    ) -> T:
        """What ``verify`` returned, once it found the request signed with a usable key's
        secret (exchange.key, with exchange.owners of the operation's buckets); or S3Error,
        with the failure counted against the source."""
        assert exchange.operation is not None
        now = time.monotonic()
        self.guard.check(exchange.ip, now)
        if not auth_module.well_formed_key_id(access_key_id):
            exchange.claimed_key_id = access_key_id
            self.guard.failed(exchange.ip, now)
            raise s3errors.invalid_access_key_id(access_key_id)
        found = await self.authority.lookup(access_key_id, exchange.operation.buckets)
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
        exchange.key = key
        exchange.owners = found.owners
        return verified

    async def _post_object(self, exchange: Exchange, boundary: bytes) -> None:
        """A browser upload: a multipart form signed by a POST policy, stored as a
        PutObject of the form's key, read and forwarded as it streams."""
        request = exchange.request
        bucket = operations.post_object_bucket(
            request.path, request.query, exchange.headers, self.endpoint_host
        )
        reader = post_object.FormReader(boundary, exchange.receive)
        fields, file = await reader.fields()
        post_object.check_fields(fields)
        access_key_id, date = sigv4.parse_post_credential(
            fields["x-amz-credential"], fields["x-amz-date"], region=self.region
        )
        name = names.check_object_name(post_object.object_key(fields["key"], file.filename))
        operation = exchange.operation = operations.put_object(bucket, name)
        policy = post_object.Policy.parse(fields["policy"])
        await self._authenticate(
            exchange,
            access_key_id,
            post_object.signature_check(fields, access_key_id, date, self.region),
        )
        key = exchange.key
        assert key is not None
        auth_module.check_access(key, operation, exchange.owners, exchange.ip)
        length = policy.check(fields, bucket)
        etag = await post_object.store(
            self.store.ask,
            operation.upstream_path(),
            post_object.object_headers(fields, file),
            reader.file(),
            length,
            lambda: self._check_still_allowed(exchange),
        )
        status, body, answer = post_object.answer(fields, bucket, name, etag, self.endpoint_url)
        answer.extend(await self._cors_headers(exchange))
        await self._answer(exchange, status, body, answer)

    async def _preflight(self, exchange: Exchange) -> None:
        """Answer a CORS preflight from the bucket's rules. It carries no credentials, so a
        bucket no org holds answers as one without rules: nothing about it is told."""
        request = exchange.request
        bucket, _ = operations.preflight_target(request.path, exchange.headers, self.endpoint_host)
        rules = cors.from_json(await self.authority.bucket_cors(bucket))
        allowed = cors.preflight(
            rules,
            exchange.header("origin"),
            exchange.header("access-control-request-method"),
            ",".join(exchange.headers.get("access-control-request-headers") or []),
        )
        await self._answer(exchange, 200, b"", allowed)

    async def _answer_cors_configuration(self, exchange: Exchange) -> None:
        """GetBucketCors, PutBucketCors and DeleteBucketCors, kept with the org's bucket."""
        operation, key = exchange.operation, exchange.key
        assert operation is not None and key is not None
        if operation.name == "GetBucketCors":
            rules = cors.from_json(await self.authority.bucket_cors(operation.bucket))
            if not rules:
                raise s3errors.no_cors_configuration()
            await self._answer(
                exchange, 200, cors.to_xml(rules), [(b"content-type", b"application/xml")]
            )
            return
        rules_json = None
        if operation.name == "PutBucketCors":
            rules_json = cors.to_json(cors.parse_configuration(exchange.body or b""))
        await self.authority.set_bucket_cors(
            key.id, operation.bucket, rules_json, exchange.ip, exchange.request_id
        )
        await self._answer(exchange, 200 if rules_json is not None else 204, b"", [])

    async def _cors_headers(self, exchange: Exchange) -> list[tuple[bytes, bytes]]:
        """The CORS headers an answer about the operation's bucket carries for the
        request's Origin."""
        origin = exchange.header("origin")
        bucket = exchange.operation.bucket if exchange.operation else None
        if not origin or bucket is None:
            return []
        rules = cors.from_json(await self.authority.bucket_cors(bucket))
        return cors.actual(rules, origin, exchange.request.method)

    async def _answer(
        self, exchange: Exchange, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """A whole answer the gateway makes itself."""
        headers = [
            *headers,
            (b"content-length", str(len(body)).encode()),
            (b"x-amz-request-id", exchange.request_id.encode()),
            *s3errors.SECURITY_HEADERS,
        ]
        await exchange.send({"type": "http.response.start", "status": status, "headers": headers})
        await exchange.send({"type": "http.response.body", "body": body})

    async def _claim_bucket(self, exchange: Exchange) -> None:
        """Claim the bucket's name for the key's org before the store creates it (check_access
        let only names no org holds through); refuse a name the store already holds for
        nobody (it would hand over its contents)."""
        operation, key = exchange.operation, exchange.key
        assert operation is not None and key is not None
        if await self.store.exists(operation.upstream_path()):
            raise s3errors.bucket_already_exists(operation.bucket)
        claim = await self.authority.claim_bucket(
            key.id, operation.bucket, exchange.ip, exchange.request_id
        )
        # Another request got the name between the lookup and the claim.
        if claim == "owned":
            raise s3errors.bucket_already_owned_by_you(operation.bucket)
        if claim == "taken":
            raise s3errors.bucket_already_exists(operation.bucket)
        exchange.claimed_bucket = True

    async def _read_small_body(self, exchange: Exchange) -> bytes:
        """The whole verified body of a request that is decided on its body."""
        pieces = []
        size = 0
        async for piece in self._body(exchange):
            size += len(piece)
            if size > operations.MAX_SMALL_BODY:
                raise s3errors.message_too_long()
            pieces.append(piece)
        return b"".join(pieces)

    async def _proxy(self, exchange: Exchange) -> None:
        request, operation, verified = exchange.request, exchange.operation, exchange.verified
        assert operation is not None and verified is not None
        path = operation.upstream_path()
        # ListBuckets is answered whole and filtered here (a page of the store's own list,
        # with its continuation token, would speak of other orgs' buckets).
        query = "" if operation.name == "ListBuckets" else proxy.forwarded_query(request.query)
        forwarded = proxy.forwarded_headers(verified, operation)
        if exchange.body is not None:
            length: int | None = len(exchange.body)
            content: Any = exchange.body
        else:
            length = limits.body_length(verified)
            content = self._body(exchange) if length is not None else None
            if content is not None:
                # A store may keep an upload cut off before its first byte as an empty object
                # (SeaweedFS does): a body refused that early never reaches the store.
                content = await _begun(content)
        if length is not None:
            forwarded.append(("content-length", str(length)))
        upstream_request = self.store.prepare(request.method, path, query, forwarded, content)
        try:
            response = await self.store.open(upstream_request)
        except Exception as error:
            await self._creation_failed(exchange, 503)
            if exchange.failures:
                raise exchange.failures[0] from None
            log.warning("upstream request failed: %r", error)
            raise s3errors.store_unavailable() from None
        try:
            if exchange.failures:
                if not 200 <= response.status_code < 300:
                    await self._creation_failed(exchange, response.status_code)
                raise exchange.failures[0]
            await self._respond(exchange, response)
        finally:
            await response.aclose()

    async def _body(self, exchange: Exchange):
        """The verified, decoded request body; the last piece only once all of it checked
        out and the key still allows the operation, so the upstream never completes a bad
        upload."""
        assert exchange.verified is not None and exchange.key is not None
        verifier = exchange.verified.body()
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
            # A revoke or a narrowed scope during the upload refuses its end, so the object
            # is never written.
            if verifier.decoded_length:
                await self._check_still_allowed(exchange)
        except (sigv4.S3Error, ClientGone) as error:
            exchange.failures.append(error)
            raise
        if tail:
            yield tail

    async def _check_still_allowed(self, exchange: Exchange) -> None:
        """Decide the exchange's operation again on the key as it is now: raise
        InvalidAccessKeyId once the key was revoked, deactivated or expired, and the
        scope's AccessDenied once it was narrowed to exclude the operation."""
        assert exchange.key is not None and exchange.operation is not None
        key = await self.authority.current_key(exchange.key.id)
        if key is None:
            raise s3errors.invalid_access_key_id(exchange.key.id)
        auth_module.require_usable(key)
        auth_module.check_access(key, exchange.operation, exchange.owners, exchange.ip)

    async def _settle_claim(self, exchange: Exchange, status: int) -> None:
        """Keep or give back the name this CreateBucket claimed, by what the store said."""
        assert exchange.operation is not None
        path = exchange.operation.upstream_path()
        if 200 <= status < 300:
            if await self.store.holds_objects(path):
                # Some stores answer 200 for a bucket they already have (and one with a
                # stale listing may not have said so when asked): what was there stays
                # nobody's.
                await self._creation_failed(exchange, 409)
                raise s3errors.bucket_already_exists(exchange.operation.bucket)
        elif status == 409 and not await self.store.holds_objects(path):
            # Created in the store after this request claimed the name: only the org's own
            # requests could ask for it since, so it stays the org's.
            return
        else:
            await self._creation_failed(exchange, status)

    async def _creation_failed(self, exchange: Exchange, status: int) -> None:
        """Give back the name a refused CreateBucket claimed (and only then: a bucket the
        org held before this request stays the org's whatever the store answers)."""
        if exchange.claimed_bucket:
            assert exchange.key is not None and exchange.operation is not None
            await self.authority.release_bucket_claim(
                exchange.key.id,
                exchange.operation.bucket,
                exchange.ip,
                exchange.request_id,
                status,
            )

    async def _respond(self, exchange: Exchange, response: http1.Response) -> None:
        request, operation, key = exchange.request, exchange.operation, exchange.key
        assert operation is not None and key is not None
        status, headers = proxy.relayed(response, request)
        headers.extend(await self._cors_headers(exchange))
        if operation.name == "ListBuckets" and status == 200 and request.method == "GET":
            body = await listing.org_buckets(
                response,
                request.query,
                # Only the org's buckets, and of those only the ones the key's scope names.
                lambda names: self.authority.org_bucket_names(
                    key.org_id, [name for name in names if key.scope.sees_bucket(name)]
                ),
            )
            await proxy.send_whole(exchange.send, status, headers, body)
            return
        if exchange.claimed_bucket:
            await self._settle_claim(exchange, status)
        elif operation.name == "DeleteBucket" and status in (200, 204):
            await self.authority.bucket_deleted(
                key.id, operation.bucket, exchange.ip, exchange.request_id
            )
        await proxy.stream(exchange.send, status, headers, response)


async def _begun(body: Any) -> Any:
    """``body`` (an async iterator of bytes) with its first piece already read, so what
    reading it raised is raised here."""
    first = await anext(body, b"")

    async def whole():
        if first:
            yield first
        async for piece in body:
            yield piece

    return whole()


app = Gateway()
