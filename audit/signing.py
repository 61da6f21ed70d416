"""Ed25519 signatures over audit checkpoints.

The private key comes from ``EXCLOUD_AUDIT_SIGNING_KEY`` (base64 of the 32-byte seed; in
development it is generated once into ``var/dev.env``). Checkpoints signed under earlier keys
stay verifiable while their public keys are listed in ``EXCLOUD_AUDIT_PUBLIC_KEYS``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import UTC, datetime
from functools import cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _decode(value: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ImproperlyConfigured(f"{what} is not base64") from None
    if len(raw) != 32:
        raise ImproperlyConfigured(f"{what} must decode to 32 bytes")
    return raw


def _key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@cache
def _keys(private_value: str, public_values: str) -> tuple[Ed25519PrivateKey, dict]:
    private = Ed25519PrivateKey.from_private_bytes(
        _decode(private_value, "EXCLOUD_AUDIT_SIGNING_KEY")
    )
    publics = {_key_id(private.public_key()): private.public_key()}
    for item in public_values.split(","):
        if item.strip():
            public = Ed25519PublicKey.from_public_bytes(
                _decode(item, "an EXCLOUD_AUDIT_PUBLIC_KEYS entry")
            )
            publics[_key_id(public)] = public
    return private, publics


def _configured() -> tuple[Ed25519PrivateKey, dict]:
    return _keys(settings.EXCLOUD_AUDIT_SIGNING_KEY, settings.EXCLOUD_AUDIT_PUBLIC_KEYS)


def checkpoint_message(org_id: int | None, seq: int, hash_: str, signed_at: datetime) -> bytes:
    return json.dumps(
        {
            "org": org_id,
            "seq": seq,
            "hash": hash_,
            "signed_at": signed_at.astimezone(UTC).isoformat(timespec="microseconds"),
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def sign(message: bytes) -> tuple[str, str]:
    """Return (key ID, hex signature) under the current signing key."""
    private, _ = _configured()
    return _key_id(private.public_key()), private.sign(message).hex()


def verify(key_id: str, signature: str, message: bytes) -> bool:
    _, publics = _configured()
    public = publics.get(key_id)
    if public is None:
        return False
    try:
        public.verify(bytes.fromhex(signature), message)
    except (InvalidSignature, ValueError):
        return False
    return True
