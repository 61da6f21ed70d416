"""Rotating a key: a replacement with its own secret, the old key kept for an overlap."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.utils import timezone

from accounts.tokens import create_api_token
from audit.models import AuditEvent
from audit.trail import Actor
from keys import credentials
from keys.models import AccessKey, CreatedVia, KeyStatus
from keys.services import AccessKeyError, InvalidKeyState, KeyNameTaken, revoke_key, rotate_key

from .conftest import audit_mark, new_key


def rotate(membership, key, **kwargs):
    return rotate_key(membership, Actor.for_user(membership.user), key, **kwargs)


def test_it_replaces_the_key_and_keeps_the_old_one_for_the_overlap(owner):
    old, _ = new_key(owner, "laptop")
    mark = audit_mark()
    before = timezone.now()
    created = rotate(owner, old, overlap=timedelta(hours=6))
    after = timezone.now()

    new = created.key
    assert new.pk != old.pk and credentials.ACCESS_KEY_ID_RE.match(new.pk)
    assert credentials.SECRET_RE.match(created.secret)
    assert credentials.unseal(new.secret_kek_id, new.secret_sealed, new.pk) == created.secret
    assert new.created_via == CreatedVia.ROTATION
    assert new.rotated_from_id == old.pk
    # Dated the day of the rotation: either side of midnight UTC, if it fell in between.
    assert new.name in {f"laptop-rotated-{at:%Y%m%d}" for at in (before, after)}
    old.refresh_from_db()
    assert old.status == KeyStatus.ACTIVE
    assert before + timedelta(hours=6) <= old.expires_at <= after + timedelta(hours=6)
    assert old.replacement == new

    events = list(AuditEvent.objects.filter(pk__gt=mark))
    assert [(e.action, e.target_id) for e in events] == [("access_key.rotated", old.pk)]
    assert events[0].details["replacement"] == new.pk
    assert created.secret not in json.dumps(events[0].details)


def test_it_never_pushes_an_earlier_expiry_later(owner):
    old, _ = new_key(owner, "laptop")
    soon = timezone.now() + timedelta(hours=2)
    AccessKey.objects.filter(pk=old.pk).update(expires_at=soon)
    rotate(owner, old, overlap=timedelta(days=3))
    old.refresh_from_db()
    assert old.expires_at == soon


def test_it_takes_a_name_and_refuses_a_taken_one(owner):
    old, _ = new_key(owner, "laptop")
    new_key(owner, "desktop")
    with pytest.raises(KeyNameTaken):
        rotate(owner, old, name="Desktop")
    assert rotate(owner, old, name="laptop-2027").key.name == "laptop-2027"


def test_it_numbers_the_default_name_when_it_is_taken(owner):
    old, _ = new_key(owner, "ci")
    # The names for today and tomorrow are both taken, so the rotation below is numbered
    # whichever day (UTC) it falls on.
    days = [f"{timezone.now() + timedelta(days=n):%Y%m%d}" for n in (0, 1)]
    for day in days:
        new_key(owner, f"ci-rotated-{day}")
    assert rotate(owner, old).key.name in {f"ci-rotated-{day}-2" for day in days}


@pytest.mark.parametrize("hours", [0, 721])
def test_it_refuses_an_overlap_out_of_bounds(owner, hours):
    old, _ = new_key(owner, "laptop")
    mark = audit_mark()
    with pytest.raises(AccessKeyError, match="between 1 hour and 30 days"):
        rotate(owner, old, overlap=timedelta(hours=hours))
    assert AccessKey.objects.count() == 1
    assert audit_mark() == mark


def test_it_rotates_a_key_once(owner):
    old, _ = new_key(owner, "laptop")
    new = rotate(owner, old).key
    with pytest.raises(InvalidKeyState, match=new.pk):
        rotate(owner, old)
    assert AccessKey.objects.filter(rotated_from=old).count() == 1


def test_it_refuses_a_revoked_key(owner):
    old, _ = new_key(owner, "laptop")
    revoke_key(owner, Actor.for_user(owner.user), old)
    with pytest.raises(InvalidKeyState, match="revoked"):
        rotate(owner, old)


@pytest.mark.parametrize(
    ("who", "whose", "allowed"),
    [
        ("owner", "member", True),
        ("admin", "member", True),
        ("member", "member", True),
        ("member", "owner", False),
        ("auditor", "member", False),
    ],
)
def test_it_follows_the_roles(request, who, whose, allowed):
    actor, creator = request.getfixturevalue(who), request.getfixturevalue(whose)
    old, _ = new_key(creator, "laptop")
    if allowed:
        assert rotate(actor, old).key.created_by_id == actor.user_id
    else:
        with pytest.raises(PermissionDenied):
            rotate(actor, old)
        assert AccessKey.objects.count() == 1


def api(token: str, path: str, body: dict):
    return Client().post(
        f"/api/v1{path}",
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


def test_the_api_rotates_and_shows_the_new_secret_once(owner, outsider):
    old, _ = new_key(owner, "laptop")
    token = create_api_token(owner, Actor.for_user(owner.user), "cli").plaintext
    mark = audit_mark()
    r = api(token, f"/keys/{old.pk}/rotate", {"overlap_hours": 2})
    assert r.status_code == 201, r.content
    assert "no-store" in r["Cache-Control"]
    body = r.json()
    new = AccessKey.objects.get(rotated_from=old)
    assert body["id"] == new.pk and body["replaces"] == old.pk
    assert (
        credentials.unseal(new.secret_kek_id, new.secret_sealed, new.pk)
        == (body["secret_access_key"])
    )
    assert body["previous"]["id"] == old.pk and body["previous"]["expires_at"]
    events = list(AuditEvent.objects.filter(pk__gt=mark))
    assert [(e.action, e.actor_type) for e in events] == [("access_key.rotated", "api_token")]

    again = api(token, f"/keys/{old.pk}/rotate", {})
    assert again.status_code == 409 and again.json()["code"]
    get = Client().get(f"/api/v1/keys/{new.pk}", headers={"Authorization": f"Bearer {token}"})
    assert body["secret_access_key"] not in get.content.decode()

    foreign = create_api_token(outsider, Actor.for_user(outsider.user), "x").plaintext
    assert api(foreign, f"/keys/{old.pk}/rotate", {}).status_code == 404
    bad = api(token, f"/keys/{new.pk}/rotate", {"overlap_hours": 0})
    assert bad.status_code in (400, 422)
    assert AccessKey.objects.count() == 2


def test_the_detail_pages_link_old_and_new(owner, owner_client):
    old, _ = new_key(owner, "laptop")
    new = rotate(owner, old).key
    old_page = owner_client.get(f"/orgs/acme/keys/{old.pk}/").content.decode()
    new_page = owner_client.get(f"/orgs/acme/keys/{new.pk}/").content.decode()
    assert "Replaced by" in old_page and f"/orgs/acme/keys/{new.pk}/" in old_page
    assert "Replaces" in new_page and f"/orgs/acme/keys/{old.pk}/" in new_page
    # The rotation is recorded on the old key and shows in both histories.
    assert old_page.count("access_key.rotated") == 1
    assert new_page.count("access_key.rotated") == 1
