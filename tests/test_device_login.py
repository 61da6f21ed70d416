"""Device login (RFC 8628): a terminal asks for codes, its user approves or denies it in the
portal, and the terminal collects an expiring API token once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts import device_login
from accounts.models import ApiToken, DeviceLogin, DeviceLoginStatus, Organization
from audit.models import AuditEvent
from tests.conftest import client_for
from tests.mfa_support import age_reauth

GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def start(name: str = "build-box") -> dict:
    response = Client().post(
        "/api/v1/device/code", {"device_name": name}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    return response.json()


def poll(device_code: str):
    return Client().post(
        "/api/v1/device/token",
        {"device_code": device_code, "grant_type": GRANT},
        content_type="application/json",
    )


def error_of(response) -> str:
    assert response.status_code == 400, response.content
    return response.json()["error"]


def enter(client: Client, user_code: str):
    return client.post("/device/", {"user_code": user_code})


def decide(client: Client, decision: str, org: str = "acme"):
    return client.post("/device/confirm/", {"decision": decision, "org": org})


def let_poll_again(device_code: str) -> None:
    """Forget the last poll, as if the interval had passed."""
    DeviceLogin.objects.filter(device_code_hash=_hash(device_code)).update(last_polled_at=None)


def _hash(code: str) -> str:
    from accounts.models import hash_token

    return hash_token(code)


def test_it_gives_the_rfc_fields_and_stores_only_hashes(db):
    started = start()
    assert set(started) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }
    assert started["expires_in"] == 600
    assert started["verification_uri"] == "http://testserver/device/"
    assert started["verification_uri_complete"].endswith(f"?code={started['user_code']}")
    login = DeviceLogin.objects.get()
    stored = " ".join(str(v) for v in DeviceLogin.objects.values().get().values())
    assert started["device_code"] not in stored
    assert started["user_code"].replace("-", "") not in stored
    assert login.device_name == "build-box" and login.status == DeviceLoginStatus.PENDING


def test_approving_issues_one_expiring_token_named_after_the_device(owner, settings):
    settings.EXCLOUD_DEVICE_TOKEN_DAYS = 30
    client = client_for(owner)
    started = start("laptop.local")
    assert error_of(poll(started["device_code"])) == "authorization_pending"
    # Polling again at once is too fast.
    assert error_of(poll(started["device_code"])) == "slow_down"

    entered = enter(client, started["user_code"].lower().replace("-", " "))
    assert entered.status_code == 302 and entered["Location"] == "/device/confirm/"
    page = client.get("/device/confirm/")
    assert page.status_code == 200
    assert b"laptop.local" in page.content and b"Acme" in page.content
    approved = decide(client, "approve")
    assert approved.status_code == 200 and b"Device approved" in approved.content

    let_poll_again(started["device_code"])
    got = poll(started["device_code"])
    assert got.status_code == 200, got.content
    body = got.json()
    assert body["org"] == {"slug": "acme", "name": owner.org.name}
    assert body["user"] == owner.user.email and body["token_type"] == "Bearer"
    token = ApiToken.objects.get()
    assert token.name == "laptop.local" and token.user == owner.user and token.org == owner.org
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    me = Client().get("/api/v1/config", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.json()["user"] == owner.user.email

    created = AuditEvent.objects.get(action="api_token.created", target_id=str(token.pk))
    assert created.details["via"] == "device_approval"
    assert body["access_token"] not in str(created.details)
    approval = AuditEvent.objects.get(action="device_login.approved")
    assert approval.org == owner.org and approval.details["device"] == "laptop.local"

    # The device code is used once.
    let_poll_again(started["device_code"])
    assert error_of(poll(started["device_code"])) == "invalid_grant"
    assert ApiToken.objects.count() == 1


def test_a_denied_device_gets_no_token(owner):
    client = client_for(owner)
    started = start()
    enter(client, started["user_code"])
    denied = decide(client, "deny")
    assert denied.status_code == 200 and b"Device denied" in denied.content
    assert error_of(poll(started["device_code"])) == "access_denied"
    assert not ApiToken.objects.exists()
    assert AuditEvent.objects.filter(action="device_login.denied", org=owner.org).count() == 1


def test_an_expired_code_is_refused_on_both_sides(owner):
    client = client_for(owner)
    started = start()
    DeviceLogin.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert error_of(poll(started["device_code"])) == "expired_token"
    refused = enter(client, started["user_code"])
    assert refused.status_code == 400 and b"unknown, used or expired" in refused.content


def test_a_code_that_expires_on_the_confirm_page_cannot_be_approved(owner):
    client = client_for(owner)
    started = start()
    enter(client, started["user_code"])
    DeviceLogin.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert decide(client, "approve").status_code == 410
    assert DeviceLogin.objects.get().status == DeviceLoginStatus.PENDING
    assert error_of(poll(started["device_code"])) == "expired_token"


def test_a_decided_code_cannot_be_entered_again(owner, admin):
    started = start()
    enter(client_for(owner), started["user_code"])
    decide(client_for(owner), "approve")
    again = enter(client_for(admin), started["user_code"])
    assert again.status_code == 400


def test_an_unknown_device_code_is_invalid(db):
    assert error_of(poll("x" * 43)) == "invalid_grant"
    wrong_grant = Client().post(
        "/api/v1/device/token",
        {"device_code": "x" * 43, "grant_type": "password"},
        content_type="application/json",
    )
    assert error_of(wrong_grant) == "unsupported_grant_type"


def test_an_org_the_user_is_not_in_cannot_be_chosen(owner, outsider):
    client = client_for(owner)
    started = start()
    enter(client, started["user_code"])
    page = decide(client, "approve", org=outsider.org.slug)
    assert page.status_code == 200 and b"Is this your device?" in page.content
    assert DeviceLogin.objects.get().status == DeviceLoginStatus.PENDING


def test_the_confirm_page_needs_a_code_entered_in_this_session(owner, admin):
    start()
    assert client_for(admin).get("/device/confirm/").status_code == 410
    assert Client().get("/device/").status_code == 302  # to sign in


def test_asking_for_codes_is_rate_limited_per_address(db):
    for _ in range(device_login.CODES_PER_ADDRESS.count):
        start()
    refused = Client().post("/api/v1/device/code", {}, content_type="application/json")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert DeviceLogin.objects.count() == device_login.CODES_PER_ADDRESS.count


def test_typing_codes_is_rate_limited_per_user(owner):
    client = client_for(owner)
    started = start()
    for _ in range(device_login.LOOKUPS_PER_USER.count):
        assert enter(client, "BBBB-BBBB").status_code == 400
    refused = enter(client, started["user_code"])
    assert refused.status_code == 400 and b"Too many codes tried" in refused.content
    assert DeviceLogin.objects.get().status == DeviceLoginStatus.PENDING


@pytest.mark.parametrize("name", ["", "\x1b[31mevil\nbox", "a" * 200, "../../etc"])
def test_the_device_name_becomes_a_safe_token_name(db, name):
    start(name)
    stored = DeviceLogin.objects.get().device_name
    assert stored and len(stored) <= 64
    assert all(ch.isalnum() or ch in " ._-" for ch in stored)


def test_approving_needs_a_fresh_sign_in(owner):
    client = client_for(owner)
    started = start()
    enter(client, started["user_code"])
    age_reauth(client)
    asked = decide(client, "approve")
    assert asked.status_code == 302 and asked["Location"].startswith("/accounts/confirm/")
    assert client.get("/device/confirm/")["Location"].startswith("/accounts/confirm/")
    assert DeviceLogin.objects.get().status == DeviceLoginStatus.PENDING


def test_an_org_that_requires_two_factor_sign_in_needs_it_for_a_device_too(owner):
    Organization.objects.filter(slug="acme").update(require_two_factor=True)
    client = client_for(owner)  # signed in with a password, no second factor
    started = start()
    enter(client, started["user_code"])
    refused = decide(client, "approve")
    assert refused.status_code == 302
    assert refused["Location"].startswith("/accounts/security/")
    assert DeviceLogin.objects.get().status == DeviceLoginStatus.PENDING
    assert not ApiToken.objects.exists()
    assert error_of(poll(started["device_code"])) == "authorization_pending"
