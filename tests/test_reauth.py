"""Sensitive actions need a password or second factor from the last 10 minutes: creating
keys and API tokens, rotating keys, changing roles and the key policy."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from accounts.models import ApiToken, Membership
from audit.models import AuditEvent
from keys.models import AccessKey, KeyPolicy

from .conftest import PASSWORD, client_for, new_key
from .mfa_support import age_reauth, enrol_totp, totp_code

CONFIRM = "/accounts/confirm/"


def _role_change(owner, member):
    return (
        f"/orgs/acme/members/{member.user_id}/role/",
        {"role": "admin"},
        "/orgs/acme/members/",
        lambda: Membership.objects.get(pk=member.pk).role == "admin",
    )


def _key_create(owner, member):
    return (
        "/orgs/acme/keys/new/",
        {"name": "laptop", "creation_token": "6f1c1f5e-9c2a-4f5e-8f0d-1b2c3d4e5f60"},
        "/orgs/acme/keys/new/",
        lambda: AccessKey.objects.filter(name="laptop").exists(),
    )


def _token_create(owner, member):
    return (
        "/orgs/acme/tokens/",
        {"name": "cli", "expires_in": "30"},
        "/orgs/acme/tokens/",
        lambda: ApiToken.objects.filter(name="cli").exists(),
    )


def _key_policy(owner, member):
    return (
        "/orgs/acme/key-policy/",
        {"inactivity_days": "30", "max_age_days": "0", "warning_days": "7"},
        "/orgs/acme/key-policy/",
        lambda: KeyPolicy.objects.filter(org=owner.org, inactivity_days=30).exists(),
    )


def _key_rotate(owner, member):
    key, _ = new_key(owner)
    path = f"/orgs/acme/keys/{key.pk}/rotate/"
    return (
        path,
        {"overlap_hours": "1", "name": "laptop-2"},
        path,
        lambda: AccessKey.objects.filter(name="laptop-2").exists(),
    )


ACTIONS = {
    "role change": _role_change,
    "key create": _key_create,
    "token create": _token_create,
    "key policy": _key_policy,
    "key rotate": _key_rotate,
}


@pytest.mark.parametrize("action", ACTIONS)
def test_it_asks_for_a_fresh_sign_in_once_the_window_passes(owner, member, action):
    path, data, back, done = ACTIONS[action](owner, member)
    client = client_for(owner)
    age_reauth(client)
    response = client.post(path, data)
    assert response.status_code == 302
    assert response["Location"] == f"{CONFIRM}?next={quote(back, safe='')}"
    assert not done()

    confirmed = client.post(
        response["Location"], {"method": "password", "password": PASSWORD, "next": back}
    )
    assert confirmed["Location"] == back
    event = AuditEvent.objects.filter(action="user.reauthenticated").get()
    assert event.details["method"] == "password"
    assert client.post(path, data).status_code in (200, 302)
    assert done()


@pytest.mark.parametrize("action", ACTIONS)
def test_it_does_not_ask_within_the_window(owner, member, action):
    path, data, _, done = ACTIONS[action](owner, member)
    response = client_for(owner).post(path, data)
    assert not response.get("Location", "").startswith(CONFIRM)
    assert done()


def test_it_answers_htmx_with_a_client_redirect(owner):
    client = client_for(owner)
    age_reauth(client)
    response = client.post(
        "/orgs/acme/keys/new/",
        {"name": "laptop"},
        headers={"HX-Request": "true", "HX-Target": "create-panel"},
    )
    assert response["HX-Redirect"] == f"{CONFIRM}?next=%2Forgs%2Facme%2Fkeys%2Fnew%2F"
    assert not AccessKey.objects.exists()


def test_it_refuses_a_wrong_password_and_keeps_asking(owner):
    client = client_for(owner)
    age_reauth(client)
    response = client.post(CONFIRM, {"method": "password", "password": "nope", "next": "/"})
    assert response.status_code == 400
    assert "not your password" in response.text
    assert client.post("/orgs/acme/tokens/", {"name": "cli"})["Location"].startswith(CONFIRM)


def test_a_second_factor_code_confirms_too(owner):
    client = client_for(owner)
    secret, _ = enrol_totp(client)
    age_reauth(client)
    page = client.get(f"{CONFIRM}?next=/orgs/acme/tokens/")
    assert "Confirm with code" in page.text
    response = client.post(
        CONFIRM,
        {"method": "code", "second-code": totp_code(secret, 1), "next": "/orgs/acme/tokens/"},
    )
    assert response["Location"] == "/orgs/acme/tokens/"
    assert client.post("/orgs/acme/tokens/", {"name": "cli"}).status_code == 200
    assert ApiToken.objects.filter(name="cli").exists()


def test_it_keeps_the_confirm_page_on_this_site(owner):
    client = client_for(owner)
    response = client.post(
        CONFIRM, {"method": "password", "password": PASSWORD, "next": "https://evil.test/"}
    )
    assert response["Location"] == "/"


def test_the_confirm_page_needs_a_signed_in_user(db, client):
    assert client.get(CONFIRM)["Location"].startswith("/accounts/login/")
