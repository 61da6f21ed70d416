from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.http import HttpRequest
from django.test import Client
from django.utils import timezone

from accounts.models import Invitation, Membership, Organization, Role, User
from audit.models import AuditEvent

from .conftest import PASSWORD, client_for

NEW_PASSWORD = "another horse battery staple 43"


def text(response) -> str:
    return html.unescape(response.content.decode())


def signed_in_user_id(client: Client) -> int | None:
    value = client.session.get("_auth_user_id")
    return int(value) if value else None


# Sign-up.


def test_it_signs_up_a_user_with_an_org_of_their_own(db):
    client = Client()
    r = client.post(
        "/accounts/signup/",
        {"email": "Ada@Example.test", "password": PASSWORD, "org_name": "Initrode"},
    )
    assert r.status_code == 302
    assert r["Location"] == "/orgs/initrode/keys/"
    user = User.objects.get()
    assert user.email == "ada@example.test"
    assert user.check_password(PASSWORD)
    membership = Membership.objects.get(user=user)
    assert (membership.org.slug, membership.org.name, membership.role) == (
        "initrode",
        "Initrode",
        Role.OWNER,
    )
    assert signed_in_user_id(client) == user.pk
    page = client.get(r["Location"])
    assert page.status_code == 200
    assert "You own Initrode" in text(page)
    assert set(AuditEvent.objects.values_list("action", "actor_user_id")) == {
        ("user.signed_up", user.pk),
        ("org.created", user.pk),
        ("user.login", user.pk),
    }


def test_it_names_the_org_after_the_email_when_no_name_is_given(db):
    client = Client()
    r = client.post("/accounts/signup/", {"email": "bob@example.test", "password": PASSWORD})
    assert r.status_code == 302
    assert Organization.objects.get().name == "bob"


def test_it_gives_a_second_org_of_the_same_name_its_own_slug(owner):
    r = Client().post(
        "/accounts/signup/",
        {"email": "ada@example.test", "password": PASSWORD, "org_name": "Acme"},
    )
    assert r.status_code == 302
    assert r["Location"] == "/orgs/acme-2/keys/"
    assert Membership.objects.get(user__email="ada@example.test").org.slug == "acme-2"
    # The first Acme keeps its one member.
    assert list(Membership.objects.filter(org__slug="acme")) == [owner]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"email": "OWNER@acme.test"}, "An account with this email exists. Sign in instead."),
        ({"email": "not-an-email"}, "Enter a valid email address."),
        ({"email": ""}, "This field is required."),
        ({"password": ""}, "This field is required."),
        ({"password": "short"}, "This password is too short."),
        ({"password": "12345678901234"}, "This password is entirely numeric."),
        ({"org_name": "x" * 101}, "Ensure this value has at most 100 characters"),
    ],
)
def test_it_refuses_a_bad_sign_up(owner, data, message):
    users, orgs, events = (
        User.objects.count(),
        Organization.objects.count(),
        AuditEvent.objects.count(),
    )
    form = {"email": "ada@example.test", "password": PASSWORD, "org_name": "Initrode"} | data
    client = Client()
    r = client.post("/accounts/signup/", form)
    assert r.status_code == 400
    assert message in text(r)
    assert (User.objects.count(), Organization.objects.count()) == (users, orgs)
    assert AuditEvent.objects.count() == events
    assert signed_in_user_id(client) is None


def test_it_refuses_an_empty_sign_up(db):
    r = Client().post("/accounts/signup/")
    assert r.status_code == 400
    assert "This field is required." in text(r)
    assert not User.objects.exists()


# Signing in and out.


def test_it_signs_in_with_email_in_any_case_and_out(owner):
    client = Client()
    r = client.post("/accounts/login/", {"username": "Owner@ACME.test", "password": PASSWORD})
    assert r.status_code == 302
    assert signed_in_user_id(client) == owner.user_id
    home = client.get(r["Location"])
    assert home.status_code == 302
    assert home["Location"] == "/orgs/acme/keys/"
    assert client.get("/orgs/acme/keys/").status_code == 200

    assert client.get("/accounts/logout/").status_code == 405
    r = client.post("/accounts/logout/")
    assert r.status_code == 302
    assert r["Location"] == "/accounts/login/"
    assert signed_in_user_id(client) is None
    r = client.get("/orgs/acme/keys/")
    assert r.status_code == 302
    assert r["Location"].startswith("/accounts/login/?next=")


@pytest.mark.parametrize(
    ("username", "password"),
    [("owner@acme.test", "wrong password"), ("nobody@acme.test", PASSWORD)],
)
def test_it_refuses_a_wrong_sign_in(owner, username, password):
    client = Client()
    r = client.post("/accounts/login/", {"username": username, "password": password})
    assert r.status_code == 200
    assert "do not match an account" in text(r)
    assert signed_in_user_id(client) is None


def test_it_returns_to_the_page_asked_for_after_sign_in(owner):
    client = Client()
    r = client.get("/orgs/acme/members/")
    assert r["Location"] == "/accounts/login/?next=/orgs/acme/members/"
    r = client.post(
        r["Location"],
        {"username": "owner@acme.test", "password": PASSWORD, "next": "/orgs/acme/members/"},
    )
    assert r["Location"] == "/orgs/acme/members/"


# Password reset.


def reset_link(mail) -> str:
    match = re.search(r"https?://[^/\s]+(/accounts/reset/\S+/)", mail.body)
    assert match, mail.body
    return match.group(1)


def reset_password(client: Client, mailoutbox, email: str) -> None:
    r = client.post("/accounts/password_reset/", {"email": email})
    assert r.status_code == 302
    assert r["Location"] == "/accounts/password_reset/done/"
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == [email.lower()]
    link = reset_link(mailoutbox[0])
    form = client.get(link, follow=True)
    assert form.status_code == 200
    assert "Choose a new password" in text(form)
    set_url = form.redirect_chain[-1][0]
    r = client.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert r.status_code == 302
    assert r["Location"] == "/accounts/reset/done/"
    # The link works once.
    assert "This link no longer works" in text(client.get(link, follow=True))


def test_it_resets_a_password_by_email(owner, mailoutbox):
    reset_password(Client(), mailoutbox, "Owner@Acme.test")
    client = Client()
    assert not client.login(request=HttpRequest(), username="owner@acme.test", password=PASSWORD)
    assert client.login(request=HttpRequest(), username="owner@acme.test", password=NEW_PASSWORD)


def test_it_sends_no_reset_email_to_an_unknown_address(db, mailoutbox):
    # Same answer as for a known address, so the page does not tell who has an account.
    r = Client().post("/accounts/password_reset/", {"email": "nobody@example.test"})
    assert r.status_code == 302
    assert r["Location"] == "/accounts/password_reset/done/"
    assert mailoutbox == []


# Invitations.


def invitation_path(mail) -> str:
    match = re.search(r"(/invitations/[A-Za-z0-9_-]+/)", mail.body)
    assert match, mail.body
    assert settings.SITE_URL + match.group(1) in mail.body
    return match.group(1)


@pytest.fixture
def send_invitation(owner, mailoutbox, django_capture_on_commit_callbacks):
    """Invite an address to Acme as the owner, through the members page; return the link."""

    def send(email: str, role: str = Role.MEMBER) -> str:
        sent = len(mailoutbox)
        with django_capture_on_commit_callbacks(execute=True):
            r = client_for(owner).post("/orgs/acme/members/invite/", {"email": email, "role": role})
        assert r.status_code == 302
        assert len(mailoutbox) == sent + 1
        return invitation_path(mailoutbox[-1])

    return send


def test_it_emails_an_invitation_link(owner, send_invitation, mailoutbox):
    path = send_invitation("New@Example.test", Role.ADMIN)
    mail = mailoutbox[0]
    assert mail.to == ["new@example.test"]
    assert mail.subject == "Join Acme on Excloud"
    assert "owner@acme.test invites you to join Acme on Excloud as admin." in mail.body
    token = path.split("/")[2]
    invitation = Invitation.objects.get()
    # Only a hash of the token is stored.
    assert token not in invitation.token_hash
    assert (invitation.email, invitation.role) == ("new@example.test", Role.ADMIN)


def test_it_does_not_email_an_invitation_that_was_not_stored(owner, member, mailoutbox):
    # Inviting someone who is already a member fails with a message and sends nothing.
    r = client_for(owner).post(
        "/orgs/acme/members/invite/", {"email": "MEMBER@acme.test", "role": Role.ADMIN}
    )
    assert r.status_code == 400
    assert "member@acme.test is already a member of Acme." in text(r)
    assert not Invitation.objects.exists()
    assert mailoutbox == []


def test_it_joins_a_signed_in_user_with_the_matching_email(outsider, send_invitation):
    path = send_invitation("Owner@Globex.test", Role.ADMIN)
    client = client_for(outsider)
    page = client.get(path)
    assert page.status_code == 200
    assert "Accept and join" in text(page)
    r = client.post(path)
    assert r.status_code == 302
    assert r["Location"] == "/orgs/acme/keys/"
    joined = Membership.objects.get(org__slug="acme", user=outsider.user)
    assert joined.role == Role.ADMIN
    assert "You joined Acme as admin." in text(client.get(r["Location"]))
    invitation = Invitation.objects.get()
    assert invitation.accepted_by == outsider.user
    assert not invitation.is_pending
    event = AuditEvent.objects.get(action="member.joined")
    assert (event.org.slug, event.actor_user_id) == ("acme", outsider.user_id)
    # The user keeps their own org, and the link works once.
    assert Membership.objects.filter(user=outsider.user).count() == 2
    assert client.post(path).status_code == 404
    assert Membership.objects.filter(user=outsider.user).count() == 2


def test_it_joins_a_user_who_signs_in_from_the_invitation(outsider, send_invitation):
    path = send_invitation("owner@globex.test", Role.AUDITOR)
    client = Client()
    page = client.get(path)
    assert page.status_code == 200
    login_url = f"/accounts/login/?next={path}"
    assert f'href="{login_url}"' in page.content.decode()
    r = client.post(
        login_url, {"username": "owner@globex.test", "password": PASSWORD, "next": path}
    )
    assert r["Location"] == path
    r = client.post(path)
    assert r.status_code == 302
    assert Membership.objects.get(org__slug="acme", user=outsider.user).role == Role.AUDITOR


def test_it_signs_up_a_new_user_into_the_inviting_org(owner, send_invitation):
    path = send_invitation("New@Example.test", Role.MEMBER)
    orgs = Organization.objects.count()
    client = Client()
    page = client.get(path)
    assert page.status_code == 200
    assert 'value="new@example.test"' in page.content.decode()
    r = client.post(path, {"email": "new@example.test", "password": PASSWORD})
    assert r.status_code == 302
    assert r["Location"] == "/orgs/acme/keys/"
    user = User.objects.get(email="new@example.test")
    assert signed_in_user_id(client) == user.pk
    assert [(m.org.slug, m.role) for m in Membership.objects.filter(user=user)] == [
        ("acme", Role.MEMBER)
    ]
    assert Organization.objects.count() == orgs
    assert client.get("/orgs/acme/keys/").status_code == 200
    assert not Invitation.objects.get().is_pending


def test_it_refuses_a_signed_in_user_with_another_email(outsider, send_invitation):
    path = send_invitation("someone@example.test")
    client = client_for(outsider)
    page = client.get(path)
    assert "This invitation is for someone@example.test" in text(page)
    assert "Accept and join" not in text(page)
    r = client.post(path)
    assert r.status_code == 400
    assert "This invitation is for someone@example.test." in text(r)
    assert not Membership.objects.filter(org__slug="acme", user=outsider.user).exists()
    assert Invitation.objects.get().is_pending
    assert not AuditEvent.objects.filter(action="member.joined").exists()


def test_it_refuses_a_sign_up_with_another_email_from_an_invitation(owner, send_invitation):
    path = send_invitation("someone@example.test")
    r = Client().post(path, {"email": "other@example.test", "password": PASSWORD})
    assert r.status_code == 400
    assert "This invitation is for someone@example.test." in text(r)
    assert not User.objects.filter(email="other@example.test").exists()
    assert Invitation.objects.get().is_pending


def test_it_refuses_an_empty_sign_up_from_an_invitation(owner, send_invitation):
    path = send_invitation("someone@example.test")
    r = Client().post(path)
    assert r.status_code == 400
    assert "This field is required." in text(r)
    assert not User.objects.filter(email="someone@example.test").exists()
    assert Invitation.objects.get().is_pending


def test_it_refuses_a_sign_up_from_an_invitation_to_an_existing_account(
    owner, member, send_invitation
):
    Membership.objects.filter(pk=member.pk).delete()
    path = send_invitation("member@acme.test")
    r = Client().post(path, {"email": "member@acme.test", "password": NEW_PASSWORD})
    assert r.status_code == 400
    assert "An account with this email exists. Sign in instead." in text(r)
    assert not User.objects.get(email="member@acme.test").check_password(NEW_PASSWORD)
    assert Invitation.objects.get().is_pending


def expire(invitation: Invitation) -> None:
    Invitation.objects.filter(pk=invitation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )


def withdraw(invitation: Invitation) -> None:
    r = client_for(Membership.objects.get(org=invitation.org, role=Role.OWNER)).post(
        f"/orgs/acme/invitations/{invitation.pk}/revoke/"
    )
    assert r.status_code == 302


@pytest.mark.parametrize("spoil", [expire, withdraw], ids=["expired", "withdrawn"])
def test_it_refuses_a_spoilt_invitation(outsider, send_invitation, spoil):
    path = send_invitation("owner@globex.test")
    spoil(Invitation.objects.get())
    signed_in, anonymous = client_for(outsider), Client()
    for client in (signed_in, anonymous):
        r = client.get(path)
        assert r.status_code == 404
        assert "This invitation is no longer valid" in text(r)
    assert signed_in.post(path).status_code == 404
    r = anonymous.post(path, {"email": "owner@globex.test", "password": PASSWORD})
    assert r.status_code == 404
    assert not Membership.objects.filter(org__slug="acme", user=outsider.user).exists()
    assert not AuditEvent.objects.filter(action="member.joined").exists()


def test_it_expires_invitations_after_seven_days(owner, send_invitation):
    before = timezone.now()
    send_invitation("someone@example.test")
    after = timezone.now()
    invitation = Invitation.objects.get()
    # Seven days from the moment it was sent, however long sending it took.
    assert before + timedelta(days=7) <= invitation.expires_at <= after + timedelta(days=7)


def test_it_refuses_an_unknown_invitation_token(db):
    r = Client().get("/invitations/not-a-real-token/")
    assert r.status_code == 404
    assert "This invitation is no longer valid" in text(r)


def test_it_replaces_a_pending_invitation_for_the_same_address(outsider, send_invitation):
    first = send_invitation("owner@globex.test", Role.MEMBER)
    second = send_invitation("owner@globex.test", Role.ADMIN)
    client = client_for(outsider)
    assert client.post(first).status_code == 404
    assert client.post(second).status_code == 302
    assert Membership.objects.get(org__slug="acme", user=outsider.user).role == Role.ADMIN


# Several organisations.


def test_it_shows_every_org_of_a_user_and_names_the_org_in_urls(owner, outsider):
    Membership.objects.create(org=owner.org, user=outsider.user, role=Role.MEMBER)
    client = client_for(outsider)

    acme = client.get("/orgs/acme/keys/")
    assert acme.context["org"].slug == "acme"
    switcher = acme.content.decode()
    assert re.search(r'href="/orgs/acme/keys/"[^>]*aria-current="true"[^>]*>\s*<bdi>Acme', switcher)
    assert re.search(r'href="/orgs/globex/keys/"[^>]*>\s*<bdi>Globex', switcher)
    assert not re.search(r'href="/orgs/globex/keys/"[^>]*aria-current', switcher)

    globex = client.get("/orgs/globex/keys/")
    assert globex.context["org"].slug == "globex"
    assert re.search(
        r'href="/orgs/globex/keys/"[^>]*aria-current="true"[^>]*>\s*<bdi>Globex',
        globex.content.decode(),
    )

    orgs = text(client.get("/orgs/"))
    assert "Acme" in orgs and "you are member" in orgs
    assert "Globex" in orgs and "you are owner" in orgs

    # A key made under /orgs/globex/ belongs to Globex and shows only there.
    r = client.post("/orgs/globex/keys/new/", {"name": "laptop", "creation_token": "t-1"})
    assert r.status_code == 200
    key = outsider.org.access_keys.get()
    assert key.pk in client.get("/orgs/globex/keys/").content.decode()
    assert key.pk not in client.get("/orgs/acme/keys/").content.decode()
    assert client.get(f"/orgs/acme/keys/{key.pk}/").status_code == 404


# The create_org command.


def test_it_creates_an_org_and_its_owner_from_the_command(db, capsys):
    call_command("create_org", "initech", owner="New@X.example")
    user = User.objects.get()
    assert user.email == "new@x.example"
    org = Organization.objects.get()
    assert (org.slug, org.name) == ("initech", "initech")
    assert Membership.objects.filter(org=org, user=user, role=Role.OWNER).exists()
    out = capsys.readouterr().out
    assert "Created organisation initech owned by new@x.example." in out
    assert "has no password yet" in out
    event = AuditEvent.objects.get()
    assert (event.action, event.org, event.actor_type) == ("org.created", org, "system")


def test_it_lets_a_command_made_owner_choose_a_password_by_reset(db, mailoutbox):
    # The command tells the operator the new owner can use the password reset page.
    call_command("create_org", "initech", owner="new@x.example")
    client = Client()
    assert not client.login(request=HttpRequest(), username="new@x.example", password="")
    reset_password(client, mailoutbox, "new@x.example")
    assert client.login(request=HttpRequest(), username="new@x.example", password=NEW_PASSWORD)
    assert client.get("/orgs/initech/keys/").status_code == 200


def test_it_makes_an_existing_user_owner_from_the_command(owner):
    call_command("create_org", "initech", owner="OWNER@acme.test", name="Initech")
    assert User.objects.count() == 1
    org = Organization.objects.get(slug="initech")
    assert org.name == "Initech"
    assert Membership.objects.get(org=org).user == owner.user
    assert owner.user.check_password(PASSWORD)


@pytest.mark.parametrize(
    ("slug", "email"),
    [("acme", "new@x.example"), ("not a slug", "new@x.example"), ("initech", "not-an-email")],
)
def test_it_refuses_bad_create_org_arguments(owner, slug, email):
    orgs, users = Organization.objects.count(), User.objects.count()
    with pytest.raises(CommandError):
        call_command("create_org", slug, owner=email)
    assert (Organization.objects.count(), User.objects.count()) == (orgs, users)
