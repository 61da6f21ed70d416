"""Signing keys (derived, and cached per key, date and region) and the HMAC signature."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .constants import SERVICE, TERMINATOR


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def derive_signing_key(secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
    """The SigV4 signing key: HMAC chain "AWS4"+secret -> date -> region -> service ->
    "aws4_request". It is valid for that one scope, so it can be cached and handed to a
    front end that verifies chunks without ever holding the secret."""
    key = _hmac(("AWS4" + secret).encode("utf-8"), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, TERMINATOR)


SigningKeyProvider = Callable[[str, str, str], bytes]
"""(access_key_id, scope date YYYYMMDD, region) -> signing key bytes."""


class SigningKeyCache:
    """A thread-safe LRU of derived signing keys keyed by (access key ID, date, region).

    ``invalidate(access_key_id)`` drops every key derived for that ID, so a revoked or
    rotated key stops verifying at once; a derivation that was in flight while any
    invalidation happened is returned to its caller but not stored.
    """

    def __init__(self, maxsize: int = 4096) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
        self._by_key_id: dict[str, set[tuple[str, str, str]]] = {}
        self._epoch = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, access_key_id: str, date: str, region: str) -> bytes | None:
        entry = (access_key_id, date, region)
        with self._lock:
            key = self._entries.get(entry)
            if key is not None:
                self._entries.move_to_end(entry)
            return key

    def get_or_derive(
        self, access_key_id: str, date: str, region: str, derive: Callable[[], bytes]
    ) -> bytes:
        entry = (access_key_id, date, region)
        with self._lock:
            key = self._entries.get(entry)
            if key is not None:
                self._entries.move_to_end(entry)
                return key
            epoch = self._epoch
        # Deriving may load and decrypt a secret: never under the lock.
        key = derive()
        with self._lock:
            if epoch == self._epoch:
                self._store(entry, key)
        return key

    def _store(self, entry: tuple[str, str, str], key: bytes) -> None:
        self._entries[entry] = key
        self._entries.move_to_end(entry)
        self._by_key_id.setdefault(entry[0], set()).add(entry)
        while len(self._entries) > self._maxsize:
            old, _ = self._entries.popitem(last=False)
            siblings = self._by_key_id.get(old[0])
            if siblings is not None:
                siblings.discard(old)
                if not siblings:
                    del self._by_key_id[old[0]]

    def invalidate(self, access_key_id: str) -> None:
        with self._lock:
            self._epoch += 1
            for entry in self._by_key_id.pop(access_key_id, ()):
                self._entries.pop(entry, None)

    def clear(self) -> None:
        with self._lock:
            self._epoch += 1
            self._entries.clear()
            self._by_key_id.clear()

    def provider(
        self, secret_for: Callable[[str], str], service: str = SERVICE
    ) -> SigningKeyProvider:
        """A signing-key provider that calls ``secret_for(access_key_id)`` only on a miss."""

        entries = self._entries

        def signing_key(access_key_id: str, date: str, region: str) -> bytes:
            # Lock-free hit: dict reads and move_to_end are atomic under the GIL, and a
            # concurrent invalidation at worst makes move_to_end miss the entry.
            entry = (access_key_id, date, region)
            key = entries.get(entry)
            if key is not None:
                try:
                    entries.move_to_end(entry)
                except KeyError:
                    pass
                return key
            return self.get_or_derive(
                access_key_id,
                date,
                region,
                lambda: derive_signing_key(secret_for(access_key_id), date, region, service),
            )

        return signing_key


# HMAC-SHA256 with the key's inner and outer pad states hashed once per signing key: each
# signature then costs two SHA-256 copies instead of a full HMAC set-up (less than half the
# time, and the gateway signs once per request plus once per chunk). Bounded by clearing.
_PAD_STATES: dict[bytes, tuple[Any, Any]] = {}
_PAD_STATES_MAX = 4096
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _pad_states(key: bytes) -> tuple[Any, Any]:
    states = _PAD_STATES.get(key)
    if states is None:
        block = (
            key.ljust(64, b"\0")
            if len(key) <= 64
            else hashlib.sha256(key).digest().ljust(64, b"\0")
        )
        states = (hashlib.sha256(block.translate(_IPAD)), hashlib.sha256(block.translate(_OPAD)))
        if len(_PAD_STATES) >= _PAD_STATES_MAX:
            _PAD_STATES.clear()
        _PAD_STATES[key] = states
    return states


def signature(signing_key: bytes, string_to_sign: str) -> str:
    """The hex HMAC-SHA256 signature of a string to sign (also what a verify API compares)."""
    inner_state, outer_state = _pad_states(signing_key)
    inner = inner_state.copy()
    inner.update(string_to_sign.encode("utf-8"))
    outer = outer_state.copy()
    outer.update(inner.digest())
    return outer.hexdigest()
