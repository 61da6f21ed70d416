"""A new password ends the other sessions and, unless the user says otherwise, their API
tokens; the reset link it starts from points at SITE_URL whatever Host the request named."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from accounts.models import ApiToken, Membership, Role
from accounts.tokens import create_api_token
from audit.trail import Actor

from .conftest import PASSWORD, audit_mark, client_for, events_since

NEW_PASSWORD = "a different horse battery staple 43"
SITE = "https://portal.example.test"


@pytest.fixture
def tokens(owner, other_org) -> list[ApiToken]:
    """The owner's tokens in two orgs, and someone else's token that must survive."""
    elsewhere = Membership.objects.create(org=other_org, user=owner.user, role=Role.MEMBER)
    someone = Membership.objects.create(
        org=other_org,
        user=type(owner.user).objects.create_user("x@globex.test", PASSWORD),
        role=Role.OWNER,
    )
    created = [
        create_api_token(m, Actor.for_user(m.user), name)
        for m, name in [(owner, "laptop"), (elsewhere, "ci"), (someone, "theirs")]
    ]
    for c in created:
        c.token.plaintext = c.plaintext
    return [c.token for c in created]


def api_status(token: ApiToken) -> int:
    headers = {"Authorization": f"Bearer {token.plaintext}"}
    return Client().get("/api/v1/config", headers=headers).status_code


def signed_in(client: Client) -> bool:
    return client.get("/orgs/").status_code == 200


def signed_in_elsewhere(owner) -> Client:
    client = Client()
    client.force_login(owner.user)
    assert signed_in(client)
    return client


def reset_form(mailoutbox) -> tuple[Client, str]:
    """The browser that followed the emailed link, and the form it was sent on to."""
    (message,) = mailoutbox
    match = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", message.body)
    assert match, message.body
    client = Client()
    return client, client.get(match.group(1)).url


def request_reset(mailoutbox, email: str = "owner@acme.test", **extra) -> str:
    r = Client().post("/accounts/password_reset/", {"email": email}, **extra)
    assert r.status_code == 302
    (message,) = mailoutbox
    return message.body


# Links from SITE_URL


@pytest.mark.parametrize(
    "extra",
    [
        {"HTTP_HOST": "localhost:31337"},
        {"HTTP_HOST": "127.0.0.1:8000"},
        {"HTTP_HOST": "localhost", "HTTP_X_FORWARDED_PROTO": "http"},
    ],
    ids=["forged-port", "plain", "behind-tls-proxy"],
)
def test_reset_links_point_at_site_url_whatever_the_host(owner, mailoutbox, settings, extra):
    settings.SITE_URL = SITE
    body = request_reset(mailoutbox, **extra)
    links = re.findall(r"\S+://\S+", body)
    assert len(links) == 1
    assert links[0].startswith(f"{SITE}/accounts/reset/")
    assert "31337" not in body and "http://" not in body


def test_reset_links_keep_site_url_s_port_and_scheme(owner, mailoutbox, settings):
    settings.SITE_URL = "http://127.0.0.1:8000"
    body = request_reset(mailoutbox, HTTP_HOST="localhost:31337")
    assert "http://127.0.0.1:8000/accounts/reset/" in body


def test_invitation_links_point_at_site_url_whatever_the_host(
    owner, mailoutbox, settings, django_capture_on_commit_callbacks
):
    settings.SITE_URL = SITE
    client = Client(HTTP_HOST="localhost:31337")
    client.force_login(owner.user)
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post(
            "/orgs/acme/members/invite/", {"email": "new@example.test", "role": "member"}
        )
    assert r.status_code == 302
    (message,) = mailoutbox
    assert re.findall(r"\S+://\S+", message.body)[0].startswith(f"{SITE}/invitations/")
    assert "31337" not in message.body


# Password reset


def test_the_reset_form_offers_to_revoke_tokens_checked_and_says_sessions_end(owner, mailoutbox):
    request_reset(mailoutbox)
    client, url = reset_form(mailoutbox)
    page = client.get(url).content.decode()
    assert re.search(r'<input type="checkbox" name="revoke_api_tokens"[^>]* checked', page)
    assert "Every session of your account" in page


@pytest.mark.parametrize("revoke", [True, False], ids=["revoking", "keeping-tokens"])
def test_a_reset_ends_every_session_and_revokes_tokens_if_asked(owner, tokens, mailoutbox, revoke):
    sessions = [signed_in_elsewhere(owner), client_for(owner)]
    request_reset(mailoutbox)
    browser, url = reset_form(mailoutbox)
    mark = audit_mark()
    form = {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    if revoke:
        form["revoke_api_tokens"] = "on"
    r = browser.post(url, form)
    assert r.status_code == 302 and r["Location"] == "/accounts/reset/done/"
    assert not any(signed_in(client) for client in sessions)
    revoked = [t.pk for t in ApiToken.objects.exclude(revoked_at=None).order_by("pk")]
    assert revoked == ([tokens[0].pk, tokens[1].pk] if revoke else [])
    events = events_since(mark)
    assert [e.action for e in events] == ["user.password_reset"] + (
        ["api_token.revoked"] * 2 if revoke else []
    )
    for event, token in zip(events[1:], tokens, strict=False):
        assert event.org_id == token.org_id and event.target_id == str(token.pk)
        assert event.details["reason"] == "password_reset"
        assert event.actor_label == "owner@acme.test"


# Password change


def test_the_change_form_offers_to_revoke_tokens_checked_and_says_sessions_end(owner):
    page = client_for(owner).get("/accounts/password_change/").content.decode()
    assert re.search(r'<input type="checkbox" name="revoke_api_tokens"[^>]* checked', page)
    assert "Your other sessions" in page and "this one stays signed in" in page


@pytest.mark.parametrize("revoke", [True, False], ids=["revoking", "keeping-tokens"])
def test_a_change_keeps_this_session_ends_the_others_and_revokes_tokens_if_asked(
    owner, tokens, revoke
):
    here, elsewhere = client_for(owner), signed_in_elsewhere(owner)
    mark = audit_mark()
    form = {
        "old_password": PASSWORD,
        "new_password1": NEW_PASSWORD,
        "new_password2": NEW_PASSWORD,
    }
    if revoke:
        form["revoke_api_tokens"] = "on"
    r = here.post("/accounts/password_change/", form)
    assert r.status_code == 302 and r["Location"] == "/accounts/password_change/done/"
    assert signed_in(here)
    assert not signed_in(elsewhere)
    revoked = [t.pk for t in ApiToken.objects.exclude(revoked_at=None).order_by("pk")]
    assert revoked == ([tokens[0].pk, tokens[1].pk] if revoke else [])
    actions = [e.action for e in events_since(mark)]
    assert actions == ["user.password_changed"] + (["api_token.revoked"] * 2 if revoke else [])
    assert [api_status(t) for t in tokens] == ([401, 401, 200] if revoke else [200] * 3)


def test_a_refused_change_revokes_nothing(owner, tokens):
    here = client_for(owner)
    mark = audit_mark()
    r = here.post(
        "/accounts/password_change/",
        {
            "old_password": "wrong",
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
            "revoke_api_tokens": "on",
        },
    )
    assert r.status_code == 200
    assert not ApiToken.objects.exclude(revoked_at=None).exists()
    # The wrong password counts as a failed sign-in; nothing is revoked.
    assert [e.action for e in events_since(mark)] == ["user.login_failed"]
