"""The audit trail's events: one per change, with actor, target and origin.

Every URL that changes state writes exactly the events listed for it, with actor, target,
address, browser and request ID filled; the same request without its CSRF token writes
none, and no event holds a secret. Refused requests and failed audit inserts are in
tests/test_audit_refusals.py; an append-only, verifiable trail in
tests/test_audit_integrity.py.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from django.db import connection
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from accounts import device_login
from accounts.models import ApiToken, Invitation, Membership, Role, User
from accounts.tokens import create_api_token
from audit.models import AuditEvent
from audit.trail import Actor
from keys import credentials
from keys.models import AccessKey, CredentialReport, KeyStatus
from keys.services import create_key, deactivate_key
from mfa.models import TotpDevice

from .audit_support import (
    IP,
    NEW_PASSWORD,
    UA,
    events_since,
    open_reset_form,
    pending_invitation,
    send,
    world,
)
from .conftest import PASSWORD, audit_mark, client_for, new_key
from .mfa_support import enrol_totp, secret_on, totp_code
from .webauthn_soft import SoftAuthenticator, options_on

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


def change_key_scope(people, mailoutbox) -> Change:
    member = people["member"]
    key = create_key(member, Actor.for_user(member.user), "ci").key

    def outcome() -> list[Event]:
        assert AccessKey.objects.get(pk=key.pk).key_scope.permission == "read-only"
        return [event_by(member.user, "access_key.scope_narrowed", "acme", "access_key", key.pk)]

    data = {"permission": "read-only", "buckets": "", "networks": "", "confirm": "1"}
    return Change(
        client_for(member), "post", f"/orgs/acme/keys/{key.pk}/scope/", data, 302, outcome
    )


def change_key_policy(people, mailoutbox) -> Change:
    admin = people["admin"]

    def outcome() -> list[Event]:
        return [event_by(admin.user, "org.key_policy_changed", "acme", "org", "acme")]

    data = {"inactivity_days": "30", "max_age_days": "0", "warning_days": "7", "warn_admins": "on"}
    return Change(client_for(admin), "post", "/orgs/acme/key-policy/", data, 302, outcome)


def change_credential_report(people, mailoutbox) -> Change:
    auditor = people["auditor"]

    def outcome() -> list[Event]:
        report = CredentialReport.objects.get()
        return [
            event_by(
                auditor.user, "credential_report.requested", "acme", "credential_report", report.pk
            )
        ]

    return Change(client_for(auditor), "post", "/orgs/acme/credential-report/", {}, 302, outcome)


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
    "credential_report": ("credential_report", change_credential_report),
    "key_rotate": ("key_rotate", change_key_rotate),
    "key_scope": ("key_scope", change_key_scope),
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
    "org_usage",
    "bucket_list",
    # Downloading a credential report records credential_report.downloaded, like an audit
    # export; tests/test_credential_report.py checks those events.
    "credential_report_csv",
    "credential_report_json",
    "mfa_security",
    "password_change_done",
    "password_reset_done",
    "password_reset_complete",
    # For load balancers and Prometheus.
    "healthz",
    "readyz",
    "metrics",
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


# 2. Sign-in events.


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
