from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from celery import shared_task
from django.db import IntegrityError, transaction
from django.db.models import F

from keys.models import AccessKey
from keys.services import note_last_use

from .models import DeniedAttempt, KeyUsage, SigningKeyGrant
from .usage import ANY_KEY, COUNTERS

log = logging.getLogger(__name__)


@shared_task(name="gateway.tasks.record_usage")
def record_usage(batch: dict[str, Any]) -> int:
    """Add one gateway's usage totals (gateway.usage.UsageRecorder.drain()) to the
    database; return how many hourly rows changed."""
    counts = batch.get("counts") or []
    last_used = batch.get("last_used") or []
    denied = batch.get("denied_attempts") or []
    signing_keys = batch.get("signing_keys") or []
    ids = {row[0] for row in counts} | {row[0] for row in last_used} | {row[0] for row in denied}
    ids |= {row[1] for row in signing_keys}
    orgs = dict(AccessKey.objects.filter(pk__in=ids).values_list("pk", "org_id"))
    known = set(orgs)
    changed = 0
    with transaction.atomic():
        for key_id, hour, *values in counts:
            if key_id not in known:
                continue
            _add(
                key_id, datetime.fromtimestamp(hour, UTC), dict(zip(COUNTERS, values, strict=True))
            )
            changed += 1
        for key_id, at, ip, operation, bucket in last_used:
            if key_id in known:
                note_last_use(key_id, datetime.fromtimestamp(at, UTC), ip, operation, bucket)
        for key_id, ip, hour, count in denied:
            hour_at = datetime.fromtimestamp(hour, UTC)
            _add_denied(key_id, orgs.get(key_id), ip or "", hour_at, count)
        for label, key_id, hour, count in signing_keys:
            hour_at = datetime.fromtimestamp(hour, UTC)
            if key_id in known:
                _add_signing_keys(label, key_id, hour_at, count)
            elif key_id == ANY_KEY:
                log.warning(
                    "%s got %d signing keys in the hour from %s that the verify API could not "
                    "count per key",
                    label,
                    count,
                    hour_at.isoformat(),
                )
    return changed


def _add(key_id: str, hour: datetime, values: dict[str, int]) -> None:
    increments = {name: F(name) + value for name, value in values.items()}
    rows = KeyUsage.objects.filter(access_key_id=key_id, hour=hour)
    if rows.update(**increments):
        return
    try:
        with transaction.atomic():
            KeyUsage.objects.create(access_key_id=key_id, hour=hour, **values)
    except IntegrityError:
        # Another flush made the row in the meantime.
        rows.update(**increments)


def _add_denied(key_id: str, org_id: int | None, ip: str, hour: datetime, count: int) -> None:
    rows = DeniedAttempt.objects.filter(access_key_id=key_id, source_ip=ip, hour=hour)
    if rows.update(count=F("count") + count):
        return
    try:
        with transaction.atomic():
            DeniedAttempt.objects.create(
                access_key_id=key_id, org_id=org_id, source_ip=ip, hour=hour, count=count
            )
    except IntegrityError:
        rows.update(count=F("count") + count)


def _add_signing_keys(label: str, key_id: str, hour: datetime, count: int) -> None:
    rows = SigningKeyGrant.objects.filter(token_label=label, access_key_id=key_id, hour=hour)
    if rows.update(count=F("count") + count):
        return
    try:
        with transaction.atomic():
            SigningKeyGrant.objects.create(
                token_label=label, access_key_id=key_id, hour=hour, count=count
            )
    except IntegrityError:
        rows.update(count=F("count") + count)
