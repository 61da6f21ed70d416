"""The dashboard's Rotate action: a replacement shown once, the old key kept for the overlap."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from audit.models import AuditEvent
from keys import credentials
from keys.models import AccessKey, KeyStatus

from .conftest import client_for, new_key


def url(key) -> str:
    return f"/orgs/acme/keys/{key.pk}/rotate/"


def test_it_rotates_and_shows_the_new_secret_once(owner, owner_client):
    old, _ = new_key(owner, "laptop")
    page = owner_client.get(url(old))
    assert page.status_code == 200 and "Rotate “laptop”" in page.content.decode()
    before = timezone.now()
    response = owner_client.post(url(old), {"overlap_hours": "6", "name": "laptop-2"})
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    new = AccessKey.objects.get(rotated_from=old)
    assert new.name == "laptop-2"
    body = response.content.decode()
    secret = credentials.unseal(new.secret_kek_id, new.secret_sealed, new.pk)
    assert secret in body and new.pk in body and old.pk in body
    old.refresh_from_db()
    assert old.status == KeyStatus.ACTIVE
    assert before + timedelta(hours=6) <= old.expires_at <= timezone.now() + timedelta(hours=6)
    event = AuditEvent.objects.get(action="access_key.rotated")
    assert (event.target_id, event.actor_user_id) == (old.pk, owner.user_id)
    assert event.details["replacement"] == new.pk
    # The detail pages link old and new; the secret is not shown again.
    detail = owner_client.get(f"/orgs/acme/keys/{old.pk}/").content.decode()
    assert new.pk in detail and secret not in detail


def test_the_keys_page_offers_rotate(owner, owner_client):
    key, _ = new_key(owner, "laptop")
    assert url(key) in owner_client.get("/orgs/acme/keys/").content.decode()


def test_it_refuses_an_overlap_outside_the_choices_and_changes_nothing(owner, owner_client):
    old, _ = new_key(owner, "laptop")
    response = owner_client.post(url(old), {"overlap_hours": "1000"})
    assert response.status_code == 400
    assert not AccessKey.objects.filter(rotated_from=old).exists()


def test_it_says_why_a_second_rotation_is_refused(owner, owner_client):
    old, _ = new_key(owner, "laptop")
    owner_client.post(url(old), {"overlap_hours": "24"})
    response = owner_client.post(url(old), {"overlap_hours": "24"})
    assert response.status_code == 400
    assert "already rotated" in response.content.decode()
    assert AccessKey.objects.filter(rotated_from=old).count() == 1


def test_it_refuses_other_roles_outsiders_and_methods(owner, member, auditor, outsider, admin):
    key, _ = new_key(owner, "laptop")
    assert client_for(member).post(url(key), {"overlap_hours": "24"}).status_code == 403
    assert client_for(auditor).post(url(key), {"overlap_hours": "24"}).status_code == 403
    assert client_for(outsider).post(url(key), {"overlap_hours": "24"}).status_code == 404
    assert client_for(admin).put(url(key)).status_code == 405
    assert not AccessKey.objects.filter(rotated_from=key).exists()
