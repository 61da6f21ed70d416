"""One alert a day per key to the org's owners and admins while a key that is revoked,
inactive or expired is still being used (refused requests naming it after it stopped).

The sweep (keys.tasks.alert_denied_uses, run by beat) records each alert with its audit
event in one transaction; the unique (key, day) constraint makes a second sweep, or two at
once, record nothing more; each alert is then mailed by its own task.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.models import Membership, Role
from audit.models import AuditAction, TargetType
from audit.trail import Actor, record

from . import usage
from .models import AccessKey, DeniedAttempt, DeniedUseAlert, KeyStatus

ALERT_ACTOR = "denied-use alerts"


def _start_of_day(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date(), time.min, tzinfo=UTC)


def uses_since_stopped(key: AccessKey, now: datetime) -> list[tuple[str, int]]:
    """Today's refused requests naming the key since it stopped, per source IP."""
    stopped = usage.stopped_hour(key)
    since = max(_start_of_day(now), stopped) if stopped is not None else None
    if since is None:
        return []
    rows = (
        DeniedAttempt.objects.filter(access_key_id=key.pk, hour__gte=since)
        .values("source_ip")
        .annotate(total=Sum("count"))
        .order_by("-total", "source_ip")
    )
    return [(row["source_ip"], row["total"]) for row in rows]


def record_alerts(send: Callable[[int], object], now: datetime | None = None) -> list[int]:
    """Record today's alert for every stopped key used since it stopped; ``send`` (the
    mail task's delay_on_commit) is called with each new alert's ID. Returns their IDs."""
    now = now or timezone.now()
    named_today = (
        DeniedAttempt.objects.filter(hour__gte=_start_of_day(now))
        .exclude(access_key_id="")
        .values("access_key_id")
    )
    keys = (
        AccessKey.objects.filter(pk__in=named_today)
        .exclude(status=KeyStatus.ACTIVE)
        .select_related("org")
        .defer("secret_sealed")
        .order_by("pk")
    )
    actor = Actor.system(ALERT_ACTOR)
    created = []
    for key in keys:
        sources = uses_since_stopped(key, now)
        if not sources:
            continue
        try:
            with transaction.atomic():
                alert = DeniedUseAlert.objects.create(key=key, day=now.astimezone(UTC).date())
                record(
                    actor,
                    AuditAction.ACCESS_KEY_DENIED_USE_ALERTED,
                    org=key.org,
                    target_type=TargetType.ACCESS_KEY,
                    target_id=key.pk,
                    details={
                        "name": key.name,
                        "status": key.status,
                        "requests": sum(count for _, count in sources),
                        "sources": [ip for ip, _ in sources][:10],
                    },
                )
                send(alert.pk)
        except IntegrityError:
            continue  # alerted already today
        created.append(alert.pk)
    return created


def alert_recipients(alert: DeniedUseAlert) -> list[str]:
    emails = Membership.objects.filter(
        org_id=alert.key.org_id, role__in=(Role.OWNER, Role.ADMIN), user__is_active=True
    ).values_list("user__email", flat=True)
    return sorted(set(emails))
