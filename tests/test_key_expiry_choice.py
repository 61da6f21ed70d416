"""Choosing a key's expiry when creating it: presets or a date, capped by the org's policy."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.tokens import create_api_token
from audit.models import AuditEvent
from audit.trail import Actor
from keys.models import AccessKey, KeyPolicy

HTMX = {"HTTP_HX_REQUEST": "true"}


def create(client, **fields):
    page = client.get("/orgs/acme/keys/")
    token = re.search(rb'name="creation_token" value="([^"]+)"', page.content).group(1).decode()
    return client.post("/orgs/acme/keys/new/", {"creation_token": token, **fields}, **HTMX)


def test_it_creates_a_key_that_expires_after_a_preset(owner, owner_client):
    before = timezone.now()
    r = create(owner_client, name="laptop", expires_in="30")
    assert r.status_code == 200 and b"new-secret-access-key" in r.content
    key = AccessKey.objects.get()
    assert before + timedelta(days=30) <= key.expires_at <= timezone.now() + timedelta(days=30)
    event = AuditEvent.objects.get(action="access_key.created")
    assert event.details["expires_at"] == key.expires_at.isoformat()


def test_it_creates_a_key_that_expires_at_the_end_of_a_chosen_day(owner, owner_client):
    day = (timezone.now() + timedelta(days=10)).date()
    create(owner_client, name="laptop", expires_on=day.isoformat())
    assert AccessKey.objects.get().expires_at == datetime(
        day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC
    )


def test_a_key_without_a_choice_has_no_expiry_date(owner, owner_client):
    create(owner_client, name="laptop")
    assert AccessKey.objects.get().expires_at is None


@pytest.mark.parametrize("field", [{"expires_on": "2001-01-01"}, {"expires_on": "not-a-date"}])
def test_it_refuses_a_past_or_malformed_date_and_creates_nothing(owner, owner_client, field):
    r = create(owner_client, name="laptop", **field)
    assert r.status_code == 200
    assert b"new-secret-access-key" not in r.content
    assert b'class="errors"' in r.content
    assert not AccessKey.objects.exists()
    assert (
        not AccessKey.objects.exists()
        and not AuditEvent.objects.filter(action="access_key.created").exists()
    )


def test_the_policy_maximum_caps_the_choice(org, owner, owner_client):
    KeyPolicy.objects.create(org=org, max_age_days=30)
    page = owner_client.get("/orgs/acme/keys/").content.decode()
    assert "At the policy&#x27;s maximum (30 days)" in page or "At the policy's maximum" in page
    assert 'value="90"' not in page and 'value="30"' in page

    too_late = (timezone.now() + timedelta(days=60)).date().isoformat()
    r = create(owner_client, name="laptop", expires_on=too_late)
    assert "keeps keys at most 30 days" in r.content.decode()
    assert not AccessKey.objects.exists()
    # A preset the page no longer offers is refused too.
    r = create(owner_client, name="laptop", expires_in="365")
    assert not AccessKey.objects.exists()


def test_the_detail_page_says_when_and_why_a_key_expires(org, owner, owner_client):
    create(owner_client, name="laptop", expires_in="7")
    key = AccessKey.objects.get()
    page = owner_client.get(f"/orgs/acme/keys/{key.pk}/").content.decode()
    assert "in 7 days" in page and "its expiry date" in page

    KeyPolicy.objects.create(org=org, inactivity_days=20)
    create(owner_client, name="desktop")
    other = AccessKey.objects.get(name="desktop")
    page = owner_client.get(f"/orgs/acme/keys/{other.pk}/").content.decode()
    assert "in 20 days" in page and "if it stays unused" in page


def test_the_api_takes_an_expiry_and_refuses_one_past_the_policy(org, owner):
    token = create_api_token(owner, Actor.for_user(owner.user), "cli").plaintext
    headers = {"Authorization": f"Bearer {token}"}
    at = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
    r = Client().post(
        "/api/v1/keys",
        json.dumps({"name": "ci", "expires_at": at.isoformat()}),
        content_type="application/json",
        headers=headers,
    )
    assert r.status_code == 201, r.content
    assert AccessKey.objects.get(name="ci").expires_at == at

    KeyPolicy.objects.create(org=org, max_age_days=1)
    r = Client().post(
        "/api/v1/keys",
        json.dumps({"name": "cd", "expires_at": at.isoformat()}),
        content_type="application/json",
        headers=headers,
    )
    assert r.status_code == 422 and "at most 1 day:" in r.json()["message"]
    assert not AccessKey.objects.filter(name="cd").exists()
