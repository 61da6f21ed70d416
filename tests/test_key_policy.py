"""The org key policy page: owners and admins change it, the change is audited."""

from __future__ import annotations

from audit.models import AuditEvent
from keys.models import KeyPolicy

from .conftest import client_for

URL = "/orgs/acme/key-policy/"
VALUES = {"inactivity_days": "30", "max_age_days": "365", "warning_days": "14"}


def test_it_shows_the_defaults(owner_client):
    response = owner_client.get(URL)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'name="inactivity_days" value="90"' in body
    assert 'name="max_age_days" value="0"' in body
    assert 'name="warning_days" value="7"' in body


def test_it_saves_the_policy_and_records_the_change(admin):
    response = client_for(admin).post(URL, VALUES)
    assert response.status_code == 302
    policy = KeyPolicy.objects.get(org=admin.org)
    assert (policy.inactivity_days, policy.max_age_days, policy.warning_days) == (30, 365, 14)
    assert policy.warn_admins is False
    event = AuditEvent.objects.get(action="org.key_policy_changed")
    assert event.org_id == admin.org_id and event.actor_user_id == admin.user_id
    assert event.details["changes"] == {
        "inactivity_days": {"from": 90, "to": 30},
        "max_age_days": {"from": 0, "to": 365},
        "warning_days": {"from": 7, "to": 14},
        "warn_admins": {"from": True, "to": False},
    }
    # Saving the same values again records nothing.
    client_for(admin).post(URL, VALUES)
    assert AuditEvent.objects.filter(action="org.key_policy_changed").count() == 1


def test_it_refuses_bad_values_and_changes_nothing(owner_client):
    response = owner_client.post(URL, {**VALUES, "inactivity_days": "-1", "warning_days": "x"})
    assert response.status_code == 400
    assert "errors" in response.content.decode()
    assert not KeyPolicy.objects.exists()
    assert not AuditEvent.objects.filter(action="org.key_policy_changed").exists()


def test_it_refuses_members_and_auditors(member, auditor):
    for membership in (member, auditor):
        assert client_for(membership).get(URL).status_code == 403
        assert client_for(membership).post(URL, VALUES).status_code == 403
    assert not KeyPolicy.objects.exists()


def test_it_is_404_for_outsiders(outsider):
    assert client_for(outsider).post(URL, VALUES).status_code == 404
    assert not KeyPolicy.objects.exists()


def test_it_refuses_other_methods(owner_client):
    assert owner_client.put(URL).status_code == 405


def test_the_keys_page_shows_expiry_badges_hints_and_the_count_due_soon(owner_client, owner):
    from datetime import timedelta

    from django.utils import timezone

    from keys.models import AccessKey

    from .conftest import new_key

    now = timezone.now()
    soon, _ = new_key(owner, "soon")
    AccessKey.objects.filter(pk=soon.pk).update(expires_at=now + timedelta(days=3, minutes=-5))
    idle, _ = new_key(owner, "idle")
    AccessKey.objects.filter(pk=idle.pk).update(
        created_at=now - timedelta(days=100), last_used_at=now - timedelta(days=60, hours=1)
    )
    new_key(owner, "busy")

    body = owner_client.get("/orgs/acme/keys/").content.decode()
    row = body.split(f'id="key-{soon.pk}"')[1].split("</tr>")[0]
    assert "expires in 3 days" in row and "Past its expiry date" in row
    row = body.split(f'id="key-{idle.pk}"')[1].split("</tr>")[0]
    assert "unused for 60 days" in row and "expires in" not in row
    assert "<strong>1 key</strong> will expire within 7 days" in body

    KeyPolicy.objects.create(org=owner.org, inactivity_days=65)
    body = owner_client.get("/orgs/acme/keys/").content.decode()
    row = body.split(f'id="key-{idle.pk}"')[1].split("</tr>")[0]
    assert "expires in 5 days" in row and "Unused for too long" in row
    assert "<strong>2 keys</strong> will expire within 7 days" in body
