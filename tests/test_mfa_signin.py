"""Signing in with a second factor: the password alone does not sign in a user who has
one; a code, a recovery code (once) or a passkey finishes the sign-in."""

from __future__ import annotations

import time

import pytest
from django.test import Client

from audit.models import AuditEvent
from mfa.pending import PENDING_AT_KEY, PENDING_USER_KEY

from .conftest import PASSWORD, audit_mark, client_for, events_since
from .mfa_support import enrol_totp, sign_in_with_password, totp_code

VERIFY = "/accounts/login/verify/"
KEYS = "/orgs/acme/keys/"


@pytest.fixture
def enrolled(owner):
    """The owner with an authenticator app: (secret, recovery codes)."""
    secret, codes = enrol_totp(client_for(owner))
    return secret, codes


def signed_in_user_id(client: Client) -> str | None:
    return client.session.get("_auth_user_id")


def test_it_signs_in_a_user_without_a_factor_with_the_password(owner):
    client = Client()
    response = sign_in_with_password(client, owner.user.email, PASSWORD)
    assert response["Location"] == "/"
    assert signed_in_user_id(client) == str(owner.user.pk)


def test_the_password_alone_does_not_sign_in_a_user_with_a_factor(owner, enrolled):
    client = Client()
    mark = audit_mark()
    response = sign_in_with_password(client, owner.user.email, PASSWORD, next_url=KEYS)
    assert response.status_code == 302
    assert response["Location"] == f"{VERIFY}?next=%2Forgs%2Facme%2Fkeys%2F"
    assert signed_in_user_id(client) is None
    assert client.session[PENDING_USER_KEY] == owner.user.pk
    assert client.get(KEYS)["Location"].startswith("/accounts/login/")
    assert "user.login" not in [e.action for e in events_since(mark)]
    page = client.get(response["Location"])
    assert page.status_code == 200 and "Two-factor sign-in" in page.content.decode()


def test_a_valid_code_signs_in_and_returns_to_the_page_asked_for(owner, enrolled):
    secret, _ = enrolled
    client = Client()
    sign_in_with_password(client, owner.user.email, PASSWORD, next_url=KEYS)
    mark = audit_mark()
    response = client.post(VERIFY, {"code": totp_code(secret, 1), "next": KEYS})
    assert response["Location"] == KEYS
    assert signed_in_user_id(client) == str(owner.user.pk)
    assert PENDING_USER_KEY not in client.session
    assert client.get(KEYS).status_code == 200
    assert [e.action for e in events_since(mark)] == ["user.login"]


@pytest.mark.parametrize("next_url", ["https://evil.test/", "//evil.test/", "javascript:alert(1)"])
def test_it_drops_a_next_that_leaves_the_site(owner, enrolled, next_url):
    secret, _ = enrolled
    client = Client()
    first = sign_in_with_password(client, owner.user.email, PASSWORD, next_url=next_url)
    assert first["Location"] == VERIFY
    response = client.post(VERIFY, {"code": totp_code(secret, 1), "next": next_url})
    assert response["Location"] == "/"


def test_it_throttles_and_audits_wrong_codes(owner, enrolled, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 60
    secret, _ = enrolled
    client = Client()
    sign_in_with_password(client, owner.user.email, PASSWORD)
    mark = audit_mark()
    wrong = "123456" if totp_code(secret, 1) != "123456" else "654321"
    refused = client.post(VERIFY, {"code": wrong})
    assert refused.status_code == 400
    assert "not right" in refused.content.decode()
    # The right code right after a wrong one is refused too: the device waits 60 s now.
    throttled = client.post(VERIFY, {"code": totp_code(secret, 1)})
    assert throttled.status_code == 400
    assert "Too many wrong codes" in throttled.content.decode()
    assert signed_in_user_id(client) is None
    events = events_since(mark)
    assert [(e.action, e.details["kind"], e.details["reason"]) for e in events] == [
        ("user.mfa_failed", "totp", "wrong code"),
        ("user.mfa_failed", "totp", "throttled"),
    ]
    assert all(e.actor_user_id == owner.user.pk and e.org_id is None for e in events)


def test_a_recovery_code_works_exactly_once(owner, enrolled):
    _, codes = enrolled
    client = Client()
    sign_in_with_password(client, owner.user.email, PASSWORD)
    mark = audit_mark()
    # Typed in capitals and without the dashes, it still matches.
    response = client.post(VERIFY, {"code": codes[3].upper().replace("-", " ")})
    assert response["Location"] == "/"
    assert signed_in_user_id(client) == str(owner.user.pk)
    used = AuditEvent.objects.get(pk__gt=mark, action="user.recovery_code_used")
    assert used.details["codes_left"] == 9
    assert "9 left" in client.get("/accounts/security/").content.decode()

    again = Client()
    sign_in_with_password(again, owner.user.email, PASSWORD)
    refused = again.post(VERIFY, {"code": codes[3]})
    assert refused.status_code == 400
    assert signed_in_user_id(again) is None
    failed = AuditEvent.objects.filter(pk__gt=mark, action="user.mfa_failed").get()
    assert failed.details["kind"] == "recovery"


def test_it_forgets_a_half_done_sign_in_after_a_few_minutes(owner, enrolled):
    secret, _ = enrolled
    client = Client()
    sign_in_with_password(client, owner.user.email, PASSWORD, next_url=KEYS)
    session = client.session
    session[PENDING_AT_KEY] = int(time.time()) - 10 * 60
    session.save()
    response = client.post(VERIFY, {"code": totp_code(secret, 1), "next": KEYS})
    assert response["Location"] == "/accounts/login/?next=%2Forgs%2Facme%2Fkeys%2F"
    assert signed_in_user_id(client) is None
    assert PENDING_USER_KEY not in client.session


def test_the_second_step_needs_the_first(db, client):
    response = client.get(VERIFY)
    assert response["Location"] == "/accounts/login/"
    assert client.post(VERIFY, {"code": "123456"})["Location"] == "/accounts/login/"


def test_it_refuses_a_passkey_answer_that_does_not_check_out(owner, enrolled):
    client = Client()
    sign_in_with_password(client, owner.user.email, PASSWORD)
    mark = audit_mark()
    response = client.post("/accounts/login/passkey/", {"credential": '{"id": "nope"}'})
    assert response.status_code == 400
    assert signed_in_user_id(client) is None
    [event] = events_since(mark)
    assert (event.action, event.details["kind"]) == ("user.mfa_failed", "passkey")
