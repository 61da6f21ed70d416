"""Denied attempts: requests that used a revoked key, or a bad signature for a live key,
sent through a real gateway and a real Celery worker, are counted per key and source IP,
and the keys page and the key's page show the exact counts sent."""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import timedelta

import pytest
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone

from audit.trail import Actor
from gateway.services import adopt_bucket
from keys import reports, usage
from keys.models import DeniedAttempt, KeyUsage
from keys.services import deactivate_key, revoke_key
from tests import usage_stack
from tests.conftest import client_for, new_key
from tests.s3_raw import Signer
from tests.test_gateway_e2e import bucket_name, s3_client

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_SECONDS = 30
GOOD = 3
REVOKED_SIGNED = 5
REVOKED_BAD_SIGNATURE = 2
LIVE_BAD_SIGNATURE = 4


var, gw, celery_worker = usage_stack.fixtures(forwarded_allow_ips="127.0.0.1")


def _from(address: str) -> dict:
    return {"unsigned": [("X-Forwarded-For", address)]}


def _wait_for(condition, log) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.2)


def test_it_counts_denied_attempts_per_key_and_source_and_shows_them(
    gw, store, celery_worker, owner
):
    live, live_secret = new_key(owner, "live")
    old, old_secret = new_key(owner, "old")
    name = bucket_name()
    s3_client(store.url, store.access_key_id, store.secret_access_key).create_bucket(Bucket=name)
    adopt_bucket(owner.org, name, Actor.system())
    port = int(gw.url.rsplit(":", 1)[1])

    good = Signer(port, live.id, live_secret)
    for _ in range(GOOD):
        assert good.request("GET", f"/{name}", **_from("198.51.100.4")).status == 200
    forged = Signer(port, live.id, "x" * 40)
    for _ in range(LIVE_BAD_SIGNATURE):
        assert forged.request("GET", f"/{name}", **_from("192.0.2.50")).status == 403
    revoke_key(owner, Actor.for_user(owner.user), old)
    holder = Signer(port, old.id, old_secret)
    for _ in range(REVOKED_SIGNED):
        assert holder.request("GET", f"/{name}", **_from("203.0.113.9")).status == 403
    guesser = Signer(port, old.id, "y" * 40)
    for _ in range(REVOKED_BAD_SIGNATURE):
        assert guesser.request("GET", f"/{name}", **_from("203.0.113.9")).status == 403

    sent = REVOKED_SIGNED + REVOKED_BAD_SIGNATURE + LIVE_BAD_SIGNATURE
    _wait_for(
        lambda: (
            DeniedAttempt.objects.aggregate(n=Sum("count"))["n"] == sent
            and KeyUsage.objects.filter(access_key=live).aggregate(n=Sum("requests"))["n"] == GOOD
        ),
        celery_worker,
    )
    time.sleep(1.5)  # one more flush: nothing further may arrive
    assert DeniedAttempt.objects.aggregate(n=Sum("count"))["n"] == sent
    rows = DeniedAttempt.objects.values_list("access_key_id", "source_ip", "signed", "count")
    assert sorted(rows) == sorted(
        [
            (live.id, "192.0.2.50", False, LIVE_BAD_SIGNATURE),
            (old.id, "203.0.113.9", True, REVOKED_SIGNED),
            (old.id, "203.0.113.9", False, REVOKED_BAD_SIGNATURE),
        ]
    )

    client = client_for(owner)
    live_page = client.get(reverse("key_detail", args=[owner.org.slug, live.id])).content.decode()
    assert (
        f"{LIVE_BAD_SIGNATURE} requests from <strong>192.0.2.50</strong> named key "
        f"<code>{live.id}</code> with a bad signature"
    ) in live_page
    assert f"<td>{GOOD}</td>" in live_page
    old_page = client.get(reverse("key_detail", args=[owner.org.slug, old.id])).content.decode()
    assert (
        f"Revoked key <code>{old.id}</code> was used "
        f"{REVOKED_SIGNED + REVOKED_BAD_SIGNATURE} times from <strong>203.0.113.9</strong> "
        f"since it was revoked ({REVOKED_SIGNED} signed with its correct secret)"
    ) in old_page

    # The usage page and the credential report count what each key signed: the live key's
    # requests, and the revoked key's refused ones (its bad signatures are not its use).
    usage_page = client.get(reverse("org_usage", args=[owner.org.slug]) + "?show=all")
    for key, sent_with_secret in ((live, GOOD), (old, REVOKED_SIGNED)):
        assert re.search(
            rf'<tr id="usage-{key.id}">.*?<td data-label="Requests, 30 days" '
            rf'data-value="{sent_with_secret}">',
            usage_page.content.decode(),
            re.S,
        )
    report = reports.request_report(owner, Actor.for_user(owner.user), enqueue=lambda _id: None)
    assert reports.build_report(str(report.pk))
    report_csv = client.get(reverse("credential_report_csv", args=[owner.org.slug, report.pk]))
    counted = {
        row["access_key_id"]: (row["status"], row["requests_30_days"])
        for row in csv.DictReader(io.StringIO(report_csv.text))
    }
    assert counted == {live.id: ("active", str(GOOD)), old.id: ("revoked", str(REVOKED_SIGNED))}

    live_list = client.get(reverse("key_list", args=[owner.org.slug])).content.decode()
    assert f"⚠ {LIVE_BAD_SIGNATURE} denied" in live_list
    retired = client.get(reverse("key_list", args=[owner.org.slug]) + "?tab=retired")
    assert f"⚠ {REVOKED_SIGNED + REVOKED_BAD_SIGNATURE} denied" in retired.content.decode()


def test_only_attempts_after_a_key_stopped_count_as_its_use_since(owner, member):
    key, _ = new_key(owner, "laptop")
    now = timezone.now()
    hour = now.replace(minute=0, second=0, microsecond=0)
    for hours_ago, signed, count in [(5, False, 2), (0, True, 3), (0, False, 1)]:
        DeniedAttempt.objects.create(
            access_key_id=key.id,
            org=owner.org,
            source_ip="203.0.113.9",
            hour=hour - timedelta(hours=hours_ago),
            signed=signed,
            count=count,
        )
    DeniedAttempt.objects.create(
        access_key_id=key.id, org=owner.org, source_ip="203.0.113.9", hour=hour - timedelta(days=40)
    )
    key = deactivate_key(owner, Actor.for_user(owner.user), key)

    sources = usage.denied_sources(key)

    assert [(s.source_ip, s.since_stopped, s.count, s.signed) for s in sources] == [
        ("203.0.113.9", True, 4, 3),
        ("203.0.113.9", False, 2, 0),
    ]
    page = client_for(member).get(reverse("key_detail", args=[owner.org.slug, key.id]))
    html = page.content.decode()
    assert f"Inactive key <code>{key.id}</code> was used 4 times from" in html
    assert "since it was deactivated (3 signed with its correct secret)" in html
    assert "2 requests from <strong>203.0.113.9</strong> named key" in html


def test_a_member_of_another_org_sees_no_denied_attempts(owner, outsider):
    key, _ = new_key(owner, "laptop")
    page = client_for(outsider).get(reverse("key_detail", args=[owner.org.slug, key.id]))
    assert page.status_code == 404
