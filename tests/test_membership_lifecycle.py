"""What a member could do on the org's behalf ends with the role that allowed it: their
pending invitations when they can no longer invite, their API tokens when they leave."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from accounts import services, tokens
from accounts.models import INVITATION_LIFETIME, ApiToken, Invitation, Membership, Role, hash_token
from audit.trail import Actor

from .conftest import audit_mark, client_for, events_since


def invitation_from(sender: Membership, email: str, role: str) -> tuple[Invitation, str]:
    """A pending invitation as the invite service stores it, and its token."""
    token = f"token-{email}-{role}"
    invitation = Invitation.objects.create(
        org=sender.org,
        email=email,
        role=role,
        token_hash=hash_token(token),
        invited_by_id=sender.user_id,
        expires_at=timezone.now() + INVITATION_LIFETIME,
    )
    return invitation, token


def actor(m: Membership) -> Actor:
    return Actor.for_user(m.user)


def api_status(token: str) -> int:
    return Client().get("/api/v1/config", headers={"Authorization": f"Bearer {token}"}).status_code


@pytest.mark.parametrize("to", [Role.MEMBER, Role.AUDITOR])
def test_demoting_an_admin_withdraws_their_invitations(owner, admin, to):
    sent = [
        services.invite(admin, actor(admin), "a@example.test", Role.MEMBER),
        services.invite(admin, actor(admin), "b@example.test", Role.ADMIN),
    ]
    others, _ = invitation_from(owner, "c@example.test", Role.MEMBER)
    mark = audit_mark()
    services.change_role(owner, actor(owner), admin, to)
    assert list(Invitation.objects.pending().order_by("pk")) == [others]
    events = events_since(mark)
    assert [e.action for e in events] == ["member.role_changed", *["invitation.revoked"] * 2]
    for event, invitation in zip(events[1:], sent, strict=True):
        assert event.target_id == str(invitation.pk)
        assert event.actor_label == "owner@acme.test"
        assert event.details == {
            "email": invitation.email,
            "role": invitation.role,
            "invited_by": "admin@acme.test",
            "reason": "inviter_lost_access",
        }


def test_an_owner_made_admin_loses_only_the_invitations_to_become_owner(owner, admin):
    services.change_role(owner, actor(owner), admin, Role.OWNER)
    admin.refresh_from_db()
    to_owner, _ = invitation_from(admin, "o@example.test", Role.OWNER)
    to_admin, _ = invitation_from(admin, "a@example.test", Role.ADMIN)
    services.change_role(owner, actor(owner), admin, Role.ADMIN)
    assert list(Invitation.objects.pending()) == [to_admin]
    to_owner.refresh_from_db()
    assert to_owner.revoked_at is not None


def test_promoting_withdraws_nothing(owner, admin, member):
    invitation, _ = invitation_from(admin, "a@example.test", Role.MEMBER)
    mark = audit_mark()
    services.change_role(owner, actor(owner), admin, Role.OWNER)
    services.change_role(owner, actor(owner), member, Role.ADMIN)
    assert list(Invitation.objects.pending()) == [invitation]
    assert [e.action for e in events_since(mark)] == ["member.role_changed"] * 2


def test_removing_an_admin_withdraws_their_invitations(owner, admin):
    invitation = services.invite(admin, actor(admin), "a@example.test", Role.MEMBER)
    mark = audit_mark()
    r = client_for(owner).post(f"/orgs/acme/members/{admin.user_id}/remove/")
    assert r.status_code == 302
    assert not Invitation.objects.pending().exists()
    revoked = [e for e in events_since(mark) if e.action == "invitation.revoked"]
    assert [(e.target_id, e.details["reason"]) for e in revoked] == [
        (str(invitation.pk), "inviter_lost_access")
    ]


def test_demoting_in_the_members_page_withdraws_the_invitations_too(owner, admin):
    services.invite(admin, actor(admin), "a@example.test", Role.MEMBER)
    r = client_for(owner).post(f"/orgs/acme/members/{admin.user_id}/role/", {"role": "member"})
    assert r.status_code == 302
    assert not Invitation.objects.pending().exists()


@pytest.mark.parametrize("change", ["demoted", "removed", "deactivated"])
def test_an_invitation_from_someone_who_can_no_longer_invite_is_refused(
    owner, admin, outsider, change
):
    # Stored while the sender could invite; the sender's role then changed without the
    # invitation being withdrawn, as for invitations pending before withdrawals existed.
    invitation, token = invitation_from(admin, "owner@globex.test", Role.MEMBER)
    if change == "demoted":
        Membership.objects.filter(pk=admin.pk).update(role=Role.MEMBER)
    elif change == "removed":
        Membership.objects.filter(pk=admin.pk).delete()
    else:
        type(admin.user).objects.filter(pk=admin.user_id).update(is_active=False)
    mark = audit_mark()
    with pytest.raises(services.MembershipError, match="can no longer invite"):
        services.accept_invitation(token, outsider.user, actor(outsider))
    r = client_for(outsider).post(f"/invitations/{token}/")
    assert r.status_code == 400
    assert not Membership.objects.filter(org=owner.org, user=outsider.user).exists()
    assert [e.action for e in events_since(mark)] == ["user.login"]
    invitation.refresh_from_db()
    assert invitation.accepted_at is None


def test_an_invitation_to_become_owner_from_an_admin_is_refused(owner, admin, outsider):
    # An owner's invitation to become owner, with the owner since made admin.
    _, token = invitation_from(owner, "owner@globex.test", Role.OWNER)
    Membership.objects.filter(pk=owner.pk).update(role=Role.ADMIN)
    with pytest.raises(services.MembershipError, match="can no longer invite"):
        services.accept_invitation(token, outsider.user, actor(outsider))


def test_an_invitation_from_someone_who_still_may_invite_is_accepted(owner, admin, outsider):
    _, token = invitation_from(admin, "owner@globex.test", Role.MEMBER)
    membership = services.accept_invitation(token, outsider.user, actor(outsider))
    assert (membership.org, membership.role) == (owner.org, Role.MEMBER)


# API tokens


def test_removing_a_member_revokes_their_tokens_in_that_org_only(owner, member, other_org):
    elsewhere = Membership.objects.create(org=other_org, user=member.user, role=Role.MEMBER)
    here = tokens.create_api_token(member, actor(member), "laptop")
    there = tokens.create_api_token(elsewhere, actor(member), "laptop")
    owners = tokens.create_api_token(owner, actor(owner), "ci")
    mark = audit_mark()
    services.remove_member(owner, actor(owner), member)
    here.token.refresh_from_db()
    assert here.token.revoked_at is not None and here.token.revoked_by == owner.user
    assert ApiToken.objects.get(pk=there.token.pk).revoked_at is None
    assert ApiToken.objects.get(pk=owners.token.pk).revoked_at is None
    events = events_since(mark)
    assert [e.action for e in events] == ["member.removed", "api_token.revoked"]
    assert events[1].target_id == str(here.token.pk)
    assert events[1].details == {
        "name": "laptop",
        "prefix": here.token.prefix,
        "user": "member@acme.test",
        "reason": "member_removed",
    }
    assert api_status(there.plaintext) == 200


def test_a_removed_and_re_added_member_s_old_token_stays_dead(
    owner, member, mailoutbox, django_capture_on_commit_callbacks
):
    old = tokens.create_api_token(member, actor(member), "laptop").plaintext
    assert api_status(old) == 200
    r = client_for(owner).post(f"/orgs/acme/members/{member.user_id}/remove/")
    assert r.status_code == 302
    assert api_status(old) == 401
    # Invited back, they join again; the token from before does not come back with them.
    with django_capture_on_commit_callbacks(execute=True):
        r = client_for(owner).post(
            "/orgs/acme/members/invite/", {"email": "member@acme.test", "role": "member"}
        )
    assert r.status_code == 302
    path = "/invitations/" + mailoutbox[-1].body.split("/invitations/")[1].split("/")[0] + "/"
    rejoin = Client()
    rejoin.force_login(member.user)
    assert rejoin.post(path).status_code == 302
    assert Membership.objects.filter(org=owner.org, user=member.user).exists()
    assert api_status(old) == 401
    fresh = tokens.create_api_token(
        Membership.objects.get(org=owner.org, user=member.user), actor(member), "new"
    ).plaintext
    assert api_status(fresh) == 200


def test_a_refused_removal_revokes_nothing(owner):
    token = tokens.create_api_token(owner, actor(owner), "laptop")
    invitation, _ = invitation_from(owner, "a@example.test", Role.MEMBER)
    mark = audit_mark()
    with pytest.raises(services.MembershipError, match="last owner"):
        services.remove_member(owner, actor(owner), owner)
    assert ApiToken.objects.get(pk=token.token.pk).revoked_at is None
    assert list(Invitation.objects.pending()) == [invitation]
    assert events_since(mark) == []
