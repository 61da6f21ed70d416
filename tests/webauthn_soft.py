"""A software authenticator for tests that run without a browser: it answers the portal's
WebAuthn options as a platform passkey would, with "none" attestation and an ES256 key."""

from __future__ import annotations

import hashlib
import html
import json
import re
import secrets

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import bytes_to_base64url

from mfa import passkeys

OPTIONS_RE = re.compile(r'data-options="([^"]+)"')
USER_PRESENT, USER_VERIFIED, ATTESTED = 0x01, 0x04, 0x40


def options_on(page: str) -> str:
    return html.unescape(OPTIONS_RE.search(page).group(1))


class SoftAuthenticator:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = secrets.token_bytes(16)
        self.sign_count = 0

    @property
    def id(self) -> str:
        return bytes_to_base64url(self.credential_id)

    def _client_data(self, kind: str, options: str) -> bytes:
        challenge = json.loads(options)["challenge"]
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": passkeys.origin()}
        ).encode()

    def _rp_hash(self) -> bytes:
        return hashlib.sha256(passkeys.rp_id().encode()).digest()

    def create(self, options: str) -> str:
        """The answer to ``navigator.credentials.create()`` for these options."""
        numbers = self.key.public_key().public_numbers()
        cose = cbor2.dumps(
            {
                1: 2,
                3: -7,
                -1: 1,
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )
        auth_data = (
            self._rp_hash()
            + bytes([USER_PRESENT | USER_VERIFIED | ATTESTED])
            + self.sign_count.to_bytes(4, "big")
            + bytes(16)
            + len(self.credential_id).to_bytes(2, "big")
            + self.credential_id
            + cose
        )
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options)
        return json.dumps(
            {
                "id": self.id,
                "rawId": self.id,
                "type": "public-key",
                "response": {
                    "clientDataJSON": bytes_to_base64url(client_data),
                    "attestationObject": bytes_to_base64url(attestation),
                    "transports": ["internal"],
                },
                "clientExtensionResults": {},
            }
        )

    def get(self, options: str) -> str:
        """The answer to ``navigator.credentials.get()`` for these options."""
        self.sign_count += 1
        auth_data = (
            self._rp_hash()
            + bytes([USER_PRESENT | USER_VERIFIED])
            + self.sign_count.to_bytes(4, "big")
        )
        client_data = self._client_data("webauthn.get", options)
        signature = self.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return json.dumps(
            {
                "id": self.id,
                "rawId": self.id,
                "type": "public-key",
                "response": {
                    "clientDataJSON": bytes_to_base64url(client_data),
                    "authenticatorData": bytes_to_base64url(auth_data),
                    "signature": bytes_to_base64url(signature),
                },
                "clientExtensionResults": {},
            }
        )
