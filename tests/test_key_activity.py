"""A key's page: its 30 days drawn as charts with the same numbers in a table, its last
use (with user agent), top source addresses and buckets, from real traffic through a
gateway and a Celery worker, and from rolled-up days."""

from __future__ import annotations

import csv
import io
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone

from audit.trail import Actor
from gateway.services import adopt_bucket
from keys import reports, rollups
from keys.models import AccessKey, KeyUsage
from tests import usage_stack
from tests.conftest import client_for, new_key
from tests.s3_raw import Signer
from tests.test_gateway_e2e import bucket_name, s3_client

WAIT_SECONDS = 30
AGENT = "aws-cli/2.15.0 Python/3.11 Linux/6.1 exe/x86_64"


var, gw, celery_worker = usage_stack.fixtures(forwarded_allow_ips="127.0.0.1")


def _chart_values(html: str, measure: str) -> dict[str, int]:
    figure = html.split(f'data-measure="{measure}">', 1)[1].split("</figure>", 1)[0]
    return {
        day: int(value)
        for day, value in re.findall(r'data-day="([0-9-]+)" data-value="(\d+)"', figure)
    }


def _table_values(html: str, measure: str) -> dict[str, int]:
    table = html.split('id="usage-days"', 1)[1].split("</table>", 1)[0]
    found = {}
    for day, row in re.findall(r'<tr data-day="([0-9-]+)">(.*?)</tr>', table):
        found[day] = int(re.search(rf'data-measure="{measure}" data-value="(\d+)"', row).group(1))
    return found


@pytest.mark.django_db(transaction=True)
def test_it_shows_a_keys_traffic_exactly_as_sent(gw, store, celery_worker, owner):
    key, secret = new_key(owner)
    first, second = bucket_name(), bucket_name()
    admin_s3 = s3_client(store.url, store.access_key_id, store.secret_access_key)
    for name in (first, second):
        admin_s3.create_bucket(Bucket=name)
        adopt_bucket(owner.org, name, Actor.system())
    port = int(gw.url.rsplit(":", 1)[1])
    signer = Signer(port, key.id, secret)

    def send(method, target, ip, body=b""):
        return signer.request(
            method,
            target,
            body=body,
            headers=[("User-Agent", AGENT)],
            unsigned=[("X-Forwarded-For", ip)],
        )

    for number in range(4):
        assert send("PUT", f"/{first}/o{number}", "198.51.100.4", b"x" * 100).status == 200
    for _ in range(2):
        assert send("GET", f"/{first}/o0", "198.51.100.5").status == 200
    assert send("GET", f"/{second}/missing", "198.51.100.5").status == 404
    assert send("GET", f"/{second}?list-type=2", "198.51.100.6").status == 200

    deadline = time.monotonic() + WAIT_SECONDS
    while (
        KeyUsage.objects.filter(access_key=key).aggregate(n=Sum("requests"))["n"] != 8
        or AccessKey.objects.get(pk=key.pk).last_used_operation != "ListObjectsV2"
    ):
        assert time.monotonic() < deadline, celery_worker.read_text(errors="replace")
        time.sleep(0.2)
    time.sleep(1.5)

    html = client_for(owner).get(reverse("key_detail", args=[owner.org.slug, key.id]))
    html = html.content.decode()
    # The day the requests were counted on (two, should they have straddled midnight).
    days = {
        hour.date().isoformat()
        for hour in KeyUsage.objects.filter(access_key=key).values_list("hour", flat=True)
    }
    assert sum(_chart_values(html, "requests")[day] for day in days) == 8
    assert sum(_chart_values(html, "errors")[day] for day in days) == 1
    assert sum(_chart_values(html, "bytes_in")[day] for day in days) >= 400
    for measure in ("requests", "bytes_in", "bytes_out", "errors"):
        assert _chart_values(html, measure) == {
            day: value for day, value in _table_values(html, measure).items()
        }
    assert len(_chart_values(html, "requests")) == 30
    assert f'<code class="user-agent">{AGENT}</code>' in html
    assert "ListObjectsV2" in html and f"on {second}" in html and "from 198.51.100.6" in html
    sources = html.split('id="sources-title"', 1)[1].split("</section>", 1)[0]
    assert re.findall(r"<td>([0-9.]+)</td><td>(\d+)</td>", sources) == [
        ("198.51.100.4", "4"),
        ("198.51.100.5", "3"),
        ("198.51.100.6", "1"),
    ]
    usage_page = client_for(owner).get(reverse("org_usage", args=[owner.org.slug]))
    assert re.search(
        rf'<tr id="usage-{key.id}">.*?<td data-label="Requests, 30 days" data-value="8">',
        usage_page.content.decode(),
        re.S,
    )
    report = reports.request_report(owner, Actor.for_user(owner.user), enqueue=lambda _id: None)
    assert reports.build_report(str(report.pk))
    report_csv = client_for(owner).get(
        reverse("credential_report_csv", args=[owner.org.slug, report.pk])
    )
    [row] = [
        r for r in csv.DictReader(io.StringIO(report_csv.text)) if r["access_key_id"] == key.id
    ]
    assert (row["requests_30_days"], row["last_used_ip"]) == ("8", "198.51.100.6")
    bucket_page = client_for(owner).get(reverse("bucket_list", args=[owner.org.slug]))
    bucket_html = bucket_page.content.decode()
    for name, requests in ((first, 6), (second, 2)):
        row = bucket_html.split(f'<tr id="bucket-{name}">', 1)[1].split("</tr>", 1)[0]
        assert f'<span data-requests="{requests}">' in row
    buckets = html.split('id="buckets-title"', 1)[1].split("</section>", 1)[0]
    assert re.findall(r"<td>(b-[0-9a-f]+)</td><td>(\d+)</td>", buckets) == [
        (first, "6"),
        (second, "2"),
    ]


HOSTILE_AGENT = (
    '"><script>alert(1)</script><a href="javascript:alert(2)">x</a> '
    '=HYPERLINK("javascript:alert(3)") ' + "A" * 400
)


@pytest.mark.django_db(transaction=True)
def test_a_hostile_user_agent_and_forwarded_address_reach_the_pages_as_text(
    gw, store, celery_worker, owner
):
    key, secret = new_key(owner)
    bucket = bucket_name()
    admin_s3 = s3_client(store.url, store.access_key_id, store.secret_access_key)
    admin_s3.create_bucket(Bucket=bucket)
    adopt_bucket(owner.org, bucket, Actor.system())
    signer = Signer(int(gw.url.rsplit(":", 1)[1]), key.id, secret)
    answer = signer.request(
        "GET",
        f"/{bucket}?list-type=2",
        headers=[("User-Agent", HOSTILE_AGENT)],
        # From the trusted proxy, but not an address: the source counts as unknown.
        unsigned=[("X-Forwarded-For", '"><img src=x onerror=alert(4)>')],
    )
    assert answer.status == 200

    deadline = time.monotonic() + WAIT_SECONDS
    while (
        KeyUsage.objects.filter(access_key=key).aggregate(n=Sum("requests"))["n"] != 1
        or not AccessKey.objects.get(pk=key.pk).last_used_user_agent
    ):
        assert time.monotonic() < deadline, celery_worker.read_text(errors="replace")
        time.sleep(0.2)
    stored = AccessKey.objects.get(pk=key.pk)
    assert stored.last_used_user_agent == HOSTILE_AGENT[:200]
    assert stored.last_used_ip is None

    html = client_for(owner).get(reverse("key_detail", args=[owner.org.slug, key.id]))
    html = html.content.decode()
    assert "<script>alert" not in html and "onerror=alert" not in html
    assert 'href="javascript:' not in html
    assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    report = reports.request_report(owner, Actor.for_user(owner.user), enqueue=lambda _id: None)
    assert reports.build_report(str(report.pk))
    report_csv = client_for(owner).get(
        reverse("credential_report_csv", args=[owner.org.slug, report.pk])
    )
    for row in csv.DictReader(io.StringIO(report_csv.text)):
        assert not any(str(cell).lstrip().startswith(("=", "+", "-", "@")) for cell in row.values())
        if row["access_key_id"] == key.id:
            assert (row["requests_30_days"], row["last_used_ip"]) == ("1", "")


@pytest.mark.django_db
def test_rolled_up_days_read_the_same_and_the_page_costs_the_same_queries(
    owner, django_assert_max_num_queries
):
    key, _ = new_key(owner)
    now = timezone.now()
    hours = [now - timedelta(hours=6 * step) for step in range(4 * 20)]
    KeyUsage.objects.bulk_create(
        KeyUsage(
            access_key=key,
            hour=hour.replace(minute=0, second=0, microsecond=0),
            requests=step + 1,
            errors=step % 2,
        )
        for step, hour in enumerate(hours)
    )
    url = reverse("key_detail", args=[owner.org.slug, key.id])
    client = client_for(owner)
    client.get(url)  # the session's sign-in, out of the count
    before = client.get(url).content.decode()

    rolled = rollups.roll_up(now)

    assert rolled > 0
    with django_assert_max_num_queries(16) as counted:
        after = client.get(url).content.decode()
    assert _chart_values(after, "requests") == _chart_values(before, "requests")
    assert sum(_chart_values(after, "requests").values()) == sum(
        step + 1 for step, hour in enumerate(hours) if hour.date() > (now - timedelta(30)).date()
    )
    many = len(counted.captured_queries)
    empty, _ = new_key(owner, "empty")
    with django_assert_max_num_queries(many):
        client.get(reverse("key_detail", args=[owner.org.slug, empty.id]))


@pytest.mark.django_db
def test_another_orgs_member_gets_404_for_the_page(owner, outsider):
    key, _ = new_key(owner)
    page = client_for(outsider).get(reverse("key_detail", args=[owner.org.slug, key.id]))
    assert page.status_code == 404
    assert datetime.now(UTC)
