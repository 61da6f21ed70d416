"""``/healthz``, ``/readyz`` and ``/metrics`` on the S3 endpoint.

On an S3 endpoint a path-style ``GET /healthz`` is also ListObjects of a bucket named
"healthz", which is a valid bucket name (gateway.names). The gateway answers these paths
itself only for a GET or HEAD that carries no query and no Authorization header: a request
S3 would refuse anyway (the gateway serves no anonymous access), so no S3 request changes
meaning. Anything signed, by header or presigned URL, is an S3 request as before, so a
bucket named "healthz" stays usable.

``/metrics`` is answered only to whoever excloud_portal.metrics.may_read lets in (an
allowed network reached directly, or ``Authorization: Bearer`` EXCLOUD_METRICS_TOKEN);
anyone else gets S3's answer, as before.

``/readyz`` checks the database and Redis as the web does (excloud_portal.health) and the
object store with one signed ListBuckets (any answer but a 5xx: reachable), each within
CHECK_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import httpx
from django.conf import settings
from prometheus_client import CONTENT_TYPE_LATEST

from excloud_portal import health as web_health
from excloud_portal import metrics as web_metrics

from . import sigv4
from .exchange import client_address
from .upstream import Signer

PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
CHECK_TIMEOUT_SECONDS = web_health.CHECK_TIMEOUT_SECONDS
JSON_HEADERS = (
    (b"content-type", b"application/json"),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
)


class Probes:
    """The answers to load balancers and Prometheus, for one gateway process."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self._client: httpx.AsyncClient | None = None

    def wants(self, request: sigv4.Request, scope: Mapping[str, Any]) -> bool:
        """Is this request one of ours rather than an S3 request? (See the module
        docstring.)"""
        if request.method not in ("GET", "HEAD") or request.path not in PATHS or request.query:
            return False
        headers = request.header_map or {}
        authorization = headers.get("authorization")
        if request.path != "/metrics":
            return authorization is None
        if authorization is not None and len(authorization) != 1:
            return False
        return web_metrics.may_read(
            client_address(scope),
            authorization[0] if authorization else None,
            "x-forwarded-for" in headers or "forwarded" in headers,
            settings.EXCLOUD_METRICS_ALLOWED_NETWORKS,
            settings.EXCLOUD_METRICS_TOKEN,
        )

    async def answer(self, request: sigv4.Request, send) -> None:
        if request.path == "/metrics":
            body = web_metrics.exposition()
            status = 200
            headers = [
                (b"content-type", CONTENT_TYPE_LATEST.encode()),
                (b"cache-control", b"no-store"),
            ]
        else:
            if request.path == "/healthz":
                status, content = 200, {"status": "alive"}
            else:
                status, content = web_health.readiness_body(await self.readiness())
            body = json.dumps(content).encode()
            headers = list(JSON_HEADERS)
            if status == 503:
                headers.append((b"retry-after", b"1"))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": b"" if request.method == "HEAD" else body}
        )

    async def readiness(self) -> dict[str, str]:
        """Every dependency asked at once, each within CHECK_TIMEOUT_SECONDS."""
        checks = web_health.dependency_checks()
        names = [*checks, "object_store"]
        results = await asyncio.gather(
            *(self._threaded(check) for check in checks.values()), self._store()
        )
        return dict(zip(names, results, strict=True))

    @staticmethod
    async def _threaded(check: web_health.BoundedCheck) -> str:
        # Shielded: a probe that gives up must not cancel the run another probe shares.
        running = asyncio.shield(asyncio.wrap_future(check.start()))
        try:
            await asyncio.wait_for(running, CHECK_TIMEOUT_SECONDS)
        except TimeoutError:
            return f"timed out after {CHECK_TIMEOUT_SECONDS:g} s"
        except Exception as error:  # noqa: BLE001 - any failure is a failed check
            return f"failed: {type(error).__name__}"
        return web_health.OK

    async def _store(self) -> str:
        """A signed ListBuckets: the store is reachable if it answers anything but a server
        error (credentials allowed fewer operations may be refused that one)."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=CHECK_TIMEOUT_SECONDS)
        url, headers = self.signer.sign("GET", "/", "", [])
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                async with self._client.stream("GET", url, headers=headers) as response:
                    status = response.status_code
        except TimeoutError:
            return f"timed out after {CHECK_TIMEOUT_SECONDS:g} s"
        except httpx.HTTPError as error:
            return f"failed: {type(error).__name__}"
        if status >= 500:
            return f"failed: HTTP {status}"
        return web_health.OK

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
