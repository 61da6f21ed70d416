"""Workflows for API tokens: creating, revoking and checking the bearer tokens of the REST
API and the exc command line.

Each function that changes state writes its audit event in the same transaction.
"""

from __future__ import annotations

import hmac
import re
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime

from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from audit.models import AuditAction, TargetType
from audit.trail import Actor, client_source, record
from excloud_portal.text import UnsafeText, check_text

from . import throttle
from .models import (
    API_TOKEN_LAST_USED_GRANULARITY,
    API_TOKEN_PREFIX,
    ApiToken,
    Membership,
    User,
    hash_token,
)

TOKEN_ALPHABET = string.ascii_letters + string.digits
TOKEN_RANDOM_LENGTH = 40
TOKEN_RE = re.compile(rf"^{API_TOKEN_PREFIX}[A-Za-z0-9]{{{TOKEN_RANDOM_LENGTH}}}$")
TOKEN_DISPLAY_LENGTH = len(API_TOKEN_PREFIX) + 6
TOKEN_NAME_RE = re.compile(r"^[A-Za-z0-9 ._-]{1,64}$")
# A revoked or expired token that keeps being sent is audited once per this many seconds,
# so a client stuck in a retry loop (or someone replaying a leaked token) cannot turn each
# request into an audit row.
REJECTED_TOKEN_AUDIT_INTERVAL = 60


class ApiTokenError(Exception):
    """An API token request that cannot be carried out, with the reason."""


@dataclass(frozen=True)
class CreatedApiToken:
    token: ApiToken
    # The plaintext token: returned by the call that created it and never stored.
    plaintext: str = field(repr=False)


def revoke_api_tokens(tokens, actor: Actor, by_user_id: int | None, reason: str) -> int:
    """Revoke the live tokens among ``tokens``, one audit event each; return how many."""
    revoked = list(
        tokens.active().select_for_update(of=("self",)).select_related("org", "user").order_by("pk")
    )
    if not revoked:
        return 0
    ApiToken.objects.filter(pk__in=[t.pk for t in revoked]).update(
        revoked_at=timezone.now(), revoked_by_id=by_user_id
    )
    for token in revoked:
        _record_token_revoked(actor, token, reason=reason)
    return len(revoked)


def _record_token_revoked(actor: Actor, token: ApiToken, **extra: str) -> None:
    record(
        actor,
        AuditAction.API_TOKEN_REVOKED,
        org=token.org,
        target_type=TargetType.API_TOKEN,
        target_id=str(token.pk),
        details={"name": token.name, "prefix": token.prefix, "user": token.user.email, **extra},
    )


def revoke_user_api_tokens(user: User, actor: Actor, reason: str) -> int:
    """Revoke every live API token of the user, in all their orgs; return how many.

    Used when the user's password changes: a token made by whoever knew the old password
    must not outlast it.
    """
    with transaction.atomic():
        return revoke_api_tokens(
            ApiToken.objects.filter(user=user), actor, by_user_id=user.pk, reason=reason
        )


def clean_token_name(name: str) -> str:
    name = (name or "").strip()
    try:
        check_text(name, "Token names")
    except UnsafeText as e:
        raise ApiTokenError(str(e)) from None
    if not TOKEN_NAME_RE.match(name):
        raise ApiTokenError(
            "Give the token a name of 1–64 letters, digits, spaces, dots, underscores or hyphens."
        )
    return name


def create_api_token(
    membership: Membership,
    actor: Actor,
    name: str,
    expires_at: datetime | None = None,
    *,
    via: str = "tokens_page",
) -> CreatedApiToken:
    """A new bearer token for the member in their org; the plaintext is returned once.

    ``via`` says how it was made, for the audit trail: the tokens page (or a management
    command) or a device approval."""
    name = clean_token_name(name)
    if expires_at is not None and expires_at <= timezone.now():
        raise ApiTokenError("The expiry date must be in the future.")
    plaintext = API_TOKEN_PREFIX + "".join(
        secrets.choice(TOKEN_ALPHABET) for _ in range(TOKEN_RANDOM_LENGTH)
    )
    with transaction.atomic():
        token = ApiToken.objects.create(
            org=membership.org,
            user=membership.user,
            name=name,
            token_hash=hash_token(plaintext),
            prefix=plaintext[:TOKEN_DISPLAY_LENGTH],
            expires_at=expires_at,
        )
        record(
            actor,
            AuditAction.API_TOKEN_CREATED,
            org=membership.org,
            target_type=TargetType.API_TOKEN,
            target_id=str(token.pk),
            details={
                "name": name,
                "prefix": token.prefix,
                "user": membership.user.email,
                "expires_at": expires_at.isoformat() if expires_at else None,
                "via": via,
            },
        )
    return CreatedApiToken(token, plaintext)


def can_revoke_api_token(by: Membership, token: ApiToken) -> bool:
    return token.org_id == by.org_id and (token.user_id == by.user_id or by.is_manager)


def revoke_api_token(by: Membership, actor: Actor, token: ApiToken) -> ApiToken:
    if not can_revoke_api_token(by, token):
        raise PermissionDenied("Only owners and admins can revoke someone else's token.")
    with transaction.atomic():
        now = timezone.now()
        changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=now, revoked_by_id=by.user_id
        )
        if not changed:
            raise ApiTokenError(f"Token “{token.name}” was already revoked.")
        token.refresh_from_db()
        _record_token_revoked(actor, token)
    return token


def authenticate_api_token(plaintext: str, request) -> tuple[ApiToken, Membership] | None:
    """The token and its member's membership, or None when the token is not valid.

    A revoked or expired token, or one whose user has left the org, is refused and the
    attempt audited (at most once per token a minute). An unknown or malformed token is
    refused and counted against the client's address (see ``unknown_token_block``), and
    audited outside any org at most once per address and window.
    """
    if not TOKEN_RE.match(plaintext or ""):
        _count_unknown_token(plaintext or "", request)
        return None
    digest = hash_token(plaintext)
    token = ApiToken.objects.select_related("org", "user").filter(token_hash=digest).first()
    # The lookup found the row by its hash; the constant-time comparison keeps the final
    # decision independent of where two hashes first differ.
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        _count_unknown_token(plaintext, request)
        return None
    membership = None
    if token.is_active and token.user.is_active:
        membership = (
            Membership.objects.select_related("org", "user")
            .filter(org_id=token.org_id, user_id=token.user_id)
            .first()
        )
    if membership is None:
        _record_rejected_token(token, request)
        return None
    now = timezone.now()
    if token.last_used_at is None or token.last_used_at < now - API_TOKEN_LAST_USED_GRANULARITY:
        # Conditional, so of several concurrent requests at most one writes.
        ApiToken.objects.filter(pk=token.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - API_TOKEN_LAST_USED_GRANULARITY)
        ).update(last_used_at=now)
    return token, membership


def _record_rejected_token(token: ApiToken, request) -> None:
    if token.revoked_at is not None:
        reason = "revoked"
    elif token.is_expired:
        reason = "expired"
    elif not token.user.is_active:
        reason = "user deactivated"
    else:
        reason = "not a member"
    if not cache.add(f"api-token-rejected:{token.token_hash}", 1, REJECTED_TOKEN_AUDIT_INTERVAL):
        return
    with transaction.atomic():
        record(
            Actor.unauthenticated(request, label=f"token {token.name} of {token.user.email}"),
            AuditAction.API_TOKEN_REJECTED,
            org=token.org,
            target_type=TargetType.API_TOKEN,
            target_id=str(token.pk),
            details={"name": token.name, "prefix": token.prefix, "reason": reason},
        )


def unknown_token_block(request) -> int:
    """Seconds until the client's address may try API tokens again, once it has sent too
    many unknown ones in the window; 0 when it may. Reads only the cache, so a client
    that is refused costs no database query."""
    return throttle.unknown_api_tokens().exceeded(client_source(request) or "")


def _count_unknown_token(plaintext: str, request) -> None:
    ip = client_source(request) or ""
    limit = throttle.unknown_api_tokens()
    limit.hit(ip)
    if not throttle.first_in_window(f"api-token-unknown:{ip}", limit.window):
        return
    # A few characters tell a mistyped or old token from noise; more would start to give
    # away whatever was sent, which may be a real secret pasted into the wrong place.
    shown = plaintext[: min(TOKEN_DISPLAY_LENGTH, len(plaintext) // 4)]
    with transaction.atomic():
        record(
            Actor.unauthenticated(request, label="unknown API token"),
            AuditAction.API_TOKEN_UNKNOWN,
            target_type=TargetType.API_TOKEN,
            details={"starts_with": shown, "length": len(plaintext)},
        )
