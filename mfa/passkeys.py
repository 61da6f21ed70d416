"""WebAuthn ceremonies through py_webauthn: options for the browser, checks of its answers.

The relying party is the portal at ``settings.SITE_URL``: its host is the RP ID and the
URL itself the only origin accepted. Each challenge is kept in the session until the
answer to it arrives, and is used once.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from accounts.models import User

from .models import Passkey

CHALLENGE_SESSION_KEY = "mfa_webauthn_challenge"
TRANSPORTS = {t.value for t in AuthenticatorTransport}


class PasskeyError(Exception):
    """The browser's answer did not check out, with a reason fit to show."""


def rp_id() -> str:
    return urlsplit(settings.SITE_URL).hostname or "localhost"


def origin() -> str:
    parts = urlsplit(settings.SITE_URL)
    return f"{parts.scheme}://{parts.netloc}"


def _descriptors(user: User) -> list[PublicKeyCredentialDescriptor]:
    return [
        PublicKeyCredentialDescriptor(
            id=base64url_to_bytes(p.credential_id),
            transports=[AuthenticatorTransport(t) for t in p.transports if t in TRANSPORTS],
        )
        for p in Passkey.objects.filter(user=user, confirmed=True)
    ]


def registration_options(request: HttpRequest, user: User) -> str:
    options = generate_registration_options(
        rp_id=rp_id(),
        rp_name=getattr(settings, "MFA_RP_NAME", "Excloud"),
        user_name=user.email,
        # An opaque handle for the account; the email is only its display name.
        user_id=f"excloud-user-{user.pk}".encode(),
        user_display_name=user.label,
        exclude_credentials=_descriptors(user),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
    )
    request.session[CHALLENGE_SESSION_KEY] = bytes_to_base64url(options.challenge)
    return options_to_json(options)


def authentication_options(request: HttpRequest, user: User) -> str | None:
    """Options for the user's passkeys, or None when they have none."""
    allowed = _descriptors(user)
    if not allowed:
        return None
    options = generate_authentication_options(
        rp_id=rp_id(),
        allow_credentials=allowed,
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    request.session[CHALLENGE_SESSION_KEY] = bytes_to_base64url(options.challenge)
    return options_to_json(options)


def _challenge(request: HttpRequest) -> bytes:
    challenge = request.session.pop(CHALLENGE_SESSION_KEY, None)
    if not challenge:
        raise PasskeyError("The passkey request expired. Try again.")
    return base64url_to_bytes(challenge)


def _parse(credential: str) -> dict:
    try:
        data = json.loads(credential)
    except ValueError:
        raise PasskeyError("The browser sent no usable passkey answer.") from None
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise PasskeyError("The browser sent no usable passkey answer.")
    return data


def verify_registration(request: HttpRequest, credential: str) -> dict:
    """Check a ``navigator.credentials.create()`` answer; returns what a Passkey stores."""
    data = _parse(credential)
    try:
        verified = verify_registration_response(
            credential=data,
            expected_challenge=_challenge(request),
            expected_rp_id=rp_id(),
            expected_origin=origin(),
        )
    except WebAuthnException:
        raise PasskeyError("The passkey could not be verified. Try again.") from None
    transports = (data.get("response") or {}).get("transports") or []
    return {
        "credential_id": bytes_to_base64url(verified.credential_id),
        "public_key": verified.credential_public_key,
        "sign_count": verified.sign_count,
        "transports": [t for t in transports if t in TRANSPORTS],
    }


def verify_authentication(request: HttpRequest, user: User, credential: str) -> tuple[Passkey, int]:
    """Check a ``navigator.credentials.get()`` answer against the user's passkeys."""
    data = _parse(credential)
    challenge = _challenge(request)
    passkey = Passkey.objects.filter(user=user, confirmed=True, credential_id=data["id"]).first()
    if passkey is None:
        raise PasskeyError("That passkey is not registered to this account.")
    try:
        verified = verify_authentication_response(
            credential=data,
            expected_challenge=challenge,
            expected_rp_id=rp_id(),
            expected_origin=origin(),
            credential_public_key=bytes(passkey.public_key),
            credential_current_sign_count=passkey.sign_count,
        )
    except WebAuthnException:
        raise PasskeyError("The passkey could not be verified. Try again.") from None
    return passkey, verified.new_sign_count
