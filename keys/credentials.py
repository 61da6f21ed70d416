"""Access key IDs and secrets: generating them and sealing secrets at rest.

Every ``cryptography`` call in the project is in this module. A secret is sealed with
AES-256-GCM under a key-encryption key (KEK) named by a short ID, with the access key ID
as associated data, so a sealed secret copied onto another key's row does not open.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import string
from dataclasses import dataclass
from functools import cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

ACCESS_KEY_ID_PREFIX = "EXC"
ACCESS_KEY_ID_ALPHABET = string.ascii_uppercase + "234567"  # RFC 4648 base32
ACCESS_KEY_ID_RE = re.compile(r"^EXC[A-Z2-7]{17}$")
SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"
SECRET_LENGTH = 40
SECRET_RE = re.compile(r"^[A-Za-z0-9+/]{40}$")
NONCE_BYTES = 12
KEK_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,16}$")


class SealError(Exception):
    """A sealed secret could not be opened: unknown KEK, wrong key ID, or tampering."""


def new_access_key_id() -> str:
    return ACCESS_KEY_ID_PREFIX + "".join(secrets.choice(ACCESS_KEY_ID_ALPHABET) for _ in range(17))


def new_secret() -> str:
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_LENGTH))


@dataclass(frozen=True)
class Keyring:
    """Key-encryption keys, newest first."""

    keys: tuple[tuple[str, bytes], ...]

    @property
    def current_id(self) -> str:
        return self.keys[0][0]

    def get(self, kek_id: str) -> bytes:
        for candidate, key in self.keys:
            if candidate == kek_id:
                return key
        raise SealError(f"unknown key-encryption key {kek_id!r}")


def parse_keyring(value: str) -> Keyring:
    """Parse ``id:base64url(32 bytes)`` entries separated by commas, newest first."""
    entries = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        kek_id, sep, encoded = item.partition(":")
        if not sep or not KEK_ID_RE.match(kek_id):
            raise ImproperlyConfigured("EXCLOUD_SECRET_KEYS entries must look like ID:BASE64")
        try:
            # Strictly: a stray character or padding is a typo in the setting, not
            # something to skip over on the way to a key that happens to be 32 bytes.
            key = base64.b64decode(
                encoded + "=" * (-len(encoded) % 4), altchars=b"-_", validate=True
            )
        except (binascii.Error, ValueError):
            raise ImproperlyConfigured(
                f"EXCLOUD_SECRET_KEYS entry {kek_id!r} is not base64"
            ) from None
        if len(key) != 32:
            raise ImproperlyConfigured(f"EXCLOUD_SECRET_KEYS entry {kek_id!r} must be 32 bytes")
        if any(kek_id == seen for seen, _ in entries):
            raise ImproperlyConfigured(f"EXCLOUD_SECRET_KEYS names {kek_id!r} twice")
        entries.append((kek_id, key))
    if not entries:
        raise ImproperlyConfigured("EXCLOUD_SECRET_KEYS holds no key")
    return Keyring(tuple(entries))


@cache
def _keyring_for(value: str) -> Keyring:
    return parse_keyring(value)


def keyring() -> Keyring:
    return _keyring_for(settings.EXCLOUD_SECRET_KEYS)


def seal(secret: str, access_key_id: str) -> tuple[str, bytes]:
    """Return (KEK ID, nonce + ciphertext) for the secret, bound to its access key ID."""
    ring = keyring()
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(ring.get(ring.current_id)).encrypt(
        nonce, secret.encode(), access_key_id.encode()
    )
    return ring.current_id, nonce + sealed


def unseal(kek_id: str, blob: bytes, access_key_id: str) -> str:
    key = keyring().get(kek_id)
    blob = bytes(blob)
    # A blob cut shorter than a nonce makes AESGCM raise ValueError rather than InvalidTag;
    # it is tampering all the same.
    if len(blob) < NONCE_BYTES:
        raise SealError(f"secret of {access_key_id} is truncated")
    try:
        plain = AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], access_key_id.encode())
    except InvalidTag:
        raise SealError(f"secret of {access_key_id} does not open under {kek_id!r}") from None
    return plain.decode()
