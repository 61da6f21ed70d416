"""The credential report: asked for by owners, admins and auditors (audited), built by a
Celery worker with its progress on the page, downloaded as CSV or JSON (audited) with one
row per key."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditAction, TargetType
from audit.trail import Actor
from keys import reports
from keys.models import AccessKey, CredentialReport, KeyUsage, KeyUsageDay, ReportStatus
from keys.scope import Scope
from keys.services import create_key, revoke_key, rotate_key
from tests.conftest import audit_mark, client_for, events_since, new_key
from tests.gateway_stack import worker

BIG_ORG = 10_000
WORKER_TIMEOUT = 120


def _page(org) -> str:
    return reverse("credential_report", args=[org.slug])


def _build_all() -> None:
    for report_id in CredentialReport.objects.filter(status=ReportStatus.PENDING).values_list(
        "pk", flat=True
    ):
        reports.build_report(str(report_id))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("who", "status"),
    [("owner", 200), ("admin", 200), ("auditor", 200), ("member", 403), ("outsider", 404)],
)
def test_it_lets_owners_admins_and_auditors_ask_for_it(everyone, who, status):
    client = client_for(everyone[who])
    org = everyone["owner"].org
    mark = audit_mark()
    assert client.get(_page(org)).status_code == status
    response = client.post(_page(org))
    assert response.status_code == (302 if status == 200 else status)
    made = CredentialReport.objects.filter(org=org).count()
    assert made == (1 if status == 200 else 0)
    assert len(events_since(mark)) == made


@pytest.mark.django_db
def test_it_refuses_other_methods(owner):
    assert client_for(owner).put(_page(owner.org)).status_code == 405


@pytest.mark.django_db
def test_asking_twice_while_one_is_queued_makes_one_report_and_one_event(owner):
    client = client_for(owner)
    mark = audit_mark()
    client.post(_page(owner.org))
    client.post(_page(owner.org))

    [report] = CredentialReport.objects.all()
    [event] = events_since(mark)
    assert event.action == AuditAction.CREDENTIAL_REPORT_REQUESTED
    assert (event.target_type, event.target_id) == (TargetType.CREDENTIAL_REPORT, str(report.pk))
    assert event.actor_user_id == owner.user_id
    page = client.get(_page(owner.org)).content.decode()
    assert "Queued" in page and 'hx-trigger="every 1s"' in page


@pytest.mark.django_db
def test_it_reports_every_key_and_downloads_as_csv_and_json_audited(owner, member, auditor):
    laptop, _ = new_key(member, "-2 laptop")
    server = create_key(
        owner,
        Actor.for_user(owner.user),
        "server",
        scope=Scope.build(permission="read-only", buckets=[("logs", "app/")]),
    ).key
    replacement = rotate_key(owner, Actor.for_user(owner.user), server).key
    revoke_key(owner, Actor.for_user(owner.user), AccessKey.objects.get(pk=server.pk))
    now = timezone.now()
    KeyUsage.objects.create(access_key=laptop, hour=now.replace(minute=0), requests=11)
    KeyUsageDay.objects.create(access_key=laptop, day=(now - timedelta(days=12)).date(), requests=4)
    KeyUsageDay.objects.create(access_key=laptop, day=(now - timedelta(days=45)).date(), requests=9)
    AccessKey.objects.filter(pk=laptop.pk).update(
        last_used_at=now, last_used_ip="192.0.2.4", last_used_operation="GetObject"
    )
    client = client_for(auditor)
    client.post(_page(owner.org))
    _build_all()
    [report] = CredentialReport.objects.all()
    assert (report.status, report.done, report.total) == (ReportStatus.DONE, 3, 3)
    assert reports.build_report(str(report.pk)) is False  # a second delivery does nothing

    mark = audit_mark()
    answer = client.get(reverse("credential_report_csv", args=[owner.org.slug, report.pk]))
    assert answer["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in answer["Content-Disposition"]
    rows = {row["access_key_id"]: row for row in csv.DictReader(io.StringIO(answer.text))}
    assert set(rows) == {laptop.pk, server.pk, replacement.pk}
    assert rows[laptop.pk]["name"] == "'-2 laptop"
    assert rows[laptop.pk]["creator"] == "member@acme.test"
    assert rows[laptop.pk]["requests_30_days"] == "15"
    assert rows[laptop.pk]["last_used_ip"] == "192.0.2.4"
    assert rows[laptop.pk]["last_used_operation"] == "GetObject"
    assert rows[server.pk]["status"] == "revoked"
    assert rows[replacement.pk]["rotated_from"] == server.pk
    assert rows[server.pk]["requests_30_days"] == "0"
    assert rows[laptop.pk]["scope"] == "admin on all of the organisation's buckets"
    # A rotation's replacement may do what the key it replaced could.
    for key in (server, replacement):
        assert rows[key.pk]["scope"] == "read-only on logs/app/*"
    assert "secret" not in answer.text.lower()
    document = json.loads(
        client.get(reverse("credential_report_json", args=[owner.org.slug, report.pk])).content
    )
    assert {row["access_key_id"] for row in document["keys"]} == set(rows)
    assert [e.details["format"] for e in events_since(mark)] == ["csv", "json"]
    assert {e.action for e in events_since(mark)} == {AuditAction.CREDENTIAL_REPORT_DOWNLOADED}


@pytest.mark.django_db
def test_another_org_cannot_download_it_and_an_unfinished_one_is_not_there(owner, outsider):
    client_for(owner).post(_page(owner.org))
    [report] = CredentialReport.objects.all()
    url = reverse("credential_report_csv", args=[owner.org.slug, report.pk])
    assert client_for(owner).get(url).status_code == 404  # still queued
    _build_all()
    assert client_for(outsider).get(url).status_code == 404
    foreign = reverse("credential_report_csv", args=[outsider.org.slug, report.pk])
    assert client_for(outsider).get(foreign).status_code == 404
    assert client_for(owner).get(url).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_worker_builds_it_for_10000_keys_with_progress_on_the_page(
    owner, store, tmp_path, settings
):
    from excloud_portal.celery import app

    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL: the worker takes the task from the Redis broker")
    AccessKey.objects.bulk_create(
        AccessKey(
            id=f"EXC{number:017d}",
            org=owner.org,
            name=f"key-{number}",
            secret_sealed=b"",
            secret_kek_id="k",
            created_via="api",
            created_by=owner.user,
        )
        for number in range(BIG_ORG)
    )
    client = client_for(owner)
    app.control.purge()
    with worker(tmp_path, store, redis_url=settings.REDIS_URL, var=tmp_path) as log:
        first = client.post(_page(owner.org), headers={"HX-Request": "true"}).content.decode()
        assert f"0 of {BIG_ORG} keys" in first
        seen = set()
        deadline = time.monotonic() + WORKER_TIMEOUT
        while True:
            page = client.get(_page(owner.org), headers={"HX-Request": "true"}).content.decode()
            if 'data-status="done"' in page:
                break
            seen.update(int(n) for n in re.findall(rf"(\d+) of {BIG_ORG} keys", page))
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.05)
    assert "every 1s" not in page and f"{BIG_ORG} keys:" in page
    [report] = CredentialReport.objects.all()
    answer = client.get(reverse("credential_report_csv", args=[owner.org.slug, report.pk]))
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert len(rows) == BIG_ORG
    assert len({row["access_key_id"] for row in rows}) == BIG_ORG
    assert seen and seen <= set(range(0, BIG_ORG + 1, reports.REPORT_BATCH))
