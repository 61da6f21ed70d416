"""Free text refuses control characters and text-direction controls everywhere it enters:
forms, service functions, the API and management commands. Text stored before the rule is
shown isolated, so it cannot reorder what surrounds it."""

from __future__ import annotations

import html
import json

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.test import Client

from accounts import services as account_services
from accounts import tokens as account_tokens
from accounts.models import ApiToken, Invitation, Organization, Role, User
from audit.trail import Actor
from excloud_portal.text import UnsafeText, check_text, printable
from keys import services as key_services
from keys.models import AccessKey

from .conftest import PASSWORD, audit_mark, client_for, events_since, new_key

# Rows: (what it is, the text). Each sits in the middle of otherwise ordinary text, where
# stripping outer whitespace does not remove it.
UNSAFE = [
    ("crlf", "Acme\r\nBcc: all@example.test"),
    ("esc", "Acme\x1b[2J\x1b[31mPWNED"),
    ("bel", "Acme\x07"),
    ("tab", "Ac\tme"),
    ("nul", "Ac\x00me"),
    ("del", "Ac\x7fme"),
    ("c1", "Ac\x9bme"),
    ("rlo", "Acme\u202efdp.exe"),
    ("lre", "Acme\u202a"),
    ("rli", "Acme\u2067x\u2069"),
    ("rlm", "Acme\u200f"),
    ("alm", "Acme\u061c"),
]
IDS = [name for name, _ in UNSAFE]
TEXTS = [text for _, text in UNSAFE]
# Letters of every script, emoji and joiners are text.
SAFE = ["Acme", "Ácme Ünïcode", "株式会社", "שלום", "مرحبا", "👩‍💻 team", "a\u200db"]


def page_text(response) -> str:
    return html.unescape(response.content.decode())


@pytest.mark.parametrize("text", TEXTS, ids=IDS)
def test_the_rule_refuses_control_and_direction_characters(text):
    with pytest.raises(UnsafeText, match="cannot contain control characters"):
        check_text(text, "Names")
    assert check_text(printable(text)) == printable(text)


@pytest.mark.parametrize("text", SAFE)
def test_the_rule_lets_text_of_every_script_through(text):
    assert check_text(text) == text


# Organisation names, everywhere an org is named.


@pytest.mark.parametrize("text", TEXTS, ids=IDS)
def test_sign_up_refuses_an_unsafe_org_name_and_stores_nothing(db, text):
    mark = audit_mark()
    r = Client().post(
        "/accounts/signup/",
        {"email": "ada@example.test", "password": PASSWORD, "org_name": text},
    )
    assert r.status_code == 400
    assert "cannot contain control characters" in page_text(r)
    assert not User.objects.exists() and not Organization.objects.exists()
    assert events_since(mark) == []


@pytest.mark.parametrize("text", TEXTS, ids=IDS)
def test_the_org_services_refuse_an_unsafe_name(owner, text):
    mark = audit_mark()
    with pytest.raises(UnsafeText):
        account_services.create_org(owner.user, text, Actor.for_user(owner.user))
    with pytest.raises(UnsafeText):
        account_services.sign_up("ada@example.test", PASSWORD, text, None)
    assert list(Organization.objects.values_list("slug", flat=True)) == ["acme"]
    assert not User.objects.filter(email="ada@example.test").exists()
    assert events_since(mark) == []


@pytest.mark.parametrize("text", TEXTS, ids=IDS)
def test_create_org_command_refuses_an_unsafe_name(db, text):
    with pytest.raises(CommandError, match="cannot contain control characters"):
        call_command("create_org", "initech", owner="new@example.test", name=text)
    assert not Organization.objects.exists() and not User.objects.exists()


def test_an_invitation_to_an_org_named_before_the_rule_is_sent(
    owner, mailoutbox, django_capture_on_commit_callbacks
):
    Organization.objects.filter(pk=owner.org_id).update(name="Acme\r\nBcc: all@example.test\u202e")
    with django_capture_on_commit_callbacks(execute=True):
        r = client_for(owner).post(
            "/orgs/acme/members/invite/", {"email": "new@example.test", "role": Role.MEMBER}
        )
    assert r.status_code == 302
    (message,) = mailoutbox
    assert message.subject == "Join AcmeBcc: all@example.test on Excloud"


# Invitations, tokens, keys and reasons.


@pytest.mark.parametrize("text", ["new@exa\u202emple.test", "new\u200f@example.test"])
def test_it_refuses_an_unsafe_invitation_address(owner, text):
    client = client_for(owner)
    mark = audit_mark()
    r = client.post("/orgs/acme/members/invite/", {"email": text, "role": Role.MEMBER})
    assert r.status_code == 400
    with pytest.raises(account_services.MembershipError, match="control characters"):
        account_services.invite(owner, Actor.for_user(owner.user), text, Role.MEMBER)
    assert not Invitation.objects.exists() and mail.outbox == []
    assert events_since(mark) == []


@pytest.mark.parametrize("text", TEXTS, ids=IDS)
def test_it_refuses_an_unsafe_token_name(owner, text):
    client = client_for(owner)
    mark = audit_mark()
    r = client.post("/orgs/acme/tokens/", {"name": text, "expires_in": "30"})
    assert r.status_code == 400
    assert "control characters" in page_text(r)
    with pytest.raises(account_tokens.ApiTokenError, match="control characters"):
        account_tokens.create_api_token(owner, Actor.for_user(owner.user), text)
    assert not ApiToken.objects.exists()
    assert events_since(mark) == []


@pytest.fixture
def token(owner) -> str:
    return account_tokens.create_api_token(owner, Actor.for_user(owner.user), "t").plaintext


def api(token: str, method: str, path: str, body=None):
    return Client().generic(
        method,
        f"/api/v1{path}",
        json.dumps(body) if body is not None else "",
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


@pytest.mark.parametrize("text", TEXTS, ids=IDS)
def test_the_api_refuses_unsafe_key_names(owner, token, text):
    key, _ = new_key(owner, "laptop")
    mark = audit_mark()
    for method, path, body in [
        ("POST", "/keys", {"name": text}),
        ("PATCH", f"/keys/{key.pk}", {"name": text}),
        ("POST", f"/keys/{key.pk}/rotate", {"name": text}),
    ]:
        r = api(token, method, path, body)
        assert r.status_code == 422, (path, r.content)
        assert "control characters" in r.json()["message"]
    assert list(AccessKey.objects.values_list("name", flat=True)) == ["laptop"]
    assert events_since(mark) == []


@pytest.mark.parametrize("text", TEXTS, ids=IDS)
def test_it_refuses_an_unsafe_revoke_reason(owner, text):
    key, _ = new_key(owner, "laptop")
    client = client_for(owner)
    mark = audit_mark()
    r = client.post(f"/orgs/acme/keys/{key.pk}/revoke/", {"reason": text})
    assert r.status_code == 200
    assert "control characters" in page_text(r)
    with pytest.raises(key_services.AccessKeyError, match="control characters"):
        key_services.revoke_key(owner, Actor.for_user(owner.user), key, text)
    key.refresh_from_db()
    assert key.status == "active" and key.status_reason == ""
    assert events_since(mark) == []


# Audit filters: the page, both exports and the API.


@pytest.mark.parametrize("param", ["actor", "target", "q"])
@pytest.mark.parametrize("text", ["owner\u202e@", "a\x1bb", "x\r\ny"], ids=["rlo", "esc", "crlf"])
def test_audit_filters_refuse_unsafe_text(owner, token, param, text):
    client = client_for(owner)
    mark = audit_mark()
    page = client.get("/orgs/acme/audit/", {param: text})
    assert page.status_code == 400
    assert "control characters" in page_text(page)
    for fmt in ("csv", "jsonl"):
        export = client.get(f"/orgs/acme/audit/export.{fmt}", {param: text})
        assert export.status_code == 400
        assert "control characters" in export.content.decode()
    r = Client().get(
        "/api/v1/audit/events", {param: text}, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 422
    assert r.json()["code"] == "validation_error"
    assert "control characters" in r.json()["message"]
    r = Client().get("/api/v1/keys", {"name": text}, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 422
    # Nothing was exported, so no export was recorded.
    assert [e.action for e in events_since(mark)] == []


# Text stored before the rule is isolated where it is shown.


def test_text_stored_before_the_rule_is_shown_isolated(owner):
    key, _ = new_key(owner, "laptop")
    AccessKey.objects.filter(pk=key.pk).update(name="gpj.\u202eexe")
    Organization.objects.filter(pk=owner.org_id).update(name="Acme\u202e")
    client = client_for(owner)
    keys = client.get("/orgs/acme/keys/").content.decode()
    assert "<bdi>gpj.\u202eexe</bdi>" in keys
    assert "<bdi>Acme\u202e</bdi>" in keys
    key_services.revoke_key(owner, Actor("user", "mallory\u202e@x.test", owner.user_id), key)
    audit = client.get("/orgs/acme/audit/").content.decode()
    assert "<bdi>mallory\u202e@x.test</bdi>" in audit
    assert "<bdi>from: active, inactive · name: gpj.\u202eexe · to: revoked</bdi>" in audit
