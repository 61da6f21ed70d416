"""The org's usage page: every key's 7- and 30-day requests from hourly and rolled-up
rows, sortable, with unused and too-old keys flagged, for owners, admins and auditors."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from keys import rollups
from keys.models import AccessKey, KeyPolicy, KeyUsage, KeyUsageDay
from tests.conftest import client_for, new_key

pytestmark = pytest.mark.django_db


def _url(org, **query) -> str:
    base = reverse("org_usage", args=[org.slug])
    return base + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def _rows(html: str) -> list[tuple[str, int, int]]:
    """(key ID, 30-day requests, 7-day requests) of each row, in order."""
    return [
        (key_id, int(whole), int(recent))
        for key_id, whole, recent in re.findall(
            r'<tr id="usage-(EXC\w+)">.*?<td data-label="Requests, 30 days" data-value="(\d+)">'
            r'.*?data-value="(\d+)"',
            html,
            re.S,
        )
    ]


def _traffic(key, days_ago: int, requests: int) -> None:
    hour = (timezone.now() - timedelta(days=days_ago)).replace(minute=0, second=0, microsecond=0)
    KeyUsage.objects.create(access_key=key, hour=hour, requests=requests)


@pytest.mark.parametrize(
    ("who", "status"),
    [("owner", 200), ("admin", 200), ("auditor", 200), ("member", 403), ("outsider", 404)],
)
def test_it_lets_owners_admins_and_auditors_read_it(everyone, who, status):
    response = client_for(everyone[who]).get(_url(everyone["owner"].org))
    assert response.status_code == status


def test_it_sends_anonymous_visitors_to_sign_in(owner):
    response = Client().get(_url(owner.org))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_it_is_in_the_navigation_of_those_who_may_read_it(owner, member):
    keys_page = reverse("key_list", args=[owner.org.slug])
    assert f'href="{_url(owner.org)}"' in client_for(owner).get(keys_page).content.decode()
    assert f'href="{_url(owner.org)}"' not in client_for(member).get(keys_page).content.decode()


def test_it_counts_7_and_30_days_from_hours_and_rolled_up_days_and_sorts(owner):
    busy, _ = new_key(owner, "busy")
    quiet, _ = new_key(owner, "quiet")
    idle, _ = new_key(owner, "idle")
    _traffic(busy, 0, 5)
    _traffic(busy, 10, 100)
    _traffic(busy, 40, 1000)  # outside the 30 days
    _traffic(quiet, 1, 7)
    _traffic(quiet, 3, 1)
    KeyUsageDay.objects.create(
        access_key=quiet, day=(timezone.now() - timedelta(days=20)).date(), requests=50
    )
    rollups.roll_up()

    client = client_for(owner)
    by_month = _rows(client.get(_url(owner.org)).content.decode())
    by_week = _rows(client.get(_url(owner.org, sort="requests_7")).content.decode())
    by_name = _rows(client.get(_url(owner.org, sort="name", order="asc")).content.decode())

    assert by_month == [(busy.pk, 105, 5), (quiet.pk, 58, 8), (idle.pk, 0, 0)]
    assert [row[0] for row in by_week] == [quiet.pk, busy.pk, idle.pk]
    assert [row[0] for row in by_name] == [busy.pk, idle.pk, quiet.pk]


def test_it_flags_unused_keys_and_keys_older_than_the_policy_allows(owner):
    KeyPolicy.objects.create(org=owner.org, max_age_days=90, inactivity_days=0)
    old, _ = new_key(owner, "old")
    unused, _ = new_key(owner, "unused")
    fresh, _ = new_key(owner, "fresh")
    now = timezone.now()
    AccessKey.objects.filter(pk=old.pk).update(
        created_at=now - timedelta(days=100), last_used_at=now
    )
    AccessKey.objects.filter(pk=unused.pk).update(created_at=now - timedelta(days=45))

    html = client_for(owner).get(_url(owner.org)).content.decode()

    def row(key) -> str:
        return html.split(f'<tr id="usage-{key.pk}">', 1)[1].split("</tr>", 1)[0]

    assert "older than 90 days" in row(old) and "unused" not in row(old)
    assert "unused 30+ days" in row(unused) and "older than" not in row(unused)
    assert "⚠" not in row(fresh)
    assert "⚠ 1 unused" in html and "⚠ 1 too old" in html


def test_it_costs_the_same_queries_for_a_few_keys_or_many(owner, django_assert_max_num_queries):
    client = client_for(owner)
    first, _ = new_key(owner, "first")
    _traffic(first, 0, 1)
    client.get(_url(owner.org))  # the session's sign-in, out of the count
    with django_assert_max_num_queries(20) as few:
        client.get(_url(owner.org))
    AccessKey.objects.bulk_create(
        AccessKey(
            id=f"EXC{number:017d}",
            org=owner.org,
            name=f"bulk-{number}",
            secret_sealed=b"",
            secret_kek_id="k",
            created_via="api",
        )
        for number in range(150)
    )
    KeyUsage.objects.bulk_create(
        KeyUsage(access_key_id=f"EXC{number:017d}", hour=timezone.now(), requests=number)
        for number in range(150)
    )
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get(_url(owner.org, page=2))
    assert page.status_code == 200
    assert "Page 2 of 2" in page.content.decode()
