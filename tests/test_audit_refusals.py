"""No event without its change, and no change without its event.

A refused request or a page view writes no event and changes nothing; if the audit insert
fails, the change rolls back.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass, field

import pytest
from django.db import DatabaseError, connection
from django.test import Client
from django.urls import resolve
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from accounts.models import Invitation, Membership, Role
from audit.trail import Actor
from keys.models import AccessKey, KeyStatus
from keys.services import create_key, deactivate_key, revoke_key

from .audit_support import (
    NEW_PASSWORD,
    events_since,
    open_reset_form,
    pending_invitation,
    reset_link,
    send,
    world,
)
from .conftest import PASSWORD, audit_mark, client_for, new_key

# 1. Refused requests and page views.


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
