"""The audit trail: one event per change, none per refusal, and a trail that cannot be edited.

Every URL that changes state writes exactly the events listed for it, with actor, target,
address, browser and request ID filled; a refused request writes none. If the audit insert
fails, the change rolls back. Audit rows cannot be updated or deleted, and `audit_verify`
finds each kind of tampering done by someone who can get past the triggers.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts import device_login
from accounts.models import (
    INVITATION_LIFETIME,
    ApiToken,
    Invitation,
    Membership,
    Organization,
    Role,
    User,
    hash_token,
)
from accounts.services import create_api_token
from audit import signing
from audit.chain import chain_name, event_hash
from audit.checkpoints import sign_checkpoints
from audit.models import AuditChainHead, AuditCheckpoint, AuditEvent
from audit.trail import Actor, record
from audit.verify import verify_chain
from keys import credentials
from keys.models import AccessKey, KeyStatus
from keys.services import create_key, deactivate_key, revoke_key
from mfa.models import TotpDevice

from .conftest import PASSWORD, audit_mark, client_for, new_key
from .mfa_support import enrol_totp, secret_on, totp_code
from .webauthn_soft import SoftAuthenticator, options_on

IP = "203.0.113.7"
UA = "AuditTrailTest/1.0 (X11; Linux x86_64)"
NEW_PASSWORD = "another horse battery staple 43"
REPO = Path(__file__).resolve().parent.parent
CELERY = str(REPO / ".venv" / "bin" / "celery")
WORKER_TIMEOUT = 60


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


# 1. Every URL that changes state.

# (action, org slug, actor user ID, actor label, target type, target ID)
Event = tuple[str, str | None, int | None, str, str, str]


def event_by(user: User, action: str, org: str | None, target_type: str, target_id) -> Event:
    return (action, org, user.pk, user.email, target_type, str(target_id))


@dataclass
class Change:
    """A request that changes state, and a check, run after it, that returns its events."""

    client: Client
    method: str
    path: str
    data: dict = field(default_factory=dict)
    status: int = 302
    outcome: Callable[[], list[Event]] = list


def signed_in_user_id(client: Client) -> int | None:
    value = client.session.get("_auth_user_id")
    return int(value) if value else None


def change_signup(people, mailoutbox) -> Change:
    client = Client()

    def outcome() -> list[Event]:
        user = User.objects.get(email="ada@example.test")
        assert Membership.objects.get(user=user).org.slug == "initrode"
        assert signed_in_user_id(client) == user.pk
        # Sign-up is three things: the account, its organisation, and signing in.
        return [
            event_by(user, "user.signed_up", None, "user", user.pk),
            event_by(user, "org.created", "initrode", "org", "initrode"),
            event_by(user, "user.login", None, "user", user.pk),
        ]

    data = {"email": "Ada@Example.test", "password": PASSWORD, "org_name": "Initrode"}
    return Change(client, "post", "/accounts/signup/", data, outcome=outcome)


def change_login(people, mailoutbox) -> Change:
    client, user = Client(), people["member"].user

    def outcome() -> list[Event]:
        assert signed_in_user_id(client) == user.pk
        return [event_by(user, "user.login", None, "user", user.pk)]

    data = {"username": "Member@Acme.test", "password": PASSWORD}
    return Change(client, "post", "/accounts/login/", data, outcome=outcome)


def change_login_failed(people, mailoutbox) -> Change:
    client = Client()

    def outcome() -> list[Event]:
        assert signed_in_user_id(client) is None
        # Nobody is signed in: the actor is the address that was tried.
        tried = "member@acme.test"
        return [("user.login_failed", None, None, tried, "user", tried)]

    data = {"username": "member@acme.test", "password": "not the password"}
    return Change(client, "post", "/accounts/login/", data, status=200, outcome=outcome)


def change_logout(people, mailoutbox) -> Change:
    client, user = client_for(people["member"]), people["member"].user

    def outcome() -> list[Event]:
        assert signed_in_user_id(client) is None
        return [event_by(user, "user.logout", None, "user", user.pk)]

    return Change(client, "post", "/accounts/logout/", outcome=outcome)


def change_password_reset(people, mailoutbox) -> Change:
    user = people["member"].user

    def outcome() -> list[Event]:
        assert [m.to for m in mailoutbox] == [[user.email]]
        # Asking for a reset changes nothing: Django's reset tokens are derived from the
        # password hash and last sign-in, nothing is stored. The reset itself is audited.
        assert User.objects.get(pk=user.pk).password == user.password
        return []

    data = {"email": "member@acme.test"}
    return Change(Client(), "post", "/accounts/password_reset/", data, outcome=outcome)


def change_password_reset_confirm(people, mailoutbox) -> Change:
    client, user = Client(), people["member"].user
    path = open_reset_form(client, user)

    def outcome() -> list[Event]:
        assert User.objects.get(pk=user.pk).check_password(NEW_PASSWORD)
        return [event_by(user, "user.password_reset", None, "user", user.pk)]

    data = {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    return Change(client, "post", path, data, outcome=outcome)


def change_password_change(people, mailoutbox) -> Change:
    client, user = client_for(people["member"]), people["member"].user

    def outcome() -> list[Event]:
        assert User.objects.get(pk=user.pk).check_password(NEW_PASSWORD)
        # Still signed in: changing the password keeps this session.
        assert signed_in_user_id(client) == user.pk
        return [event_by(user, "user.password_changed", None, "user", user.pk)]

    data = {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    return Change(client, "post", "/accounts/password_change/", data, outcome=outcome)


def change_member_invite(people, mailoutbox) -> Change:
    owner = people["owner"]

    def outcome() -> list[Event]:
        invitation = Invitation.objects.get(email="new@example.test")
        assert invitation.is_pending
        return [event_by(owner.user, "member.invited", "acme", "invitation", invitation.pk)]

    data = {"email": "New@Example.test", "role": Role.MEMBER}
    return Change(client_for(owner), "post", "/orgs/acme/members/invite/", data, outcome=outcome)


def change_accept_invitation(people, mailoutbox) -> Change:
    outsider = people["outsider"]
    token, _ = pending_invitation(people["owner"], "owner@globex.test", Role.ADMIN)

    def outcome() -> list[Event]:
        joined = Membership.objects.get(org__slug="acme", user=outsider.user)
        assert joined.role == Role.ADMIN
        return [event_by(outsider.user, "member.joined", "acme", "user", outsider.user_id)]

    return Change(client_for(outsider), "post", f"/invitations/{token}/", outcome=outcome)


def change_accept_invitation_by_sign_up(people, mailoutbox) -> Change:
    token, _ = pending_invitation(people["owner"], "new@example.test")
    client = Client()

    def outcome() -> list[Event]:
        user = User.objects.get(email="new@example.test")
        assert Membership.objects.get(user=user).org.slug == "acme"
        assert signed_in_user_id(client) == user.pk
        return [
            event_by(user, "user.signed_up", None, "user", user.pk),
            event_by(user, "member.joined", "acme", "user", user.pk),
            event_by(user, "user.login", None, "user", user.pk),
        ]

    data = {"email": "new@example.test", "password": PASSWORD}
    return Change(client, "post", f"/invitations/{token}/", data, outcome=outcome)


def change_member_role(people, mailoutbox) -> Change:
    owner, member = people["owner"], people["member"]

    def outcome() -> list[Event]:
        assert Membership.objects.get(pk=member.pk).role == Role.ADMIN
        return [event_by(owner.user, "member.role_changed", "acme", "user", member.user_id)]

    path = f"/orgs/acme/members/{member.user_id}/role/"
    return Change(client_for(owner), "post", path, {"role": Role.ADMIN}, outcome=outcome)


def change_member_remove(people, mailoutbox) -> Change:
    admin, auditor = people["admin"], people["auditor"]

    def outcome() -> list[Event]:
        assert not Membership.objects.filter(pk=auditor.pk).exists()
        return [event_by(admin.user, "member.removed", "acme", "user", auditor.user_id)]

    path = f"/orgs/acme/members/{auditor.user_id}/remove/"
    return Change(client_for(admin), "post", path, outcome=outcome)


def change_invitation_revoke(people, mailoutbox) -> Change:
    owner = people["owner"]
    _, invitation_id = pending_invitation(owner, "new@example.test")

    def outcome() -> list[Event]:
        assert not Invitation.objects.get(pk=invitation_id).is_pending
        return [
            event_by(owner.user, "member.invitation_revoked", "acme", "invitation", invitation_id)
        ]

    path = f"/orgs/acme/invitations/{invitation_id}/revoke/"
    return Change(client_for(owner), "post", path, outcome=outcome)


def change_key_create(people, mailoutbox) -> Change:
    member = people["member"]

    def outcome() -> list[Event]:
        key = AccessKey.objects.get(name="ci-deploy")
        return [event_by(member.user, "access_key.created", "acme", "access_key", key.pk)]

    data = {"name": "ci-deploy", "creation_token": secrets.token_urlsafe(24)}
    path = "/orgs/acme/keys/new/"
    return Change(client_for(member), "post", path, data, status=200, outcome=outcome)


def _key_change(people, who: str, action: str, to: str, data=None, deactivated=False) -> Change:
    actor, creator = people[who], people["member"]
    key, _ = new_key(creator)
    if deactivated:
        deactivate_key(creator, Actor.for_user(creator.user), key)

    def outcome() -> list[Event]:
        assert AccessKey.objects.get(pk=key.pk).status == to
        return [event_by(actor.user, f"access_key.{action}d", "acme", "access_key", key.pk)]

    path = f"/orgs/acme/keys/{key.pk}/{action}/"
    return Change(client_for(actor), "post", path, data or {}, outcome=outcome)


def change_key_deactivate(people, mailoutbox) -> Change:
    return _key_change(people, "owner", "deactivate", KeyStatus.INACTIVE)


def change_key_reactivate(people, mailoutbox) -> Change:
    return _key_change(people, "member", "reactivate", KeyStatus.ACTIVE, deactivated=True)


def change_key_revoke(people, mailoutbox) -> Change:
    return _key_change(people, "admin", "revoke", KeyStatus.REVOKED, {"reason": "laptop lost"})


def change_token_create(people, mailoutbox) -> Change:
    member = people["member"]

    def outcome() -> list[Event]:
        token = ApiToken.objects.get(name="laptop-cli")
        return [event_by(member.user, "api_token.created", "acme", "api_token", token.pk)]

    data = {"name": "laptop-cli", "expires_in": "90"}
    return Change(client_for(member), "post", "/orgs/acme/tokens/", data, 200, outcome)


def change_token_revoke(people, mailoutbox) -> Change:
    admin, member = people["admin"], people["member"]
    token = create_api_token(member, Actor.for_user(member.user), "laptop-cli").token

    def outcome() -> list[Event]:
        assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
        return [event_by(admin.user, "api_token.revoked", "acme", "api_token", token.pk)]

    path = f"/orgs/acme/tokens/{token.pk}/revoke/"
    return Change(client_for(admin), "post", path, outcome=outcome)


def change_key_rotate(people, mailoutbox) -> Change:
    member = people["member"]
    key = create_key(member, Actor.for_user(member.user), "ci").key

    def outcome() -> list[Event]:
        return [event_by(member.user, "access_key.rotated", "acme", "access_key", key.pk)]

    data = {"overlap_hours": "24", "name": "ci-2"}
    return Change(
        client_for(member), "post", f"/orgs/acme/keys/{key.pk}/rotate/", data, 200, outcome
    )


def change_key_policy(people, mailoutbox) -> Change:
    admin = people["admin"]

    def outcome() -> list[Event]:
        return [event_by(admin.user, "org.key_policy_changed", "acme", "organization", "acme")]

    data = {"inactivity_days": "30", "max_age_days": "0", "warning_days": "7", "warn_admins": "on"}
    return Change(client_for(admin), "post", "/orgs/acme/key-policy/", data, 302, outcome)


def _enrolled(membership) -> tuple[Client, str]:
    client = client_for(membership)
    secret, _ = enrol_totp(client)
    return client, secret


def change_totp_setup(people, mailoutbox) -> Change:
    user, client = people["member"].user, client_for(people["member"])
    secret = secret_on(client.get("/accounts/security/totp/").text)

    def outcome() -> list[Event]:
        return [
            event_by(user, "user.mfa_enrolled", None, "user", user.pk),
            event_by(user, "user.mfa_enrolled", None, "user", user.pk),
        ]

    data = {"code": totp_code(secret), "name": "phone"}
    return Change(client, "post", "/accounts/security/totp/", data, 200, outcome)


def change_passkey_add(people, mailoutbox) -> Change:
    user, client = people["member"].user, client_for(people["member"])
    options = options_on(client.get("/accounts/security/").text)
    data = {"name": "laptop", "credential": SoftAuthenticator().create(options)}

    def outcome() -> list[Event]:
        return [
            event_by(user, "user.mfa_enrolled", None, "user", user.pk),
            event_by(user, "user.mfa_enrolled", None, "user", user.pk),
        ]

    return Change(client, "post", "/accounts/security/passkeys/", data, 200, outcome)


def change_recovery_codes(people, mailoutbox) -> Change:
    user = people["member"].user
    client, _ = _enrolled(people["member"])

    def outcome() -> list[Event]:
        return [event_by(user, "user.recovery_codes_regenerated", None, "user", user.pk)]

    return Change(client, "post", "/accounts/security/recovery-codes/", {}, 200, outcome)


def change_factor_remove(people, mailoutbox) -> Change:
    user = people["member"].user
    client, _ = _enrolled(people["member"])
    device = TotpDevice.objects.get(user=user)

    def outcome() -> list[Event]:
        assert not TotpDevice.objects.filter(pk=device.pk).exists()
        return [
            event_by(user, "user.mfa_removed", None, "user", user.pk),
            event_by(user, "user.mfa_removed", None, "user", user.pk),
        ]

    return Change(client, "post", f"/accounts/security/totp/{device.pk}/remove/", outcome=outcome)


def change_mfa_verify(people, mailoutbox) -> Change:
    user = people["member"].user
    _, secret = _enrolled(people["member"])
    client = Client()
    client.post("/accounts/login/", {"username": user.email, "password": PASSWORD})

    def outcome() -> list[Event]:
        assert signed_in_user_id(client) == user.pk
        return [event_by(user, "user.login", None, "user", user.pk)]

    data = {"code": totp_code(secret, 1)}
    return Change(client, "post", "/accounts/login/verify/", data, outcome=outcome)


def change_mfa_verify_passkey(people, mailoutbox) -> Change:
    user, authenticator = people["member"].user, SoftAuthenticator()
    enrolling = client_for(people["member"])
    options = options_on(enrolling.get("/accounts/security/").text)
    enrolling.post("/accounts/security/passkeys/", {"credential": authenticator.create(options)})
    client = Client()
    client.post("/accounts/login/", {"username": user.email, "password": PASSWORD})
    answer = authenticator.get(options_on(client.get("/accounts/login/verify/").text))

    def outcome() -> list[Event]:
        assert signed_in_user_id(client) == user.pk
        return [event_by(user, "user.login", None, "user", user.pk)]

    data = {"credential": answer}
    return Change(client, "post", "/accounts/login/passkey/", data, outcome=outcome)


def change_confirm(people, mailoutbox) -> Change:
    user, client = people["member"].user, client_for(people["member"])

    def outcome() -> list[Event]:
        return [event_by(user, "user.reauthenticated", None, "user", user.pk)]

    data = {"method": "password", "password": PASSWORD}
    return Change(client, "post", "/accounts/confirm/", data, outcome=outcome)


def change_confirm_passkey(people, mailoutbox) -> Change:
    user, authenticator = people["member"].user, SoftAuthenticator()
    client = client_for(people["member"])
    options = options_on(client.get("/accounts/security/").text)
    client.post("/accounts/security/passkeys/", {"credential": authenticator.create(options)})
    answer = authenticator.get(options_on(client.get("/accounts/confirm/").text))

    def outcome() -> list[Event]:
        return [event_by(user, "user.reauthenticated", None, "user", user.pk)]

    data = {"credential": answer}
    return Change(client, "post", "/accounts/confirm/passkey/", data, outcome=outcome)


def change_org_two_factor(people, mailoutbox) -> Change:
    owner = people["owner"]
    client, _ = _enrolled(owner)

    def outcome() -> list[Event]:
        return [event_by(owner.user, "org.two_factor_required", "acme", "org", "acme")]

    data = {"require_two_factor": "on"}
    return Change(client, "post", "/orgs/acme/two-factor/", data, outcome=outcome)


def change_device_confirm(people, mailoutbox) -> Change:
    member = people["member"]
    client = client_for(member)
    started = device_login.start("ci-box", "203.0.113.9", "203.0.113.9")
    assert client.post("/device/", {"user_code": started.user_code}).status_code == 302

    def outcome() -> list[Event]:
        login = started.login
        return [event_by(member.user, "device_login.approved", "acme", "device_login", login.pk)]

    data = {"decision": "approve", "org": "acme"}
    return Change(client, "post", "/device/confirm/", data, 200, outcome)


# Each case and the URL (by name) it exercises.
CHANGES: dict[str, tuple[str, Callable[..., Change]]] = {
    "signup": ("signup", change_signup),
    "login": ("login", change_login),
    "login_failed": ("login", change_login_failed),
    "logout": ("logout", change_logout),
    "password_reset": ("password_reset", change_password_reset),
    "password_reset_confirm": ("password_reset_confirm", change_password_reset_confirm),
    "password_change": ("password_change", change_password_change),
    "member_invite": ("member_invite", change_member_invite),
    "accept_invitation": ("accept_invitation", change_accept_invitation),
    "accept_invitation_by_sign_up": ("accept_invitation", change_accept_invitation_by_sign_up),
    "member_role": ("member_role", change_member_role),
    "member_remove": ("member_remove", change_member_remove),
    "invitation_revoke": ("invitation_revoke", change_invitation_revoke),
    "key_create": ("key_create", change_key_create),
    "key_deactivate": ("key_deactivate", change_key_deactivate),
    "key_reactivate": ("key_reactivate", change_key_reactivate),
    "key_revoke": ("key_revoke", change_key_revoke),
    "token_create": ("token_list", change_token_create),
    "token_revoke": ("token_revoke", change_token_revoke),
    "key_policy": ("key_policy", change_key_policy),
    "key_rotate": ("key_rotate", change_key_rotate),
    "totp_setup": ("mfa_totp_setup", change_totp_setup),
    "passkey_add": ("mfa_passkey_add", change_passkey_add),
    "recovery_codes": ("mfa_recovery_codes", change_recovery_codes),
    "factor_remove": ("mfa_factor_remove", change_factor_remove),
    "mfa_verify": ("mfa_verify", change_mfa_verify),
    "mfa_verify_passkey": ("mfa_verify_passkey", change_mfa_verify_passkey),
    "confirm": ("mfa_confirm", change_confirm),
    "confirm_passkey": ("mfa_confirm_passkey", change_confirm_passkey),
    "org_two_factor": ("org_two_factor", change_org_two_factor),
    "device_confirm": ("device_confirm", change_device_confirm),
}

# URLs whose GET shows a page and that have no POST of their own.
READ_ONLY_URLS = {
    "home",
    "org_list",
    "member_list",
    "key_list",
    "key_detail",
    "mfa_security",
    "password_change_done",
    "password_reset_done",
    "password_reset_complete",
    # The REST API's OpenAPI document, its docs page and its root.
    "openapi-json",
    "openapi-view",
    "api-root",
    # The verify API for other S3 front ends changes nothing (tests/test_gateway_verify_api.py).
    "s3_verify",
    # Typing a device login's code only remembers it in the session; deciding is audited
    # (device_confirm).
    "device_login",
}


@pytest.mark.parametrize("case", CHANGES)
def test_it_writes_the_events_of_each_change_with_actor_target_and_origin(
    everyone, mailoutbox, case
):
    url_name, make = CHANGES[case]
    change = make(everyone, mailoutbox)
    assert resolve(change.path).url_name == url_name
    mark = audit_mark()
    r = send(change.client, change.method, change.path, change.data)
    assert r.status_code == change.status
    events = events_since(mark)
    assert [
        (
            e.action,
            e.org.slug if e.org else None,
            e.actor_user_id,
            e.actor_label,
            e.target_type,
            e.target_id,
        )
        for e in events
    ] == change.outcome()
    for e in events:
        assert (e.actor_type, e.source_ip, e.user_agent) == ("user", IP, UA)
        assert e.request_id == r["X-Request-ID"]


def all_url_names() -> dict[str, str]:
    """Every named URL of the portal, with the module of its view."""
    found: dict[str, str] = {}

    def walk(patterns) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns)
            elif isinstance(p, URLPattern) and p.name:
                view = getattr(p.callback, "view_class", p.callback)
                found.setdefault(p.name, view.__module__)

    walk(get_resolver().url_patterns)
    return found


def test_it_walks_every_url_that_changes_state():
    # A new URL fails this test until it is added to CHANGES (with its events) or to
    # READ_ONLY_URLS. The audit page's own URLs are covered by tests/test_audit_page.py;
    # the REST API's (django-ninja views), operation by operation, by tests/test_api.py.
    names = {
        name
        for name, module in all_url_names().items()
        if not module.startswith(("audit.", "ninja."))
    }
    walked = {url_name for url_name, _ in CHANGES.values()}
    assert walked.isdisjoint(READ_ONLY_URLS)
    assert names == walked | READ_ONLY_URLS


@dataclass
class Refusal:
    client: Client
    method: str
    path: str
    data: dict = field(default_factory=dict)
    status: int = 302


def _key(
    people, status: str = KeyStatus.ACTIVE, creator: str = "member", name: str = "laptop"
) -> AccessKey:
    key, _ = new_key(people[creator], name)
    if status != KeyStatus.ACTIVE:
        manager = people["owner"]
        change = deactivate_key if status == KeyStatus.INACTIVE else revoke_key
        change(manager, Actor.for_user(manager.user), key)
    return key


def refuse_signup_taken(people) -> Refusal:
    data = {"email": "MEMBER@acme.test", "password": PASSWORD, "org_name": "Again"}
    return Refusal(Client(), "post", "/accounts/signup/", data, 400)


def refuse_logout_by_get(people) -> Refusal:
    return Refusal(client_for(people["member"]), "get", "/accounts/logout/", status=405)


def refuse_reset_with_a_bad_token(people) -> Refusal:
    uid = urlsafe_base64_encode(force_bytes(people["member"].user_id))
    data = {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    return Refusal(Client(), "post", f"/accounts/reset/{uid}/set-password/", data, 200)


def refuse_reset_with_mismatched_passwords(people) -> Refusal:
    client = Client()
    path = open_reset_form(client, people["member"].user)
    data = {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD + "!"}
    return Refusal(client, "post", path, data, 200)


def refuse_password_change_with_a_wrong_old_password(people) -> Refusal:
    data = {"old_password": "wrong", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    return Refusal(client_for(people["member"]), "post", "/accounts/password_change/", data, 200)


def refuse_password_change_when_signed_out(people) -> Refusal:
    data = {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    return Refusal(Client(), "post", "/accounts/password_change/", data, 302)


def refuse_invite_by_a_member(people) -> Refusal:
    data = {"email": "new@example.test", "role": Role.MEMBER}
    return Refusal(client_for(people["member"]), "post", "/orgs/acme/members/invite/", data, 403)


def refuse_invite_by_an_outsider(people) -> Refusal:
    data = {"email": "new@example.test", "role": Role.MEMBER}
    return Refusal(client_for(people["outsider"]), "post", "/orgs/acme/members/invite/", data, 404)


def refuse_invite_of_a_member(people) -> Refusal:
    data = {"email": "member@acme.test", "role": Role.ADMIN}
    return Refusal(client_for(people["owner"]), "post", "/orgs/acme/members/invite/", data, 400)


def refuse_accept_by_another_user(people) -> Refusal:
    token, _ = pending_invitation(people["owner"], "new@example.test")
    return Refusal(client_for(people["outsider"]), "post", f"/invitations/{token}/", status=400)


def refuse_accept_of_a_withdrawn_invitation(people) -> Refusal:
    token, invitation_id = pending_invitation(people["owner"], "owner@globex.test")
    Invitation.objects.filter(pk=invitation_id).update(revoked_at=timezone.now())
    return Refusal(client_for(people["outsider"]), "post", f"/invitations/{token}/", status=404)


def refuse_sign_up_by_invitation_with_another_email(people) -> Refusal:
    token, _ = pending_invitation(people["owner"], "new@example.test")
    data = {"email": "other@example.test", "password": PASSWORD}
    return Refusal(Client(), "post", f"/invitations/{token}/", data, 400)


def refuse_role_change_to_the_same_role(people) -> Refusal:
    path = f"/orgs/acme/members/{people['member'].user_id}/role/"
    return Refusal(client_for(people["owner"]), "post", path, {"role": Role.MEMBER})


def refuse_role_change_by_an_auditor(people) -> Refusal:
    path = f"/orgs/acme/members/{people['member'].user_id}/role/"
    return Refusal(client_for(people["auditor"]), "post", path, {"role": Role.ADMIN}, 403)


def refuse_removing_the_last_owner(people) -> Refusal:
    path = f"/orgs/acme/members/{people['owner'].user_id}/remove/"
    return Refusal(client_for(people["owner"]), "post", path)


def refuse_remove_by_an_outsider(people) -> Refusal:
    path = f"/orgs/acme/members/{people['member'].user_id}/remove/"
    return Refusal(client_for(people["outsider"]), "post", path, status=404)


def refuse_withdrawing_twice(people) -> Refusal:
    _, invitation_id = pending_invitation(people["owner"], "new@example.test")
    Invitation.objects.filter(pk=invitation_id).update(revoked_at=timezone.now())
    path = f"/orgs/acme/invitations/{invitation_id}/revoke/"
    return Refusal(client_for(people["owner"]), "post", path)


def refuse_withdraw_by_a_member(people) -> Refusal:
    _, invitation_id = pending_invitation(people["owner"], "new@example.test")
    path = f"/orgs/acme/invitations/{invitation_id}/revoke/"
    return Refusal(client_for(people["member"]), "post", path, status=403)


def refuse_key_create_by_an_auditor(people) -> Refusal:
    data = {"name": "ci-deploy", "creation_token": secrets.token_urlsafe(24)}
    return Refusal(client_for(people["auditor"]), "post", "/orgs/acme/keys/new/", data, 403)


def refuse_key_create_with_a_taken_name(people) -> Refusal:
    _key(people)
    data = {"name": "LAPTOP", "creation_token": secrets.token_urlsafe(24)}
    return Refusal(client_for(people["member"]), "post", "/orgs/acme/keys/new/", data, 400)


def refuse_key_create_submitted_twice(people) -> Refusal:
    # The same form again gets the key it already made, not a second key or event.
    member, token = people["member"], secrets.token_urlsafe(24)
    create_key(member, Actor.for_user(member.user), "ci-deploy", creation_token=token)
    data = {"name": "ci-deploy", "creation_token": token}
    return Refusal(client_for(member), "post", "/orgs/acme/keys/new/", data, 200)


def refuse_deactivating_an_inactive_key(people) -> Refusal:
    key = _key(people, KeyStatus.INACTIVE)
    return Refusal(client_for(people["owner"]), "post", f"/orgs/acme/keys/{key.pk}/deactivate/")


def refuse_deactivate_by_an_outsider(people) -> Refusal:
    path = f"/orgs/acme/keys/{_key(people).pk}/deactivate/"
    return Refusal(client_for(people["outsider"]), "post", path, status=404)


def refuse_reactivating_an_active_key(people) -> Refusal:
    path = f"/orgs/acme/keys/{_key(people).pk}/reactivate/"
    return Refusal(client_for(people["owner"]), "post", path)


def refuse_reactivate_by_a_member_after_a_manager(people) -> Refusal:
    path = f"/orgs/acme/keys/{_key(people, KeyStatus.INACTIVE).pk}/reactivate/"
    return Refusal(client_for(people["member"]), "post", path, status=403)


def refuse_revoking_a_revoked_key(people) -> Refusal:
    path = f"/orgs/acme/keys/{_key(people, KeyStatus.REVOKED).pk}/revoke/"
    return Refusal(client_for(people["owner"]), "post", path, {"reason": "again"})


def refuse_revoke_by_an_auditor(people) -> Refusal:
    path = f"/orgs/acme/keys/{_key(people).pk}/revoke/"
    return Refusal(client_for(people["auditor"]), "post", path, status=403)


def refuse_revoke_by_a_member_of_an_owners_key(people) -> Refusal:
    path = f"/orgs/acme/keys/{_key(people, creator='owner').pk}/revoke/"
    return Refusal(client_for(people["member"]), "post", path, status=403)


REFUSALS = {
    f.__name__.removeprefix("refuse_"): f
    for f in [
        refuse_signup_taken,
        refuse_logout_by_get,
        refuse_reset_with_a_bad_token,
        refuse_reset_with_mismatched_passwords,
        refuse_password_change_when_signed_out,
        refuse_invite_by_a_member,
        refuse_invite_by_an_outsider,
        refuse_invite_of_a_member,
        refuse_accept_by_another_user,
        refuse_accept_of_a_withdrawn_invitation,
        refuse_sign_up_by_invitation_with_another_email,
        refuse_role_change_to_the_same_role,
        refuse_role_change_by_an_auditor,
        refuse_removing_the_last_owner,
        refuse_remove_by_an_outsider,
        refuse_withdrawing_twice,
        refuse_withdraw_by_a_member,
        refuse_key_create_by_an_auditor,
        refuse_key_create_with_a_taken_name,
        refuse_key_create_submitted_twice,
        refuse_deactivating_an_inactive_key,
        refuse_deactivate_by_an_outsider,
        refuse_reactivating_an_active_key,
        refuse_reactivate_by_a_member_after_a_manager,
        refuse_revoking_a_revoked_key,
        refuse_revoke_by_an_auditor,
        refuse_revoke_by_a_member_of_an_owners_key,
    ]
}


@pytest.mark.parametrize("case", REFUSALS)
def test_it_writes_no_event_for_a_refused_request(everyone, case):
    refusal = REFUSALS[case](everyone)
    before, mark = world(), audit_mark()
    r = send(refusal.client, refusal.method, refusal.path, refusal.data)
    assert r.status_code == refusal.status
    assert world() == before
    assert events_since(mark) == []


def test_a_wrong_old_password_is_recorded_as_a_failed_sign_in_and_nothing_more(everyone):
    # The password change form checks the old password as a sign-in does, so the
    # lockout counts guesses there too, and each one is a failed sign-in in the trail.
    refusal = refuse_password_change_with_a_wrong_old_password(everyone)
    before, mark = world(), audit_mark()
    r = send(refusal.client, refusal.method, refusal.path, refusal.data)
    assert r.status_code == refusal.status
    assert world() == before
    assert [(e.action, e.target_id) for e in events_since(mark)] == [
        ("user.login_failed", everyone["member"].user.email)
    ]


@pytest.mark.parametrize("case", CHANGES)
def test_it_writes_no_event_for_a_request_without_a_csrf_token(everyone, mailoutbox, case):
    _, make = CHANGES[case]
    change = make(everyone, mailoutbox)
    # The same browser (cookies, session), posting without the form's CSRF token.
    client = Client(enforce_csrf_checks=True)
    client.cookies = change.client.cookies
    before, mark = world(), audit_mark()
    r = send(client, change.method, change.path, change.data)
    assert r.status_code == 403
    assert "403_csrf.html" in [t.name for t in r.templates]
    assert world() == before
    assert events_since(mark) == []
    assert mailoutbox == []


def test_it_writes_no_event_for_any_page_view(everyone):
    """GET on every URL, state-changing or not, records nothing and changes nothing."""
    owner, outsider = everyone["owner"], everyone["outsider"]
    key = _key(everyone)
    token, _ = pending_invitation(owner, "owner@globex.test")
    uid = urlsafe_base64_encode(force_bytes(owner.user_id))
    signed_in = {
        "home": "/",
        "org_list": "/orgs/",
        "member_list": "/orgs/acme/members/",
        "key_list": "/orgs/acme/keys/",
        "key_detail": f"/orgs/acme/keys/{key.pk}/",
        "key_create": "/orgs/acme/keys/new/",
        "key_revoke": f"/orgs/acme/keys/{key.pk}/revoke/",
        "member_remove": f"/orgs/acme/members/{everyone['member'].user_id}/remove/",
        "password_change": "/accounts/password_change/",
        "password_change_done": "/accounts/password_change/done/",
    }
    signed_out = {
        "signup": "/accounts/signup/",
        "login": "/accounts/login/",
        "password_reset": "/accounts/password_reset/",
        "password_reset_done": "/accounts/password_reset/done/",
        "password_reset_confirm": reset_link(owner.user),
        "password_reset_complete": "/accounts/reset/done/",
        "accept_invitation": f"/invitations/{token}/",
    }
    assert f"/accounts/reset/{uid}/" in signed_out["password_reset_confirm"]
    before, mark = world(), audit_mark()
    for name, path in signed_in.items():
        assert resolve(path).url_name == name
        assert send(client_for(owner), "get", path).status_code in (200, 302), path
    for name, path in signed_out.items():
        assert resolve(path).url_name == name
        assert send(Client(), "get", path).status_code in (200, 302), path
    # The invitation page for the invited, signed-in user offers to join; it does not join.
    assert send(client_for(outsider), "get", f"/invitations/{token}/").status_code == 200
    assert world() == before
    assert events_since(mark) == []


def test_it_never_puts_a_created_keys_secret_in_the_trail(everyone):
    r = send(
        client_for(everyone["member"]),
        "post",
        "/orgs/acme/keys/new/",
        {"name": "ci-deploy", "creation_token": secrets.token_urlsafe(24)},
    )
    assert r.status_code == 200
    key = AccessKey.objects.get(name="ci-deploy")
    secret = credentials.unseal(key.secret_kek_id, key.secret_sealed, key.pk)
    # The response is where the secret is shown, once: proof this is the right secret.
    assert secret in r.content.decode()
    assert AuditEvent.objects.filter(action="access_key.created", target_id=key.pk).exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT t::text FROM audit_auditevent t")
        rows = [row for (row,) in cursor.fetchall()]
    assert rows
    assert not [row for row in rows if secret in row]
    assert not [row for row in rows if bytes(key.secret_sealed).hex() in row]


# 2. A failed audit insert rolls back the change.


@contextlib.contextmanager
def audit_inserts_failing():
    """A trigger that makes every audit insert raise, as a full disk or a bug would."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION test_refuse_audit_insert() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN RAISE EXCEPTION 'audit insert refused by the test'; END $$"
        )
        cursor.execute(
            "CREATE TRIGGER test_refuse_audit_insert BEFORE INSERT ON audit_auditevent "
            "FOR EACH ROW EXECUTE FUNCTION test_refuse_audit_insert()"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER test_refuse_audit_insert ON audit_auditevent")
            cursor.execute("DROP FUNCTION test_refuse_audit_insert()")


def failing_client(membership: Membership) -> Client:
    """A signed-in client that answers a server error with a 500 response, not an exception."""
    client = Client(raise_request_exception=False)
    client.force_login(membership.user)
    return client


def assert_failed_on_the_audit_insert(response) -> None:
    assert response.status_code == 500
    assert "audit insert refused by the test" in str(response.exc_info[1])


def test_it_creates_no_key_when_the_audit_insert_fails(everyone):
    member = everyone["member"]
    client = failing_client(member)
    mark = audit_mark()
    with audit_inserts_failing():
        r = send(
            client,
            "post",
            "/orgs/acme/keys/new/",
            {"name": "ci-deploy", "creation_token": secrets.token_urlsafe(24)},
        )
        assert_failed_on_the_audit_insert(r)
        with pytest.raises(DatabaseError, match="audit insert refused by the test"):
            create_key(member, Actor.for_user(member.user), "by-service")
    assert not AccessKey.objects.exists()
    assert events_since(mark) == []
    # Without the trigger the same request succeeds: the failure above was the audit's.
    r = send(
        client,
        "post",
        "/orgs/acme/keys/new/",
        {"name": "ci-deploy", "creation_token": secrets.token_urlsafe(24)},
    )
    assert r.status_code == 200
    assert AccessKey.objects.get().name == "ci-deploy"


@pytest.mark.parametrize("status", [KeyStatus.ACTIVE, KeyStatus.INACTIVE])
def test_it_does_not_revoke_a_key_when_the_audit_insert_fails(everyone, status):
    owner = everyone["owner"]
    by_view, by_service = _key(everyone, status), _key(everyone, status, "admin", "other")
    client = failing_client(owner)
    before, mark = world(), audit_mark()
    with audit_inserts_failing():
        r = send(client, "post", f"/orgs/acme/keys/{by_view.pk}/revoke/", {"reason": "lost"})
        assert_failed_on_the_audit_insert(r)
        with pytest.raises(DatabaseError, match="audit insert refused by the test"):
            revoke_key(owner, Actor.for_user(owner.user), by_service, "lost")
    assert world() == before
    assert {k.status for k in AccessKey.objects.all()} == {status}
    assert events_since(mark) == []
    revoke_key(owner, Actor.for_user(owner.user), by_service, "lost")
    assert AccessKey.objects.get(pk=by_service.pk).status == KeyStatus.REVOKED


def test_it_changes_no_status_when_the_audit_insert_fails(everyone):
    owner = everyone["owner"]
    key = _key(everyone)
    client = failing_client(owner)
    before, mark = world(), audit_mark()
    with audit_inserts_failing():
        assert_failed_on_the_audit_insert(
            send(client, "post", f"/orgs/acme/keys/{key.pk}/deactivate/")
        )
        data = {"email": "x@example.test", "role": Role.MEMBER}
        r = send(client, "post", "/orgs/acme/members/invite/", data)
        assert_failed_on_the_audit_insert(r)
    assert world() == before
    assert events_since(mark) == []


# 3. Append-only.


@pytest.fixture
def trail(everyone) -> dict[str, Membership]:
    """Acme's chain with six events, Globex's with one, and the sign-ins outside any org."""
    owner, member, outsider = everyone["owner"], everyone["member"], everyone["outsider"]
    first, _ = new_key(member, "first")
    new_key(member, "second")
    third, _ = new_key(owner, "third")
    deactivate_key(owner, Actor.for_user(owner.user), first)
    revoke_key(owner, Actor.for_user(owner.user), first, "rotated")
    deactivate_key(owner, Actor.for_user(owner.user), third)
    new_key(outsider, "globex-key")
    assert AuditEvent.objects.filter(org__slug="acme").count() == 6
    return everyone


def acme_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(org__slug="acme").order_by("seq"))


APPEND_ONLY_TABLES = ["audit_auditevent", "audit_auditcheckpoint"]


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {table} SET hash = repeat('0', 64)",
        "UPDATE {table} SET seq = seq WHERE id = (SELECT max(id) FROM {table})",
        "DELETE FROM {table}",
        "DELETE FROM {table} WHERE id = (SELECT max(id) FROM {table})",
    ],
)
def test_it_refuses_update_and_delete_of_audit_rows_in_the_database(trail, table, statement):
    sign_checkpoints()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT t::text FROM {table} t ORDER BY id")
        before = cursor.fetchall()
        assert before
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            cursor.execute(statement.format(table=table))
        cursor.execute(f"SELECT t::text FROM {table} t ORDER BY id")
        assert cursor.fetchall() == before


@pytest.mark.parametrize(
    "change",
    [
        lambda: AuditEvent.objects.update(actor_label="mallory"),
        lambda: AuditEvent.objects.filter(action="access_key.revoked").delete(),
        lambda: AuditEvent.objects.last().delete(),
        lambda: AuditCheckpoint.objects.update(seq=1),
        lambda: AuditCheckpoint.objects.all().delete(),
    ],
    ids=["update-events", "delete-events", "delete-event", "update-checkpoints", "delete-cps"],
)
def test_it_refuses_update_and_delete_of_audit_rows_through_the_orm(trail, change):
    sign_checkpoints()
    before = list(AuditEvent.objects.values_list()), list(AuditCheckpoint.objects.values_list())
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        change()
    after = list(AuditEvent.objects.values_list()), list(AuditCheckpoint.objects.values_list())
    assert after == before


def test_it_deletes_a_user_and_keeps_their_events(trail):
    member = trail["member"].user
    user_id = member.pk
    theirs = list(AuditEvent.objects.filter(actor_user_id=user_id).values_list("pk", "hash"))
    assert len(theirs) >= 3  # signed in, created two keys
    member.delete()
    assert not User.objects.filter(pk=user_id).exists()
    kept = AuditEvent.objects.filter(actor_user_id=user_id)
    assert list(kept.values_list("pk", "hash")) == theirs
    assert set(kept.values_list("actor_label", flat=True)) == {"member@acme.test"}
    assert verify() == f"OK {AuditEvent.objects.count()} events\n"


# 4. audit_verify finds tampering.


def verify(*args: str) -> str:
    out, err = StringIO(), StringIO()
    call_command("audit_verify", *args, stdout=out, stderr=err)
    assert err.getvalue() == ""
    return out.getvalue()


def verify_fails(*args: str) -> str:
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="failed verification"):
        call_command("audit_verify", *args, stdout=out, stderr=err)
    assert out.getvalue() == ""
    return err.getvalue()


@contextlib.contextmanager
def triggers_bypassed():
    """What a superuser can do: turn off triggers for this session (the test DB user is one)."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = origin")


def set_head(org_slug: str, seq: int, hash_: str) -> None:
    org = Organization.objects.get(slug=org_slug)
    AuditChainHead.objects.filter(chain=chain_name(org.pk)).update(seq=seq, hash=hash_)


def assert_verifies_before_tampering() -> None:
    assert verify() == f"OK {AuditEvent.objects.count()} events\n"


def test_it_verifies_an_untampered_trail(trail):
    # Five sign-ins outside any org, six events in Acme, one in Globex.
    assert AuditEvent.objects.filter(org__isnull=True).count() == 5
    total = AuditEvent.objects.count()
    assert total == 5 + 6 + 1
    assert verify() == f"OK {total} events\n"
    assert verify("--org", "acme") == "OK 6 events\n"
    assert verify("--org", "globex") == "OK 1 events\n"
    sign_checkpoints()
    new_key(trail["member"], "after-the-checkpoint")
    assert verify("--org", "acme") == "OK 7 events\n"
    with pytest.raises(CommandError, match="No organisation 'nope'"):
        call_command("audit_verify", "--org", "nope")


@pytest.mark.parametrize(
    "edit",
    [
        {"actor_label": "mallory@acme.test"},
        {"details": {"name": "second", "via": "api"}},
        {"target_id": "AKIA0000000000000000"},
        {"action": "access_key.renamed"},
        {"source_ip": "198.51.100.1"},
    ],
    ids=lambda edit: next(iter(edit)),
)
def test_it_finds_an_edited_field(trail, edit):
    assert_verifies_before_tampering()
    victim = acme_events()[2]
    with triggers_bypassed():
        assert AuditEvent.objects.filter(pk=victim.pk).update(**edit) == 1
    problem = verify_fails()
    assert f"FAIL org acme: event #3 (id {victim.pk}) altered" in problem
    # Only the tampered chain fails.
    assert "globex" not in problem
    assert verify("--org", "globex") == "OK 1 events\n"
    assert verify_fails("--org", "acme") == problem


def test_it_finds_a_deleted_middle_row(trail):
    assert_verifies_before_tampering()
    with triggers_bypassed():
        AuditEvent.objects.filter(pk=acme_events()[3].pk).delete()
    problem = verify_fails("--org", "acme")
    assert "event #4 removed: the chain jumps from #3 to #5" in problem
    # The walk counts the events it could vouch for: those before the gap.
    acme = Organization.objects.get(slug="acme")
    assert verify_chain(acme.pk).events == 3


@pytest.mark.parametrize("first", [1, 3, 5])
def test_it_finds_two_events_swapped(trail, first):
    """Swap the seq of two neighbours, through a free seq to dodge the unique constraint."""
    assert_verifies_before_tampering()
    events = acme_events()
    a, b = events[first - 1], events[first]
    with triggers_bypassed():
        AuditEvent.objects.filter(pk=a.pk).update(seq=-1)
        AuditEvent.objects.filter(pk=b.pk).update(seq=a.seq)
        AuditEvent.objects.filter(pk=a.pk).update(seq=b.seq)
    problem = verify_fails("--org", "acme")
    assert "reordered" in problem
    assert f"the event at #{first} (id {b.pk}) was written as #{first + 1}" in problem


def test_it_finds_an_event_moved_further(trail):
    assert_verifies_before_tampering()
    events = acme_events()
    a, b = events[1], events[4]
    with triggers_bypassed():
        AuditEvent.objects.filter(pk=a.pk).update(seq=-1)
        AuditEvent.objects.filter(pk=b.pk).update(seq=a.seq)
        AuditEvent.objects.filter(pk=a.pk).update(seq=b.seq)
    problem = verify_fails("--org", "acme")
    assert f"reordered: the event at #2 (id {b.pk}) was written as #5" in problem


def move(events: list[AuditEvent], moves: dict[int, int]) -> None:
    """Give events new seqs ({old seq: new seq}), through free seqs for the unique index."""
    with triggers_bypassed():
        for old in moves:
            AuditEvent.objects.filter(pk=events[old - 1].pk).update(seq=-old)
        for old, new in moves.items():
            AuditEvent.objects.filter(pk=events[old - 1].pk).update(seq=new)


def test_it_finds_the_last_event_moved_to_the_front(trail):
    # Nothing follows the last event: only its predecessor tells where it was written.
    assert_verifies_before_tampering()
    events = acme_events()
    move(events, {2: 6, 6: 2})
    problem = verify_fails("--org", "acme")
    assert f"reordered: the event at #2 (id {events[5].pk}) was written as #6" in problem


def test_it_finds_an_event_moved_far_from_its_deleted_predecessor(trail):
    # The predecessor is gone: only its successor tells where the event was written.
    assert_verifies_before_tampering()
    events = acme_events()
    with triggers_bypassed():
        AuditEvent.objects.filter(pk=events[3].pk).delete()
    move(events, {2: 5, 5: 2})
    problem = verify_fails("--org", "acme")
    assert f"reordered: the event at #2 (id {events[4].pk}) was written as #5" in problem


def test_it_finds_the_first_event_replayed_at_the_end(trail):
    assert_verifies_before_tampering()
    first, last = acme_events()[0], acme_events()[-1]
    with triggers_bypassed():
        first.pk, first.seq = None, last.seq + 1
        first.save(force_insert=True)
    set_head("acme", first.seq, first.hash)
    problem = verify_fails("--org", "acme")
    assert f"reordered: the event at #{first.seq} (id {first.pk}) was written as #1" in problem


def test_it_finds_an_event_replaced_by_one_hashed_afresh(trail):
    # The forger recomputes the replacement's own hash, but cannot change what the next
    # event links to.
    assert_verifies_before_tampering()
    victim = acme_events()[2]
    victim.actor_label = "mallory@acme.test"
    victim.hash = event_hash(victim)
    with triggers_bypassed():
        AuditEvent.objects.filter(pk=victim.pk).update(
            actor_label=victim.actor_label, hash=victim.hash
        )
    problem = verify_fails("--org", "acme")
    assert "event #3 altered or inserted: event #4 links to a different predecessor" in problem


def test_it_finds_a_deleted_tail_after_a_checkpoint(trail):
    sign_checkpoints()
    assert_verifies_before_tampering()
    events = acme_events()
    kept = events[3]
    with triggers_bypassed():
        AuditEvent.objects.filter(pk__in=[e.pk for e in events[4:]]).delete()
    # The chain head is rolled back too, so only the signed checkpoint can tell.
    set_head("acme", kept.seq, kept.hash)
    problem = verify_fails("--org", "acme")
    assert "events #5–#6 removed from the end: the checkpoint signed" in problem
    assert "covers #6" in problem


def test_it_finds_a_deleted_tail_from_the_chain_head_alone(trail):
    assert_verifies_before_tampering()
    events = acme_events()
    with triggers_bypassed():
        AuditEvent.objects.filter(pk=events[-1].pk).delete()
    assert "#6 removed from the end of the chain" in verify_fails("--org", "acme")


def test_it_finds_an_event_inserted_past_the_chain_head(trail):
    """A forger who appends a well-formed event but leaves the chain head alone."""
    assert_verifies_before_tampering()
    last = acme_events()[-1]
    forged = AuditEvent(
        org=last.org,
        seq=last.seq + 1,
        occurred_at=last.occurred_at,
        actor_type=last.actor_type,
        actor_label="mallory@acme.test",
        action="access_key.created",
        prev_hash=last.hash,
    )
    forged.hash = event_hash(forged)
    forged.save(force_insert=True)
    problem = verify_fails("--org", "acme")
    assert f"event #{forged.seq} inserted past the end of the chain" in problem


def test_it_refuses_floats_in_details(owner):
    with pytest.raises(TypeError), transaction.atomic():
        record(Actor.for_user(owner.user), "test.float", org=owner.org, details={"n": 0.5})
    assert not AuditEvent.objects.filter(action="test.float").exists()


def rewrite_history(events: list[AuditEvent], start: int, **edit) -> None:
    """Edit one event and recompute every hash after it, as a careful forger would."""
    prev = events[start - 1].hash if start else events[0].prev_hash
    with triggers_bypassed():
        for event in events[start:]:
            if event is events[start]:
                for name, value in edit.items():
                    setattr(event, name, value)
            event.prev_hash = prev
            event.hash = event_hash(event)
            event.save()
            prev = event.hash
    set_head("acme", events[-1].seq, events[-1].hash)


def test_it_finds_history_rewritten_with_every_hash_recomputed(trail):
    sign_checkpoints()
    assert_verifies_before_tampering()
    events = acme_events()
    rewrite_history(events, 2, actor_label="mallory@acme.test")
    # The chain itself is consistent again: only the checkpoint can tell.
    assert all(event_hash(e) == e.hash for e in acme_events())
    problem = verify_fails("--org", "acme")
    assert "event #6 or an earlier one was rewritten: it does not match the checkpoint" in problem


def test_it_needs_a_checkpoint_to_find_rewritten_history(trail):
    # Without a checkpoint a consistent rewrite cannot be told from the truth: this is
    # why checkpoints are signed every hour.
    rewrite_history(acme_events(), 2, actor_label="mallory@acme.test")
    assert verify("--org", "acme") == "OK 6 events\n"


def forge_with_another_key(cp: AuditCheckpoint) -> None:
    forger = Ed25519PrivateKey.generate()
    message = signing.checkpoint_message(cp.org_id, cp.seq, cp.hash, cp.signed_at)
    AuditCheckpoint.objects.create(
        org_id=cp.org_id,
        seq=cp.seq,
        hash=cp.hash,
        signed_at=cp.signed_at,
        key_id="f" * 16,
        signature=forger.sign(message).hex(),
    )


def forge_under_the_real_key_id(cp: AuditCheckpoint) -> None:
    forger = Ed25519PrivateKey.generate()
    message = signing.checkpoint_message(cp.org_id, cp.seq, cp.hash, cp.signed_at)
    AuditCheckpoint.objects.create(
        org_id=cp.org_id,
        seq=cp.seq,
        hash=cp.hash,
        signed_at=cp.signed_at,
        key_id=cp.key_id,
        signature=forger.sign(message).hex(),
    )


def edit_the_signature(cp: AuditCheckpoint) -> None:
    flipped = ("0" if cp.signature[0] != "0" else "1") + cp.signature[1:]
    with triggers_bypassed():
        AuditCheckpoint.objects.filter(pk=cp.pk).update(signature=flipped)


def move_the_signed_time(cp: AuditCheckpoint) -> None:
    with triggers_bypassed():
        AuditCheckpoint.objects.filter(pk=cp.pk).update(signed_at=cp.signed_at - timedelta(days=1))


@pytest.mark.parametrize(
    "forge",
    [forge_with_another_key, forge_under_the_real_key_id, edit_the_signature, move_the_signed_time],
)
def test_it_finds_a_forged_checkpoint(trail, forge):
    sign_checkpoints()
    assert_verifies_before_tampering()
    acme = Organization.objects.get(slug="acme")
    forge(AuditCheckpoint.objects.get(org=acme))
    problem = verify_fails("--org", "acme")
    assert "checkpoint at #6 signed" in problem
    assert "has an invalid signature" in problem


def test_it_finds_a_forged_checkpoint_over_rewritten_history(trail):
    # The forger rewrites history and replaces the checkpoint with one of their own,
    # naming our key but signed with theirs.
    sign_checkpoints()
    assert_verifies_before_tampering()
    real = AuditCheckpoint.objects.get(org__slug="acme")
    events = acme_events()
    rewrite_history(events, 0, details={"forged": True})
    with triggers_bypassed():
        AuditCheckpoint.objects.filter(pk=real.pk).delete()
    forge_under_the_real_key_id(
        AuditCheckpoint(
            org_id=real.org_id,
            seq=real.seq,
            hash=events[-1].hash,
            signed_at=timezone.now(),
            key_id=real.key_id,
        )
    )
    assert "checkpoint at #6 signed" in verify_fails("--org", "acme")


# Addresses whose text PostgreSQL writes in its own way: IPv6 in any spelling, IPv4-mapped,
# and the old IPv4-compatible form (::a.b.c.d), which PostgreSQL writes with a dotted quad.
ADDRESSES = [
    "192.0.2.1",
    "2001:DB8:0:0:0:0:0:1",
    "2001:db8::1:0:0:1",
    "::1",
    "::",
    "fe80::1%eth0",
    "::ffff:192.0.2.1",
    "::FFFF:c000:0201",
    "::ffff:0:c000:201",
    "::192.0.2.1",
    "::1:2",
    "::ffff:1:2",
    "64:ff9b::192.0.2.1",
]


def test_it_verifies_events_with_unicode_ipv6_and_nested_details(org):
    records = []
    with transaction.atomic():
        for n, ip in enumerate(ADDRESSES):
            actor = Actor(
                type="user",
                label=f"Zoë 🦄 <zoë@bücher.example> #{n}\x00",
                user_id=None,
                ip=ip,
                user_agent='Mozilla/5.0 (X11) ✓ ünïcödé \x00 \u2028 "quoted" \\ back',
                request_id=f"req-{n:08d}",
            )
            details = {
                "name": "ключ-🔑",
                "nested": {"list": [1, -2, 10**15, None, True, False, "", {"deep": ["ü", []]}]},
                "big": 2**62,
                "zero\x00key": "a\x00b",
                "empty": {},
                "quote": "\"'\\/<>&",
            }
            records.append(record(actor, "test.unicode", org=org, details=details))
    for written in records:
        read = AuditEvent.objects.get(pk=written.pk)
        # The hash computed at insert matches the one recomputed from what the database returns.
        assert read.source_ip == written.source_ip
        assert event_hash(read) == written.hash == read.hash
    stored = {e.source_ip for e in AuditEvent.objects.filter(org=org)}
    assert None not in stored
    assert verify("--org", "acme") == f"OK {len(ADDRESSES)} events\n"


def test_it_stores_every_ipv6_address_as_postgresql_writes_it(org):
    # Every combination of a few telling 16-bit groups in the last three positions,
    # behind zeros and behind a prefix: each must round-trip to the same text.
    groups = [0, 1, 0xFFFF, 0x0102]
    addresses = []
    for prefix, tail in itertools.product(
        [0, 0x20010DB8 << 96], itertools.product(groups, repeat=3)
    ):
        value = prefix | (tail[0] << 32) | (tail[1] << 16) | tail[2]
        addresses.append(str(ipaddress.IPv6Address(value)))
    with transaction.atomic():
        written = [
            record(Actor("user", "ipv6", ip=ip), "test.ipv6", org=org).source_ip for ip in addresses
        ]
    read = list(
        AuditEvent.objects.filter(org=org).order_by("seq").values_list("source_ip", flat=True)
    )
    assert read == written
    assert verify_chain(org.pk).problem is None


# 5. Appends to one org are serialized.

THREADS = 8
EVENTS_PER_THREAD = 4


@pytest.mark.django_db(transaction=True)
def test_it_serializes_concurrent_appends_to_one_org():
    org = Organization.objects.create(slug="acme", name="Acme")
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def append_events(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(EVENTS_PER_THREAD):
                with transaction.atomic():
                    record(
                        Actor.system(f"thread {n}"), "test.concurrent", org=org, details={"i": i}
                    )
                    # Hold the transaction open a moment, so appends truly overlap.
                    time.sleep(0.005)
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=append_events, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not [t for t in threads if t.is_alive()]
    assert errors == []
    total = THREADS * EVENTS_PER_THREAD
    seqs = sorted(AuditEvent.objects.filter(org=org).values_list("seq", flat=True))
    assert seqs == list(range(1, total + 1))
    assert verify_chain(org.pk).problem is None
    assert verify_chain(org.pk).events == total
    head = AuditChainHead.objects.get(chain=chain_name(org.pk))
    assert (head.seq, head.hash) == (total, AuditEvent.objects.get(org=org, seq=total).hash)


# 6. Checkpoints.


def test_it_signs_a_checkpoint_for_each_chain_that_moved(trail):
    chains = AuditChainHead.objects.filter(seq__gt=0).count()
    assert chains == 3  # acme, globex, and sign-ins outside any org
    assert sign_checkpoints() == chains
    assert sign_checkpoints() == 0
    assert AuditCheckpoint.objects.count() == chains
    new_key(trail["member"], "later")
    assert sign_checkpoints() == 1
    latest = AuditCheckpoint.objects.order_by("-id").first()
    assert (latest.org.slug, latest.seq) == ("acme", 7)
    assert latest.hash == acme_events()[-1].hash
    assert verify() == f"OK {AuditEvent.objects.count()} events\n"


def test_it_schedules_checkpoints_every_hour():
    from excloud_portal.celery import app

    schedule = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert schedule["audit.tasks.sign_checkpoints"] == settings.AUDIT_CHECKPOINT_INTERVAL
    if not os.environ.get("EXCLOUD_AUDIT_CHECKPOINT_SECONDS"):
        assert settings.AUDIT_CHECKPOINT_INTERVAL == 3600
    # What a worker does as it starts: import the modules autodiscovery names. (Without it
    # the task is registered only if an earlier test happened to import audit.tasks.)
    app.loader.import_default_modules()
    assert "audit.tasks.sign_checkpoints" in app.tasks


def database_url() -> str:
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s["PASSWORD"] else ""
    return f"postgres://{s['USER']}{password}@{s['HOST']}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_it_signs_checkpoints_in_a_celery_worker(tmp_path):
    from audit.tasks import sign_checkpoints as task
    from excloud_portal.celery import app

    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        pytest.skip("REDIS_URL is not set: this test needs the Redis broker (make test sets it)")
    org = Organization.objects.create(slug="acme", name="Acme")
    with transaction.atomic():
        for i in range(3):
            last = record(Actor.system(), "test.checkpoint", org=org, details={"i": i})
    app.control.purge()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        # The worker signs with the key this test verifies with.
        "EXCLOUD_AUDIT_SIGNING_KEY": settings.EXCLOUD_AUDIT_SIGNING_KEY,
    }
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [
                CELERY,
                "-A",
                "excloud_portal",
                "worker",
                "--concurrency=1",
                "--pool=solo",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=INFO",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        task.delay()
        deadline = time.monotonic() + WORKER_TIMEOUT
        while not AuditCheckpoint.objects.filter(org=org).exists():
            assert worker.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.2)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    checkpoint = AuditCheckpoint.objects.get(org=org)
    assert (checkpoint.seq, checkpoint.hash) == (3, last.hash)
    assert verify_chain(org.pk).problem is None
    assert "audit.tasks.sign_checkpoints" in log_path.read_text(errors="replace")


# 7. Sign-in events.


def test_it_records_a_sign_in_with_address_and_browser(owner):
    mark = audit_mark()
    r = Client().post(
        "/accounts/login/",
        {"username": "owner@acme.test", "password": PASSWORD},
        REMOTE_ADDR="2001:db8::7",
        HTTP_USER_AGENT=UA,
    )
    assert r.status_code == 302
    [event] = events_since(mark)
    assert (event.action, event.org, event.actor_type) == ("user.login", None, "user")
    assert (event.actor_user_id, event.actor_label) == (owner.user_id, "owner@acme.test")
    assert (event.target_type, event.target_id) == ("user", str(owner.user_id))
    assert (event.source_ip, event.user_agent) == ("2001:db8::7", UA)
    assert event.request_id == r["X-Request-ID"]
    assert event.details == {"email": "owner@acme.test"}


@pytest.mark.parametrize("username", ["owner@acme.test", "nobody@acme.test"])
def test_it_records_a_failed_sign_in_without_the_password(owner, username):
    password = "Sup3r-secret-guess-" + secrets.token_hex(8)
    mark = audit_mark()
    r = Client().post(
        "/accounts/login/",
        {"username": username, "password": password},
        REMOTE_ADDR=IP,
        HTTP_USER_AGENT=UA,
    )
    assert r.status_code == 200
    [event] = events_since(mark)
    assert (event.action, event.org, event.actor_user_id) == ("user.login_failed", None, None)
    assert (event.actor_label, event.target_type, event.target_id) == (username, "user", username)
    assert (event.source_ip, event.user_agent) == (IP, UA)
    assert event.details == {"email": username}
    with connection.cursor() as cursor:
        cursor.execute("SELECT t::text FROM audit_auditevent t WHERE id = %s", [event.pk])
        (row,) = cursor.fetchone()
    assert password not in row
    assert "Sup3r" not in row
    assert re.search(r"\*{5,}", row) is None
