"""Owners and admins get one email per key per day while a revoked, inactive or expired
key is still being used; the alert is audited, and a second sweep sends nothing more."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.utils import timezone

from audit.models import AuditAction
from audit.trail import Actor
from excloud_portal.celery import app
from keys import denied_alerts
from keys.models import DeniedAttempt, DeniedUseAlert
from keys.services import deactivate_key, revoke_key
from keys.tasks import alert_denied_uses
from tests.conftest import audit_mark, events_since, new_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def eager_celery():
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def _attempts(key, ip: str, count: int, hours_ago: int = 0, signed: bool = True) -> None:
    hour = (timezone.now() - timedelta(hours=hours_ago)).replace(minute=0, second=0, microsecond=0)
    DeniedAttempt.objects.create(
        access_key_id=key.pk, org_id=key.org_id, source_ip=ip, hour=hour, signed=signed, count=count
    )


def test_it_alerts_owners_and_admins_once_a_day_per_stopped_key_still_used(
    owner, admin, member, auditor, eager_celery, django_capture_on_commit_callbacks
):
    revoked, _ = new_key(member, "old-laptop")
    revoke_key(owner, Actor.for_user(owner.user), revoked)
    _attempts(revoked, "203.0.113.9", 7)
    _attempts(revoked, "198.51.100.2", 2, signed=False)
    live, _ = new_key(owner, "live")
    _attempts(live, "192.0.2.1", 30, signed=False)  # bad signatures on a live key: no alert
    mark = audit_mark()

    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            alert_denied_uses()

    [alert] = DeniedUseAlert.objects.all()
    assert alert.key_id == revoked.pk and alert.sent_at is not None
    [message] = mail.outbox
    assert sorted(message.to) == ["admin@acme.test", "owner@acme.test"]
    assert f"Revoked access key “old-laptop” ({revoked.pk}) is still being used" == message.subject
    assert "203.0.113.9: 7 requests" in message.body
    assert "198.51.100.2: 2 requests" in message.body
    assert f"{django_settings.SITE_URL}/orgs/acme/keys/{revoked.pk}/#denied" in message.body
    [event] = events_since(mark)
    assert (event.action, event.target_id) == (
        AuditAction.ACCESS_KEY_DENIED_USE_ALERTED,
        revoked.pk,
    )
    assert event.details["requests"] == 9


def test_it_counts_uses_from_the_hour_the_key_stopped(owner):
    key, _ = new_key(owner, "paused")
    _attempts(key, "203.0.113.9", 4, hours_ago=0, signed=False)
    deactivate_key(owner, Actor.for_user(owner.user), key)
    # Deactivated after the attempts but within the same hour: counted from that hour on.
    assert denied_alerts.record_alerts(lambda _id: None) != []
    other, _ = new_key(owner, "other")
    _attempts(other, "203.0.113.9", 4, hours_ago=3, signed=False)
    deactivate_key(owner, Actor.for_user(owner.user), other)
    assert [a.key_id for a in DeniedUseAlert.objects.all()] == [key.pk]
    assert denied_alerts.record_alerts(lambda _id: None) == []


def test_beat_runs_the_sweep():
    schedule = {entry["task"] for entry in django_settings.CELERY_BEAT_SCHEDULE.values()}
    assert "keys.tasks.alert_denied_uses" in schedule
    assert "keys.tasks.alert_denied_uses" in app.tasks
