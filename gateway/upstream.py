"""The gateway's link to the upstream object store: requests re-signed with the gateway's
own credentials, sent through one HTTP client whose every wait is limited.

Django-free. The body is always sent as ``UNSIGNED-PAYLOAD`` with its decoded length: the
gateway has already verified what the client signed, and the upstream is reached over a
link the operator trusts (loopback for the embedded store).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from . import http1, metrics, s3errors, sigv4

log = logging.getLogger(__name__)


class Signer:
    def __init__(self, url: str, access_key_id: str, secret_access_key: str, region: str) -> None:
        parts = urlsplit(url)
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.prefix = parts.path.rstrip("/")
        self.host = parts.netloc
        self.access_key_id = access_key_id
        self.secret = secret_access_key
        self.region = region
        self._keys: dict[str, bytes] = {}

    def _signing_key(self, date: str) -> bytes:
        key = self._keys.get(date)
        if key is None:
            self._keys = {date: sigv4.derive_signing_key(self.secret, date, self.region)}
            key = self._keys[date]
        return key

    def sign(
        self,
        method: str,
        path: str,
        query: str,
        headers: Sequence[tuple[str, str]],
        now: float | None = None,
    ) -> tuple[str, list[tuple[str, str]]]:
        """Return the upstream URL and the headers to send, ``Authorization`` included.

        ``path`` must be canonical already (sigv4.canonical_uri) and ``query`` canonical
        (sigv4.canonical_query), so what is sent is exactly what is signed. Header values
        are sent whitespace-folded, as they are signed.
        """
        path = self.prefix + path
        timestamp = time.time() if now is None else now
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(timestamp))
        date = amz_date[:8]
        merged: dict[str, list[str]] = {}
        for name, value in headers:
            merged.setdefault(name.lower(), []).append(" ".join(value.split()))
        merged["host"] = [self.host]
        merged["x-amz-date"] = [amz_date]
        merged["x-amz-content-sha256"] = [sigv4.UNSIGNED_PAYLOAD]
        signed = sorted(name for name in merged if name == "host" or name.startswith("x-amz-"))
        canonical = "\n".join(
            [
                method,
                path,
                query,
                *[name + ":" + ",".join(merged[name]) for name in signed],
                "",
                ";".join(signed),
                sigv4.UNSIGNED_PAYLOAD,
            ]
        )
        scope = f"{date}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            [sigv4.ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        signature = sigv4.signature(self._signing_key(date), to_sign)
        out = [(name, ",".join(values)) for name, values in merged.items() if name != "host"]
        out.append(
            (
                "authorization",
                f"{sigv4.ALGORITHM} Credential={self.access_key_id}/{scope}, "
                f"SignedHeaders={';'.join(signed)}, Signature={signature}",
            )
        )
        url = self.base + path + ("?" + query if query else "")
        return url, out


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request signed for the store, ready to send."""

    method: str
    target: bytes
    headers: list[tuple[str, str]]
    content: Any


class Store:
    """Requests to the object store: the client's, forwarded (``open``), and the
    gateway's own (``ask``). Failures to talk to it raise http1.StoreError."""

    def __init__(self, signer: Signer, timeouts: tuple[float, float]) -> None:
        self.signer = signer
        self.timeouts = timeouts
        self._client: http1.Client | None = None

    @property
    def client(self) -> http1.Client:
        if self._client is None:
            # Every wait on the store is limited: connecting, and each read or write (not
            # a whole transfer, so a long healthy one is never cut).
            connect, between_bytes = self.timeouts
            self._client = http1.Client(
                self.signer.base, connect_timeout=connect, timeout=between_bytes
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def _target(self, path: str, query: str) -> bytes:
        """The request target to send upstream, byte for byte: nothing resolves dot
        segments or re-encodes anything in it."""
        return (self.signer.prefix + path + ("?" + query if query else "")).encode("ascii")

    def prepare(
        self, method: str, path: str, query: str, headers: list[tuple[str, str]], content: Any
    ) -> Prepared:
        """A client's authorized request, signed for the store, to send with ``open``.
        Only what the client sent (and our signature) goes upstream."""
        _, signed = self.signer.sign(method, path, query, headers)
        return Prepared(
            method, self._target(path, query), [("host", self.signer.host), *signed], content
        )

    async def open(self, request: Prepared) -> http1.Response:
        """Send a prepared request; the answer's body is left to stream (close the
        response when done)."""
        try:
            response = await self.client.send(
                request.method, request.target, request.headers, request.content
            )
        except http1.StoreError:
            metrics.store_failed("unreachable")
            raise
        if response.status_code >= 500:
            metrics.store_failed("5xx")
        return response

    async def ask(
        self,
        method: str,
        path: str,
        query: str = "",
        headers: list[tuple[str, str]] | None = None,
        content: bytes | None = None,
    ) -> http1.Response:
        """One whole request of the gateway's own to the store, its answer read whole into
        ``content`` (raises http1.StoreError)."""
        headers = list(headers or [])
        if content is not None:
            headers.append(("content-length", str(len(content))))
        response = await self.open(self.prepare(method, path, query, headers, content))
        await response.read()
        return response

    async def exists(self, path: str) -> bool:
        """Does the store hold the bucket at ``path`` (for anyone)? 503 if it cannot say."""
        try:
            response = await self.ask("HEAD", path)
        except http1.StoreError as error:
            log.warning("upstream HeadBucket failed: %r", error)
            raise s3errors.store_unavailable() from None
        if response.status_code >= 500:
            raise s3errors.store_unavailable()
        # 404: free. 200: ours already. 403 and 301 (another account's, elsewhere): taken.
        return response.status_code != 404

    async def holds_objects(self, path: str) -> bool:
        """Does the bucket at ``path`` hold any object? Asked of a bucket just created;
        when the store cannot say, the answer is yes, so nothing is handed over on a guess."""
        try:
            response = await self.ask("GET", path, "list-type=2&max-keys=1")
        except http1.StoreError as error:
            log.warning("upstream ListObjectsV2 after CreateBucket failed: %r", error)
            return True
        return response.status_code != 200 or b"<Key>" in response.content
