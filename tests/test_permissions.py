"""Who may do what: every key action and every members action, for every role.

Each matrix row names the acting role, whose object it acts on, and the expected outcome:
OK (the change happened and wrote exactly one audit event), 403, 404 or LOGIN (anonymous,
redirected to sign in). A refused request changes nothing and writes no audit event.
"""

from __future__ import annotations

import html
import secrets

import pytest
from django.test import Client

from accounts.models import Invitation, Membership, Role
from accounts.services import invite
from audit.trail import Actor
from keys.models import AccessKey, KeyStatus
from keys.services import deactivate_key, revoke_key

from .conftest import audit_mark, client_for, events_since, new_key

OK = "ok"
LOGIN = "login"
IP = "203.0.113.7"
ALL_ROLES = ["owner", "admin", "member", "auditor", "outsider", "anonymous"]


def client_as(everyone: dict[str, Membership], who: str) -> Client:
    return Client() if who == "anonymous" else client_for(everyone[who])


def assert_one_event(mark: int, action: str, user, target_id: str) -> None:
    events = events_since(mark)
    assert [(e.action, e.actor_user_id, e.target_id, e.source_ip) for e in events] == [
        (action, user.pk, str(target_id), IP)
    ]


def assert_no_event(mark: int) -> None:
    assert events_since(mark) == []


def assert_refused(response, expected) -> None:
    if expected == LOGIN:
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/?next=")
    else:
        assert response.status_code == expected


def key_state(key: AccessKey) -> dict:
    return AccessKey.objects.filter(pk=key.pk).values().get()


def make_key(creator: Membership, name: str = "laptop", deactivated_by=None) -> AccessKey:
    key, _ = new_key(creator, name)
    if deactivated_by is not None:
        deactivate_key(deactivated_by, Actor.for_user(deactivated_by.user), key)
    return AccessKey.objects.get(pk=key.pk)


def url(key: AccessKey, action: str = "") -> str:
    return f"/orgs/acme/keys/{key.pk}/" + (f"{action}/" if action else "")


# Rows: (acting role, role of the key's creator, expected outcome). Owners and admins
# change anyone's keys, members only the keys they created, auditors nothing.
CHANGE_MATRIX = [
    ("owner", "member", OK),
    ("owner", "admin", OK),
    ("admin", "member", OK),
    ("admin", "owner", OK),
    ("member", "member", OK),
    ("member", "owner", 403),
    ("member", "admin", 403),
    ("auditor", "member", 403),
    ("auditor", "owner", 403),
    ("outsider", "member", 404),
    ("anonymous", "member", LOGIN),
]


@pytest.mark.parametrize(("who", "creator", "expected"), CHANGE_MATRIX)
def test_it_deactivates_keys_by_role(everyone, who, creator, expected):
    key = make_key(everyone[creator])
    before, mark = key_state(key), audit_mark()
    r = client_as(everyone, who).post(url(key, "deactivate"), REMOTE_ADDR=IP)
    if expected == OK:
        assert r.status_code == 302
        key.refresh_from_db()
        assert key.status == KeyStatus.INACTIVE
        assert key.status_changed_by_id == everyone[who].user_id
        assert_one_event(mark, "access_key.deactivated", everyone[who].user, key.pk)
    else:
        assert_refused(r, expected)
        assert key_state(key) == before
        assert_no_event(mark)


@pytest.mark.parametrize(("who", "creator", "expected"), CHANGE_MATRIX)
def test_it_revokes_keys_by_role(everyone, who, creator, expected):
    key = make_key(everyone[creator])
    before, mark = key_state(key), audit_mark()
    r = client_as(everyone, who).post(url(key, "revoke"), {"reason": "laptop lost"}, REMOTE_ADDR=IP)
    if expected == OK:
        assert r.status_code == 302
        key.refresh_from_db()
        assert key.status == KeyStatus.REVOKED
        assert key.status_reason == "laptop lost"
        assert key.status_changed_by_id == everyone[who].user_id
        assert_one_event(mark, "access_key.revoked", everyone[who].user, key.pk)
    else:
        assert_refused(r, expected)
        assert key_state(key) == before
        assert_no_event(mark)


@pytest.mark.parametrize(("who", "creator", "expected"), CHANGE_MATRIX)
def test_it_shows_the_revoke_confirmation_by_role(everyone, who, creator, expected):
    key = make_key(everyone[creator])
    before, mark = key_state(key), audit_mark()
    r = client_as(everyone, who).get(url(key, "revoke"), REMOTE_ADDR=IP)
    if expected == OK:
        assert r.status_code == 200
        assert f'action="{url(key, "revoke")}"' in r.content.decode()
    else:
        assert_refused(r, expected)
    # Showing the confirmation is not the revoke.
    assert key_state(key) == before
    assert_no_event(mark)


# Rows: (acting role, creator, who deactivated the key, expected). A member may undo
# their own deactivation of their own key, not one made by an owner or admin.
REACTIVATE_MATRIX = [
    ("owner", "member", "member", OK),
    ("owner", "admin", "admin", OK),
    ("admin", "member", "member", OK),
    ("admin", "member", "owner", OK),
    ("member", "member", "member", OK),
    ("member", "member", "owner", 403),
    ("member", "member", "admin", 403),
    ("member", "owner", "owner", 403),
    ("auditor", "member", "member", 403),
    ("outsider", "member", "member", 404),
    ("anonymous", "member", "member", LOGIN),
]


@pytest.mark.parametrize(("who", "creator", "deactivator", "expected"), REACTIVATE_MATRIX)
def test_it_reactivates_keys_by_role(everyone, who, creator, deactivator, expected):
    key = make_key(everyone[creator], deactivated_by=everyone[deactivator])
    before, mark = key_state(key), audit_mark()
    r = client_as(everyone, who).post(url(key, "reactivate"), REMOTE_ADDR=IP)
    if expected == OK:
        assert r.status_code == 302
        key.refresh_from_db()
        assert key.status == KeyStatus.ACTIVE
        assert_one_event(mark, "access_key.reactivated", everyone[who].user, key.pk)
    else:
        assert_refused(r, expected)
        assert key_state(key) == before
        assert_no_event(mark)


@pytest.mark.parametrize("deactivator", ["owner", "admin"])
def test_it_hides_reactivate_from_a_member_when_a_manager_deactivated_their_key(
    everyone, deactivator
):
    key = make_key(everyone["member"], deactivated_by=everyone[deactivator])
    client = client_as(everyone, "member")
    for page in (url(key), "/orgs/acme/keys/"):
        r = client.get(page)
        assert r.status_code == 200
        assert url(key, "reactivate") not in r.content.decode()


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("owner", OK),
        ("admin", OK),
        ("member", OK),
        ("auditor", 403),
        ("outsider", 404),
        ("anonymous", LOGIN),
    ],
)
def test_it_creates_keys_by_role(everyone, who, expected):
    client = client_as(everyone, who)
    mark = audit_mark()
    page = client.get("/orgs/acme/keys/new/")
    r = client.post(
        "/orgs/acme/keys/new/",
        {"name": "ci-deploy", "creation_token": secrets.token_urlsafe(24)},
        REMOTE_ADDR=IP,
    )
    if expected == OK:
        assert page.status_code == 200
        assert r.status_code == 200
        key = AccessKey.objects.get()
        assert key.org.slug == "acme"
        assert key.name == "ci-deploy"
        assert key.created_by_id == everyone[who].user_id
        assert key.pk in r.content.decode()
        assert_one_event(mark, "access_key.created", everyone[who].user, key.pk)
    else:
        assert_refused(page, expected)
        assert_refused(r, expected)
        assert not AccessKey.objects.exists()
        assert_no_event(mark)


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("owner", OK),
        ("admin", OK),
        ("member", OK),
        ("auditor", OK),
        ("outsider", 404),
        ("anonymous", LOGIN),
    ],
)
def test_it_lists_all_live_keys_by_role(everyone, who, expected):
    by_owner = make_key(everyone["owner"], "by-owner")
    by_member = make_key(everyone["member"], "by-member")
    revoked = make_key(everyone["member"], "gone")
    revoke_key(everyone["member"], Actor.for_user(everyone["member"].user), revoked)
    client = client_as(everyone, who)
    live = client.get("/orgs/acme/keys/")
    retired = client.get("/orgs/acme/keys/?tab=retired")
    if expected == OK:
        assert live.status_code == retired.status_code == 200
        assert by_owner.pk in live.content.decode()
        assert by_member.pk in live.content.decode()
        assert revoked.pk not in live.content.decode()
        assert revoked.pk in retired.content.decode()
        assert by_owner.pk not in retired.content.decode()
    else:
        assert_refused(live, expected)
        assert_refused(retired, expected)


def test_it_offers_each_role_only_the_actions_it_may_take(everyone):
    by_owner = make_key(everyone["owner"], "by-owner")
    by_member = make_key(everyone["member"], "by-member")
    offered = {
        who: client_as(everyone, who).get("/orgs/acme/keys/").content.decode()
        for who in ("owner", "admin", "member", "auditor")
    }
    for who in ("owner", "admin"):
        for key in (by_owner, by_member):
            assert url(key, "deactivate") in offered[who]
            assert url(key, "revoke") in offered[who]
        assert 'name="creation_token"' in offered[who]
    assert url(by_member, "deactivate") in offered["member"]
    assert url(by_member, "revoke") in offered["member"]
    assert url(by_owner, "deactivate") not in offered["member"]
    assert url(by_owner, "revoke") not in offered["member"]
    assert 'name="creation_token"' in offered["member"]
    for key in (by_owner, by_member):
        assert url(key, "deactivate") not in offered["auditor"]
        assert url(key, "revoke") not in offered["auditor"]
    assert 'name="creation_token"' not in offered["auditor"]


@pytest.mark.parametrize(
    ("who", "creator", "expected"),
    [
        ("owner", "member", OK),
        ("admin", "owner", OK),
        ("member", "member", OK),
        ("member", "owner", OK),
        ("auditor", "member", OK),
        ("outsider", "member", 404),
        ("anonymous", "member", LOGIN),
    ],
)
def test_it_shows_key_details_by_role(everyone, who, creator, expected):
    key = make_key(everyone[creator])
    r = client_as(everyone, who).get(url(key))
    if expected == OK:
        assert r.status_code == 200
        assert key.pk in r.content.decode()
        # The creation is in the key's history.
        assert "access_key.created" in r.content.decode()
    else:
        assert_refused(r, expected)


def test_it_hides_acme_keys_from_an_outsider_even_under_their_own_org(everyone):
    key = make_key(everyone["owner"])
    before, mark = key_state(key), audit_mark()
    client = client_as(everyone, "outsider")
    for path in (url(key), url(key).replace("/acme/", "/globex/")):
        assert client.get(path).status_code == 404
        assert client.get(path + "revoke/").status_code == 404
        for action in ("deactivate", "reactivate", "revoke"):
            assert client.post(path + f"{action}/").status_code == 404
    assert key_state(key) == before
    assert_no_event(mark)


# Rows: (HTTP method, path template); {key} is replaced by an existing key's ID.
WRONG_METHODS = [
    ("post", "/orgs/acme/keys/"),
    ("put", "/orgs/acme/keys/new/"),
    ("delete", "/orgs/acme/keys/new/"),
    ("post", "/orgs/acme/keys/{key}/"),
    ("delete", "/orgs/acme/keys/{key}/"),
    ("get", "/orgs/acme/keys/{key}/deactivate/"),
    ("put", "/orgs/acme/keys/{key}/deactivate/"),
    ("get", "/orgs/acme/keys/{key}/reactivate/"),
    ("delete", "/orgs/acme/keys/{key}/revoke/"),
    ("patch", "/orgs/acme/keys/{key}/revoke/"),
    ("get", "/orgs/acme/members/invite/"),
    ("get", "/orgs/acme/members/{user}/role/"),
    ("delete", "/orgs/acme/members/{user}/remove/"),
    ("get", "/orgs/acme/invitations/{invitation}/revoke/"),
]


@pytest.mark.parametrize(("method", "path"), WRONG_METHODS)
def test_it_answers_405_to_the_wrong_method(everyone, method, path):
    key = make_key(everyone["member"])
    invitation = invite(
        everyone["owner"], Actor.for_user(everyone["owner"].user), "x@y.test", "member"
    )
    path = path.format(key=key.pk, user=everyone["member"].user_id, invitation=invitation.pk)
    before_key, before_members, mark = key_state(key), member_state(), audit_mark()
    r = getattr(client_as(everyone, "owner"), method)(path)
    assert r.status_code == 405
    assert key_state(key) == before_key
    assert member_state() == before_members
    assert AccessKey.objects.count() == 1
    assert_no_event(mark)


# Members pages.


def member_state() -> list[tuple]:
    memberships = Membership.objects.order_by("pk").values_list("org_id", "user_id", "role")
    invitations = Invitation.objects.order_by("pk").values_list("email", "role", "revoked_at")
    return [*memberships, *invitations]


@pytest.mark.parametrize(
    ("who", "role", "expected"),
    [
        ("owner", Role.MEMBER, OK),
        ("owner", Role.OWNER, OK),
        ("admin", Role.ADMIN, OK),
        ("admin", Role.AUDITOR, OK),
        ("admin", Role.OWNER, 400),  # admins cannot grant owner
        ("member", Role.MEMBER, 403),
        ("auditor", Role.MEMBER, 403),
        ("outsider", Role.MEMBER, 404),
        ("anonymous", Role.MEMBER, LOGIN),
    ],
)
def test_it_invites_by_role(everyone, who, role, expected):
    before, mark = member_state(), audit_mark()
    r = client_as(everyone, who).post(
        "/orgs/acme/members/invite/", {"email": "New@Example.test", "role": role}, REMOTE_ADDR=IP
    )
    if expected == OK:
        assert r.status_code == 302
        invitation = Invitation.objects.get()
        assert (invitation.org.slug, invitation.email, invitation.role) == (
            "acme",
            "new@example.test",
            role,
        )
        assert invitation.invited_by_id == everyone[who].user_id
        assert invitation.is_pending
        assert_one_event(mark, "member.invited", everyone[who].user, invitation.pk)
    else:
        assert_refused(r, expected)
        if expected == 400:
            assert "Select a valid choice" in r.content.decode()
        assert member_state() == before
        assert_no_event(mark)


# Rows: (acting role, target role, new role, expected). REFUSED is a redirect back to
# the members page with an error message.
REFUSED = "refused"


@pytest.mark.parametrize(
    ("who", "target", "role", "expected"),
    [
        ("owner", "member", Role.ADMIN, OK),
        ("owner", "admin", Role.OWNER, OK),
        ("owner", "auditor", Role.MEMBER, OK),
        ("admin", "member", Role.AUDITOR, OK),
        ("admin", "auditor", Role.ADMIN, OK),
        ("admin", "member", Role.OWNER, REFUSED),  # admins cannot grant owner
        ("admin", "owner", Role.MEMBER, 403),  # nor touch owners
        ("member", "auditor", Role.MEMBER, 403),
        ("auditor", "member", Role.AUDITOR, 403),
        ("outsider", "member", Role.ADMIN, 404),
        ("anonymous", "member", Role.ADMIN, LOGIN),
    ],
)
def test_it_changes_roles_by_role(everyone, who, target, role, expected):
    target_user = everyone[target].user
    before, mark = member_state(), audit_mark()
    client = client_as(everyone, who)
    r = client.post(f"/orgs/acme/members/{target_user.pk}/role/", {"role": role}, REMOTE_ADDR=IP)
    if expected == OK:
        assert r.status_code == 302
        assert Membership.objects.get(org__slug="acme", user=target_user).role == role
        assert_one_event(mark, "member.role_changed", everyone[who].user, target_user.pk)
    else:
        if expected == REFUSED:
            assert r.status_code == 302
            assert "Choose one of the roles offered." in client.get(r["Location"]).content.decode()
        else:
            assert_refused(r, expected)
        assert member_state() == before
        assert_no_event(mark)


REMOVE_MATRIX = [
    ("owner", "member", OK),
    ("owner", "admin", OK),
    ("admin", "member", OK),
    ("admin", "auditor", OK),
    ("admin", "owner", 403),  # admins cannot touch owners
    ("member", "auditor", 403),
    ("auditor", "member", 403),
    ("outsider", "member", 404),
    ("anonymous", "member", LOGIN),
]


@pytest.mark.parametrize(("who", "target", "expected"), REMOVE_MATRIX)
def test_it_shows_the_remove_confirmation_by_role(everyone, who, target, expected):
    target_user = everyone[target].user
    before, mark = member_state(), audit_mark()
    r = client_as(everyone, who).get(f"/orgs/acme/members/{target_user.pk}/remove/")
    if expected == OK:
        assert r.status_code == 200
        assert f"Remove {target_user.email}" in r.content.decode()
    else:
        assert_refused(r, expected)
    assert member_state() == before
    assert_no_event(mark)


@pytest.mark.parametrize(("who", "target", "expected"), REMOVE_MATRIX)
def test_it_removes_members_by_role(everyone, who, target, expected):
    target_user = everyone[target].user
    before, mark = member_state(), audit_mark()
    r = client_as(everyone, who).post(
        f"/orgs/acme/members/{target_user.pk}/remove/", REMOTE_ADDR=IP
    )
    if expected == OK:
        assert r.status_code == 302
        assert not Membership.objects.filter(org__slug="acme", user=target_user).exists()
        assert_one_event(mark, "member.removed", everyone[who].user, target_user.pk)
        # Removed means removed: their next request to the org is a 404.
        assert client_for_user(target_user).get("/orgs/acme/keys/").status_code == 404
    else:
        assert_refused(r, expected)
        assert member_state() == before
        assert_no_event(mark)


def client_for_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("owner", OK),
        ("admin", OK),
        ("member", 403),
        ("auditor", 403),
        ("outsider", 404),
        ("anonymous", LOGIN),
    ],
)
def test_it_withdraws_invitations_by_role(everyone, who, expected):
    owner = everyone["owner"]
    invitation = invite(owner, Actor.for_user(owner.user), "new@example.test", Role.MEMBER)
    before, mark = member_state(), audit_mark()
    r = client_as(everyone, who).post(
        f"/orgs/acme/invitations/{invitation.pk}/revoke/", REMOTE_ADDR=IP
    )
    if expected == OK:
        assert r.status_code == 302
        invitation.refresh_from_db()
        assert invitation.revoked_at is not None
        assert not invitation.is_pending
        assert_one_event(mark, "member.invitation_revoked", everyone[who].user, invitation.pk)
    else:
        assert_refused(r, expected)
        assert member_state() == before
        assert_no_event(mark)


def test_it_hides_other_orgs_members_and_invitations(everyone):
    outsider = everyone["outsider"]
    globex_invitation = invite(outsider, Actor.for_user(outsider.user), "x@globex.test", "member")
    before, mark = member_state(), audit_mark()
    client = client_as(everyone, "owner")
    assert (
        client.post(f"/orgs/acme/members/{outsider.user_id}/role/", {"role": "member"}).status_code
        == 404
    )
    assert client.get(f"/orgs/acme/members/{outsider.user_id}/remove/").status_code == 404
    assert client.post(f"/orgs/acme/members/{outsider.user_id}/remove/").status_code == 404
    assert client.post(f"/orgs/acme/invitations/{globex_invitation.pk}/revoke/").status_code == 404
    assert client.get("/orgs/globex/members/").status_code == 404
    assert member_state() == before
    assert_no_event(mark)


def messages_after(client: Client, response) -> str:
    assert response.status_code == 302
    return html.unescape(client.get(response["Location"]).content.decode())


def test_it_refuses_to_demote_the_last_owner(everyone):
    owner = everyone["owner"]
    client = client_as(everyone, "owner")
    before, mark = member_state(), audit_mark()
    r = client.post(f"/orgs/acme/members/{owner.user_id}/role/", {"role": Role.ADMIN})
    assert "An organisation needs an owner" in messages_after(client, r)
    assert member_state() == before
    assert_no_event(mark)


def test_it_refuses_to_remove_the_last_owner(everyone):
    owner = everyone["owner"]
    client = client_as(everyone, "owner")
    before, mark = member_state(), audit_mark()
    r = client.post(f"/orgs/acme/members/{owner.user_id}/remove/")
    assert "The last owner cannot be removed." in messages_after(client, r)
    assert member_state() == before
    assert_no_event(mark)


@pytest.fixture
def second_owner(everyone) -> Membership:
    admin = everyone["admin"]
    Membership.objects.filter(pk=admin.pk).update(role=Role.OWNER)
    admin.refresh_from_db()
    return admin


@pytest.mark.parametrize("demoted", ["owner", "second_owner"])
def test_it_demotes_an_owner_when_another_owner_remains(everyone, second_owner, demoted):
    target = everyone["owner"] if demoted == "owner" else second_owner
    mark = audit_mark()
    r = client_as(everyone, "owner").post(
        f"/orgs/acme/members/{target.user_id}/role/", {"role": Role.MEMBER}, REMOTE_ADDR=IP
    )
    assert r.status_code == 302
    target.refresh_from_db()
    assert target.role == Role.MEMBER
    assert_one_event(mark, "member.role_changed", everyone["owner"].user, target.user_id)
    # The one owner left is now the last one.
    assert Membership.objects.filter(org__slug="acme", role=Role.OWNER).count() == 1


@pytest.mark.parametrize("removed", ["owner", "second_owner"])
def test_it_removes_an_owner_when_another_owner_remains(everyone, second_owner, removed):
    target = everyone["owner"] if removed == "owner" else second_owner
    mark = audit_mark()
    r = client_as(everyone, "owner").post(
        f"/orgs/acme/members/{target.user_id}/remove/", REMOTE_ADDR=IP
    )
    assert r.status_code == 302
    assert not Membership.objects.filter(pk=target.pk).exists()
    assert_one_event(mark, "member.removed", everyone["owner"].user, target.user_id)
    assert Membership.objects.filter(org__slug="acme", role=Role.OWNER).count() == 1


@pytest.mark.parametrize(("who", "expected"), [("owner", OK), ("admin", 403)])
def test_it_lets_only_owners_withdraw_an_invitation_to_become_owner(everyone, who, expected):
    owner = everyone["owner"]
    invitation = invite(owner, Actor.for_user(owner.user), "boss@example.test", Role.OWNER)
    mark = audit_mark()
    r = client_as(everyone, who).post(
        f"/orgs/acme/invitations/{invitation.pk}/revoke/", REMOTE_ADDR=IP
    )
    invitation.refresh_from_db()
    if expected == OK:
        assert r.status_code == 302
        assert invitation.revoked_at is not None
        assert_one_event(mark, "member.invitation_revoked", everyone[who].user, invitation.pk)
    else:
        assert_refused(r, expected)
        assert invitation.is_pending
        assert_no_event(mark)


# ---------------------------------------------------------------------------------------
# The same rules on Membership itself, for every role and every kind of key and member:
# what the views above ask, without a request.

ROLES = [Role.OWNER, Role.ADMIN, Role.MEMBER, Role.AUDITOR]
ME, SOMEONE_ELSE = 1, 2


def as_role(role: str) -> Membership:
    return Membership(role=role, user_id=ME)


def a_key(created_by: int, status_changed_by: int | None = None) -> AccessKey:
    return AccessKey(created_by_id=created_by, status_changed_by_id=status_changed_by)


@pytest.mark.parametrize("role", ROLES)
def test_it_gives_each_role_its_permissions_on_membership(role):
    me = as_role(role)
    manager = role in (Role.OWNER, Role.ADMIN)
    assert me.is_manager is manager
    assert me.can_manage_members is manager
    assert me.can_create_keys is (role != Role.AUDITOR)
    assert me.can_read_audit is (role != Role.MEMBER)

    mine, theirs = a_key(created_by=ME), a_key(created_by=SOMEONE_ELSE)
    assert me.can_change_key(mine) is (role != Role.AUDITOR)
    assert me.can_change_key(theirs) is manager
    # Rotating takes both creating and changing: a member rotates only their own keys.
    assert me.can_rotate_key(mine) is (role != Role.AUDITOR)
    assert me.can_rotate_key(theirs) is manager

    # Reactivating: managers always; a member only their own key that they deactivated.
    assert me.can_reactivate_key(a_key(ME, status_changed_by=ME)) is (role != Role.AUDITOR)
    assert me.can_reactivate_key(a_key(ME, status_changed_by=SOMEONE_ELSE)) is manager
    assert me.can_reactivate_key(a_key(SOMEONE_ELSE, status_changed_by=ME)) is manager


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("other", ROLES)
def test_it_lets_owners_manage_everyone_and_admins_everyone_but_owners(role, other):
    expected = role == Role.OWNER or (role == Role.ADMIN and other != Role.OWNER)
    assert as_role(role).can_manage_member(Membership(role=other, user_id=SOMEONE_ELSE)) is expected


def test_it_offers_each_role_the_roles_it_may_give():
    everything = list(Role.choices)
    assert as_role(Role.OWNER).assignable_roles() == everything
    assert as_role(Role.ADMIN).assignable_roles() == [c for c in everything if c[0] != Role.OWNER]
    assert as_role(Role.ADMIN).assignable_roles() == [
        (Role.ADMIN, Role.ADMIN.label),
        (Role.MEMBER, Role.MEMBER.label),
        (Role.AUDITOR, Role.AUDITOR.label),
    ]
    assert as_role(Role.MEMBER).assignable_roles() == []
    assert as_role(Role.AUDITOR).assignable_roles() == []
