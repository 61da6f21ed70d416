"""Device login: a terminal gets an API token once its user approves it in the portal.

The OAuth 2.0 device authorization grant (RFC 8628). The terminal asks for a pair of codes
and polls with the long device code; its user signs in to the portal, types the short user
code, sees which device asks, and approves it for one of their organisations or denies it.
The next poll then receives an API token for that member and org, named after the device
and expiring, made in that response so its plaintext is never stored. Codes last
``DEVICE_CODE_LIFETIME``, are used once, and both asking and typing are rate-limited.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import AuditAction, TargetType
from audit.trail import Actor, record

from . import throttle
from .models import DeviceLogin, DeviceLoginStatus, Membership, hash_token
from .tokens import ApiTokenError, CreatedApiToken, clean_token_name, create_api_token

DEVICE_CODE_LIFETIME = timedelta(minutes=10)
# Consonants only, without look-alikes: no vowels, so no words, and nothing like 0/O or 1/I.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
# RFC 8628 §3.5: a device that polls too fast waits this much longer from then on.
SLOW_DOWN_STEP = 5
CODES_PER_ADDRESS = throttle.Limit("device-code", 10, 600)
LOOKUPS_PER_USER = throttle.Limit("device-lookup", 10, 600)
DEVICE_NAME_FALLBACK = "device"


class DeviceLoginError(Exception):
    """An RFC 8628 token-endpoint error; ``code`` is the error value the device receives."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class TooManyRequests(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many device logins from this address; try again later.")
        self.retry_after = retry_after


@dataclass(frozen=True)
class StartedDeviceLogin:
    login: DeviceLogin
    device_code: str
    user_code: str


def normalise_user_code(value: str) -> str:
    return "".join(ch for ch in (value or "").upper() if ch.isalnum())


def format_user_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


def clean_device_name(name: str) -> str:
    """A usable token name from what the device calls itself."""
    allowed = "".join(ch if ch.isalnum() or ch in " ._-" else "-" for ch in (name or "")[:48])
    try:
        return clean_token_name(allowed.strip(" .-") or DEVICE_NAME_FALLBACK)
    except ApiTokenError:
        # A name the token rules refuse (unusual Unicode, say) falls back to a plain one.
        return DEVICE_NAME_FALLBACK


def start(device_name: str, source: str | None, ip: str | None) -> StartedDeviceLogin:
    verdict = CODES_PER_ADDRESS.hit(source or "unknown")
    if not verdict.allowed:
        raise TooManyRequests(verdict.retry_after)
    device_code = secrets.token_urlsafe(32)
    user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
    login = DeviceLogin.objects.create(
        device_code_hash=hash_token(device_code),
        user_code_hash=hash_token(user_code),
        device_name=clean_device_name(device_name),
        client_ip=ip,
        expires_at=timezone.now() + DEVICE_CODE_LIFETIME,
        interval=settings.EXCLOUD_DEVICE_LOGIN_INTERVAL,
    )
    return StartedDeviceLogin(login, device_code, user_code)


def lookups_left(user_id: int) -> int:
    """Seconds until this user may type codes again, or 0."""
    return LOOKUPS_PER_USER.exceeded(str(user_id))


def find_pending(user_id: int, user_code: str) -> DeviceLogin | None:
    """The live, undecided login with this user code; each try counts against the user."""
    LOOKUPS_PER_USER.hit(str(user_id))
    code = normalise_user_code(user_code)
    if len(code) != USER_CODE_LENGTH:
        return None
    return (
        DeviceLogin.objects.filter(
            user_code_hash=hash_token(code),
            status=DeviceLoginStatus.PENDING,
            expires_at__gt=timezone.now(),
        )
        .order_by("-created_at")
        .first()
    )


def _decide(login: DeviceLogin, membership: Membership, actor: Actor, status: str) -> bool:
    with transaction.atomic():
        now = timezone.now()
        changed = DeviceLogin.objects.filter(
            pk=login.pk, status=DeviceLoginStatus.PENDING, expires_at__gt=now
        ).update(
            status=status,
            membership=membership if status == DeviceLoginStatus.APPROVED else None,
            decided_by=membership.user,
            decided_at=now,
        )
        if changed:
            record(
                actor,
                AuditAction.DEVICE_LOGIN_APPROVED
                if status == DeviceLoginStatus.APPROVED
                else AuditAction.DEVICE_LOGIN_DENIED,
                org=membership.org,
                target_type=TargetType.DEVICE_LOGIN,
                target_id=str(login.pk),
                details={
                    "device": login.device_name,
                    "device_ip": login.client_ip,
                    "user": membership.user.email,
                },
            )
    return bool(changed)


def approve(login: DeviceLogin, membership: Membership, actor: Actor) -> bool:
    """Approve for this member and org; False when it was decided or expired meanwhile."""
    return _decide(login, membership, actor, DeviceLoginStatus.APPROVED)


def deny(login: DeviceLogin, membership: Membership, actor: Actor) -> bool:
    return _decide(login, membership, actor, DeviceLoginStatus.DENIED)


def redeem(device_code: str) -> tuple[CreatedApiToken, Membership]:
    """The token for an approved device code, once; otherwise a DeviceLoginError whose
    code is authorization_pending, slow_down, access_denied, expired_token or invalid_grant."""
    login = (
        DeviceLogin.objects.select_related("membership__user", "membership__org")
        .filter(device_code_hash=hash_token(device_code or ""))
        .first()
    )
    if login is None or login.status == DeviceLoginStatus.REDEEMED:
        raise DeviceLoginError("invalid_grant", "This device code is unknown or already used.")
    if login.status == DeviceLoginStatus.DENIED:
        raise DeviceLoginError("access_denied", "The sign-in was denied in the browser.")
    now = timezone.now()
    if login.is_expired:
        raise DeviceLoginError("expired_token", "The code expired; run `exc login` again.")
    if login.status == DeviceLoginStatus.PENDING:
        too_soon = login.last_polled_at and now - login.last_polled_at < timedelta(
            seconds=login.interval
        )
        DeviceLogin.objects.filter(pk=login.pk).update(
            last_polled_at=now, interval=login.interval + (SLOW_DOWN_STEP if too_soon else 0)
        )
        if too_soon:
            raise DeviceLoginError("slow_down", "Polling too fast.")
        raise DeviceLoginError("authorization_pending", "Waiting for approval in the browser.")

    membership = login.membership
    with transaction.atomic():
        taken = DeviceLogin.objects.filter(pk=login.pk, status=DeviceLoginStatus.APPROVED).update(
            status=DeviceLoginStatus.REDEEMED
        )
        if not taken:
            raise DeviceLoginError("invalid_grant", "This device code is already used.")
        expires_at = now + timedelta(days=settings.EXCLOUD_DEVICE_TOKEN_DAYS)
        actor = Actor(
            type=Actor.for_user(membership.user).type,
            label=membership.user.email,
            user_id=membership.user_id,
            ip=login.client_ip,
        )
        created = create_api_token(
            membership, actor, login.device_name, expires_at, via="device_approval"
        )
        DeviceLogin.objects.filter(pk=login.pk).update(token=created.token)
    return created, membership
