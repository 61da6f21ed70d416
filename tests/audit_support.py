"""What the audit trail's tests share: requests from a known address and browser, the
events they wrote, and a snapshot of everything a request could change."""

from __future__ import annotations

import secrets

from django.contrib.auth.tokens import default_token_generator
from django.test import Client
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.models import (
    INVITATION_LIFETIME,
    Invitation,
    Membership,
    Organization,
    Role,
    User,
    hash_token,
)
from audit.models import AuditEvent
from keys.models import AccessKey

IP = "203.0.113.7"
UA = "AuditTrailTest/1.0 (X11; Linux x86_64)"
NEW_PASSWORD = "another horse battery staple 43"


def events_since(mark: int) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(pk__gt=mark).select_related("org").order_by("pk"))


def send(client: Client, method: str, path: str, data: dict | None = None, **extra):
    """A request from a known address and browser, as every test here makes them."""
    extra = {"REMOTE_ADDR": IP, "HTTP_USER_AGENT": UA, **extra}
    if method == "get":
        return client.get(path, data, **extra)
    return getattr(client, method)(path, data or {}, **extra)


def world() -> list:
    """Everything a request here could change, to show a refused one changed nothing."""
    return [
        list(User.objects.order_by("pk").values_list()),
        list(Organization.objects.order_by("pk").values_list()),
        list(Membership.objects.order_by("pk").values_list()),
        list(Invitation.objects.order_by("pk").values_list()),
        list(AccessKey.objects.order_by("pk").values_list()),
    ]


def pending_invitation(by: Membership, email: str, role: str = Role.MEMBER) -> tuple[str, int]:
    """An invitation to Acme stored as invite() stores it; returns (token, invitation ID).

    Made directly, because the token otherwise exists only in the email, and setting up
    is not under test here.
    """
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        org=by.org,
        email=email,
        role=role,
        token_hash=hash_token(token),
        invited_by_id=by.user_id,
        expires_at=timezone.now() + INVITATION_LIFETIME,
    )
    return token, invitation.pk


def reset_link(user: User) -> str:
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return f"/accounts/reset/{uid}/{default_token_generator.make_token(user)}/"


def open_reset_form(client: Client, user: User) -> str:
    """Follow the emailed link as a browser does; return the form's URL (token in session)."""
    r = client.get(reset_link(user))
    assert r.status_code == 302
    assert r["Location"].endswith("/set-password/")
    return r["Location"]
