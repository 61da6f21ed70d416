"""The org's buckets page: each bucket with the key (and person) that created it, and
the org's keys that used it in the last 30 days with their requests and bytes."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.trail import Actor
from gateway.models import Bucket
from gateway.services import adopt_bucket, claim_bucket
from keys.models import KeyBucketDay
from tests.conftest import client_for, new_key

pytestmark = pytest.mark.django_db


def _url(org) -> str:
    return reverse("bucket_list", args=[org.slug])


@pytest.mark.parametrize(
    ("who", "status"),
    [("owner", 200), ("admin", 200), ("auditor", 200), ("member", 403), ("outsider", 404)],
)
def test_it_lets_owners_admins_and_auditors_read_it(everyone, who, status):
    assert client_for(everyone[who]).get(_url(everyone["owner"].org)).status_code == status


def test_it_shows_who_created_each_bucket_and_the_keys_that_used_it(owner, member, outsider):
    maker, _ = new_key(member, "ci-deploy")
    reader, _ = new_key(owner, "backup")
    foreign, _ = new_key(outsider, "theirs")
    claim_bucket(maker, "acme-assets", Actor.system())
    adopt_bucket(owner.org, "acme-legacy", Actor.system())
    adopt_bucket(outsider.org, "globex-data", Actor.system())
    today = timezone.now().date()
    for key, day, requests in [
        (maker, today, 7),
        (reader, today - timedelta(days=3), 2),
        (reader, today - timedelta(days=40), 1000),  # outside the 30 days
        (foreign, today, 99),  # another org's key on the name: never shown here
    ]:
        KeyBucketDay.objects.create(
            access_key=key,
            bucket="acme-assets",
            day=day,
            requests=requests,
            bytes_in=requests * 1024,
            bytes_out=requests,
        )

    html = client_for(owner).get(_url(owner.org)).content.decode()

    assets = html.split('<tr id="bucket-acme-assets">', 1)[1].split("</tr>", 1)[0]
    assert f'key <a href="{reverse("key_detail", args=["acme", maker.pk])}">' in assets
    assert "ci-deploy" in assets and "on behalf of member@acme.test" in assets
    assert f'<code>{maker.pk}</code></a>: <span data-requests="7">7 requests</span>' in assets
    assert f'<code>{reader.pk}</code></a>: <span data-requests="2">2 requests</span>' in assets
    assert assets.index(maker.pk + "</code></a>:") < assets.index(reader.pk + "</code></a>:")
    assert assets.count("data-requests=") == 2
    assert 'data-requests="99"' not in assets and foreign.pk not in html
    assert 'data-requests="1000"' not in assets and 'data-requests="1002"' not in assets
    assert "7.0\xa0KB in" in assets
    legacy = html.split('<tr id="bucket-acme-legacy">', 1)[1].split("</tr>", 1)[0]
    assert "Not recorded" in legacy and "None" in legacy
    assert "globex-data" not in html


def test_it_says_so_when_the_org_has_no_bucket(owner):
    html = client_for(owner).get(_url(owner.org)).content.decode()
    assert "No buckets yet." in html


def test_it_costs_the_same_queries_for_a_few_buckets_or_many(owner, django_assert_max_num_queries):
    key, _ = new_key(owner)
    client = client_for(owner)
    claim_bucket(key, "acme-one", Actor.system())
    client.get(_url(owner.org))
    with django_assert_max_num_queries(20) as few:
        client.get(_url(owner.org))
    Bucket.objects.bulk_create(
        Bucket(name=f"acme-many-{n}", org=owner.org, created_by_key=key) for n in range(120)
    )
    KeyBucketDay.objects.bulk_create(
        KeyBucketDay(access_key=key, bucket=f"acme-many-{n}", day=timezone.now().date(), requests=n)
        for n in range(120)
    )
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = client.get(_url(owner.org))
    assert "Next →" in page.content.decode()


def test_it_lists_the_ten_busiest_keys_of_a_bucket_and_sums_up_the_rest(owner):
    adopt_bucket(owner.org, "acme-busy", Actor.system())
    keys = [new_key(owner, f"key-{n}")[0] for n in range(13)]
    for n, key in enumerate(keys):
        KeyBucketDay.objects.create(
            access_key=key, bucket="acme-busy", day=timezone.now().date(), requests=n + 1
        )

    html = client_for(owner).get(_url(owner.org)).content.decode()

    shown = re.findall(r'data-requests="(\d+)"', html)
    assert shown == [str(n) for n in range(13, 3, -1)]
    assert "and 3 more keys: 6 requests" in html
