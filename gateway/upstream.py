"""Re-signing requests for the upstream object store with the gateway's own credentials.

Django-free. The body is always sent as ``UNSIGNED-PAYLOAD`` with its decoded length: the
gateway has already verified what the client signed, and the upstream is reached over a
link the operator trusts (loopback for the embedded store).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from . import sigv4


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
