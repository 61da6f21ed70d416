"""API tokens: created and revoked on the profile page and by create_api_token, stored only
as a hash, refused once revoked or expired, and audited."""

from __future__ import annotations

import hashlib
import io
import re
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import RequestFactory
from django.utils import timezone

from accounts.models import ApiToken
from accounts.tokens import authenticate_api_token, create_api_token, revoke_api_token
from audit.models import AuditEvent
from audit.trail import Actor

from .conftest import client_for

TOKEN_RE = re.compile(r"exc_[A-Za-z0-9]{40}")


def make_token(membership, name="cli", **kwargs):
    return create_api_token(membership, Actor.for_user(membership.user), name, **kwargs)


def request():
    return RequestFactory().get("/api/v1/config", REMOTE_ADDR="198.51.100.4")


def test_it_creates_a_token_shown_once_and_stored_as_a_hash(member):
    client = client_for(member)
    response = client.post("/orgs/acme/tokens/", {"name": "laptop-cli", "expires_in": "30"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    plaintext = TOKEN_RE.search(response.content.decode()).group()
    token = ApiToken.objects.get()
    assert token.user == member.user and token.org == member.org
    assert token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert plaintext not in str(ApiToken.objects.values().get())
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    event = AuditEvent.objects.get(action="api_token.created")
    assert event.org == member.org and event.actor_user_id == member.user.pk
    assert plaintext not in str(event.details)
    # Shown once: the page afterwards lists the token by its prefix only.
    page = client.get("/orgs/acme/tokens/").content.decode()
    assert token.prefix in page and plaintext not in page
    assert "API tokens" in page


def test_it_rejects_a_bad_token_name(member):
    response = client_for(member).post("/orgs/acme/tokens/", {"name": "<b>", "expires_in": ""})
    assert response.status_code == 400
    assert not ApiToken.objects.exists()


def test_it_shows_members_only_their_own_tokens_and_managers_all(owner, member):
    mine = make_token(member, "member-token").token
    owners = make_token(owner, "owner-token").token
    member_page = client_for(member).get("/orgs/acme/tokens/").content.decode()
    assert mine.prefix in member_page and owners.prefix not in member_page
    owner_page = client_for(owner).get("/orgs/acme/tokens/").content.decode()
    assert mine.prefix in owner_page and owners.prefix in owner_page


def test_it_lets_a_member_revoke_their_own_token(member):
    token = make_token(member).token
    response = client_for(member).post(f"/orgs/acme/tokens/{token.pk}/revoke/")
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None and token.revoked_by == member.user
    event = AuditEvent.objects.get(action="api_token.revoked")
    assert event.target_id == str(token.pk) and event.actor_user_id == member.user.pk


def test_it_lets_an_admin_revoke_anyones_token(admin, member):
    token = make_token(member).token
    assert client_for(admin).post(f"/orgs/acme/tokens/{token.pk}/revoke/").status_code == 302
    token.refresh_from_db()
    assert token.revoked_by == admin.user


def test_it_hides_other_members_and_other_orgs_tokens(owner, member, auditor, outsider):
    token = make_token(owner).token
    for someone in (member, auditor):
        response = client_for(someone).post(f"/orgs/acme/tokens/{token.pk}/revoke/")
        assert response.status_code == 404
    assert client_for(outsider).post(f"/orgs/acme/tokens/{token.pk}/revoke/").status_code == 404
    assert client_for(outsider).post(f"/orgs/globex/tokens/{token.pk}/revoke/").status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None
    assert not AuditEvent.objects.filter(action="api_token.revoked").exists()


def test_it_refuses_get_on_revoke(member):
    token = make_token(member).token
    assert client_for(member).get(f"/orgs/acme/tokens/{token.pk}/revoke/").status_code == 405


def test_it_authenticates_a_valid_token_and_notes_its_use_once_a_minute(member):
    created = make_token(member)
    token, membership = authenticate_api_token(created.plaintext, request())
    assert token.pk == created.token.pk and membership == member
    first_use = ApiToken.objects.get().last_used_at
    assert first_use is not None
    authenticate_api_token(created.plaintext, request())
    assert ApiToken.objects.get().last_used_at == first_use
    ApiToken.objects.update(last_used_at=first_use - timedelta(minutes=2))
    authenticate_api_token(created.plaintext, request())
    assert ApiToken.objects.get().last_used_at > first_use


@pytest.mark.parametrize("bad", ["", "exc_", "exc_short", "Bearer x", "exc_" + "A" * 40])
def test_it_refuses_unknown_and_malformed_tokens_without_audit(member, bad):
    assert authenticate_api_token(bad, request()) is None
    assert not AuditEvent.objects.filter(action="api_token.rejected").exists()


def test_it_refuses_and_audits_a_revoked_token(member):
    created = make_token(member)
    revoke_api_token(member, Actor.for_user(member.user), created.token)
    cache.clear()
    assert authenticate_api_token(created.plaintext, request()) is None
    event = AuditEvent.objects.get(action="api_token.rejected")
    assert event.org == member.org and event.actor_user_id is None
    assert event.details["reason"] == "revoked"
    assert str(event.source_ip) == "198.51.100.4"
    # A client retrying in a loop does not write a row per request.
    assert authenticate_api_token(created.plaintext, request()) is None
    assert AuditEvent.objects.filter(action="api_token.rejected").count() == 1


def test_it_refuses_an_expired_token(member):
    created = make_token(member, expires_at=timezone.now() + timedelta(seconds=30))
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    cache.clear()
    assert authenticate_api_token(created.plaintext, request()) is None
    assert AuditEvent.objects.get(action="api_token.rejected").details["reason"] == "expired"


def test_it_refuses_the_token_of_someone_who_left_the_org(member):
    created = make_token(member)
    member.delete()
    cache.clear()
    assert authenticate_api_token(created.plaintext, request()) is None
    assert AuditEvent.objects.get(action="api_token.rejected").details["reason"] == "not a member"


def test_it_refuses_the_token_of_a_deactivated_user(member):
    created = make_token(member)
    member.user.is_active = False
    member.user.save()
    cache.clear()
    assert authenticate_api_token(created.plaintext, request()) is None
    event = AuditEvent.objects.get(action="api_token.rejected")
    assert event.details["reason"] == "user deactivated"


def test_create_api_token_prints_only_the_token(member):
    out = io.StringIO()
    call_command(
        "create_api_token",
        "--user",
        "MEMBER@acme.test",
        "--org",
        "acme",
        "--name",
        "ci",
        stdout=out,
    )
    printed = out.getvalue()
    assert TOKEN_RE.fullmatch(printed.strip())
    token = ApiToken.objects.get()
    assert token.name == "ci" and token.user == member.user
    event = AuditEvent.objects.get(action="api_token.created")
    assert event.actor_type == "system"


def test_create_api_token_refuses_a_non_member(member, outsider):
    with pytest.raises(CommandError, match="not a member"):
        call_command("create_api_token", "--user", "owner@globex.test", "--org", "acme")
    assert not ApiToken.objects.exists()
