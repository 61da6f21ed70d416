"""Celery tasks for the key lifecycle: the expiry sweep and warnings before expiry.

Tasks take IDs, never model instances; the work they do is idempotent (see keys/expiry.py).
"""

from __future__ import annotations

import smtplib
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, Role

from . import denied_alerts, expiry, reports, revocation, rollups, usage
from .models import DeniedUseAlert, KeyWarning

WARNING_RETRIES = 5
# Longer than the retries of one warning's mail task take (backoff capped at 600 s).
UNSENT_WARNING_GRACE = timedelta(hours=2)


@shared_task(name="keys.tasks.expire_due_keys")
def expire_due_keys() -> int:
    """Expire every live key past a limit; returns how many. Also drops the gateways'
    change records that no gateway can need any more."""
    revocation.forget_old_changes(timezone.now())
    return expiry.expire_due_keys()


@shared_task(name="keys.tasks.roll_up_usage")
def roll_up_usage() -> int:
    """Add the hourly usage rows older than two days into daily rows; returns how many
    hourly rows it rolled. Safe to run twice or at once (keys/rollups.py)."""
    return rollups.roll_up()


@shared_task(name="keys.tasks.build_credential_report", acks_late=True)
def build_credential_report(report_id: str) -> bool:
    """Build a queued credential report (keys/reports.py); a second delivery of the same
    report does nothing."""
    return reports.build_report(report_id)


@shared_task(name="keys.tasks.warn_expiring_keys")
def warn_expiring_keys() -> int:
    """Record a warning for each key about to expire; each is mailed by its own task.

    A sweep also mails the warnings an earlier one recorded but whose mail task never
    reached a worker (the broker was down at the time): older than UNSENT_WARNING_GRACE,
    longer than send_expiry_warning's own retries take, and not yet due.
    """
    created = expiry.record_warnings(send_expiry_warning.delay_on_commit)
    now = timezone.now()
    stranded = (
        KeyWarning.objects.filter(
            sent_at__isnull=True, created_at__lt=now - UNSENT_WARNING_GRACE, due_at__gt=now
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for warning_id in stranded:
        send_expiry_warning.delay(warning_id)
    return len(created)


def warning_recipients(warning: KeyWarning) -> list[str]:
    key = warning.key
    policy = expiry.KeyPolicy.objects.filter(org_id=key.org_id).first()
    warn_admins = policy.warn_admins if policy else True
    who = Q(user_id=key.created_by_id)
    if warn_admins:
        who |= Q(role__in=(Role.OWNER, Role.ADMIN))
    emails = (
        Membership.objects.filter(who, org_id=key.org_id, user__is_active=True)
        .order_by("user__email")
        .values_list("user__email", flat=True)
    )
    return sorted(set(emails))


@shared_task(
    name="keys.tasks.send_expiry_warning",
    autoretry_for=(smtplib.SMTPException, OSError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=WARNING_RETRIES,
)
def send_expiry_warning(warning_id: int) -> bool:
    """Mail one recorded warning, once: a warning already marked sent is not mailed again."""
    warning = (
        KeyWarning.objects.select_related("key", "key__org")
        .filter(pk=warning_id, sent_at__isnull=True)
        .first()
    )
    if warning is None:
        return False
    key = warning.key
    context = {
        "key": key,
        "org": key.org,
        "reason": expiry.ExpiryReason(warning.reason).label,
        "due_at": warning.due_at,
        "url": settings.SITE_URL + reverse("key_detail", args=[key.org.slug, key.pk]),
    }
    subject = f"Access key “{key.name}” ({key.pk}) expires on {warning.due_at:%Y-%m-%d %H:%M} UTC"
    body = render_to_string("keys/email/expiry_warning.txt", context)
    recipients = warning_recipients(warning)
    if recipients:
        send_mail(subject, body, None, recipients)
    KeyWarning.objects.filter(pk=warning_id, sent_at__isnull=True).update(sent_at=timezone.now())
    return bool(recipients)


@shared_task(name="keys.tasks.alert_denied_uses")
def alert_denied_uses() -> int:
    """Record today's alert for each stopped key still being used; each is mailed by its
    own task. Returns how many were recorded."""
    return len(denied_alerts.record_alerts(send_denied_use_alert.delay_on_commit))


@shared_task(
    name="keys.tasks.send_denied_use_alert",
    autoretry_for=(smtplib.SMTPException, OSError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=WARNING_RETRIES,
)
def send_denied_use_alert(alert_id: int) -> bool:
    """Mail one recorded alert, once: an alert already marked sent is not mailed again."""
    alert = (
        DeniedUseAlert.objects.select_related("key", "key__org")
        .filter(pk=alert_id, sent_at__isnull=True)
        .first()
    )
    if alert is None:
        return False
    key = alert.key
    context = {
        "key": key,
        "org": key.org,
        "stopped": usage.STOPPED.get(key.status, key.status),
        "sources": denied_alerts.uses_since_stopped(key, timezone.now()),
        "url": settings.SITE_URL + reverse("key_detail", args=[key.org.slug, key.pk]) + "#denied",
    }
    subject = f"{key.get_status_display()} access key “{key.name}” ({key.pk}) is still being used"
    body = render_to_string("keys/email/denied_use_alert.txt", context)
    recipients = denied_alerts.alert_recipients(alert)
    if recipients:
        send_mail(subject, body, None, recipients)
    DeniedUseAlert.objects.filter(pk=alert_id, sent_at__isnull=True).update(sent_at=timezone.now())
    return bool(recipients)
