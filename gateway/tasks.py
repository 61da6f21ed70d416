from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from celery import shared_task
from django.db import IntegrityError, transaction
from django.db.models import F

from keys.models import AccessKey
from keys.services import note_last_use

from .models import KeyUsage
from .usage import COUNTERS


@shared_task(name="gateway.tasks.record_usage")
def record_usage(batch: dict[str, Any]) -> int:
    """Add one gateway's usage totals (gateway.usage.UsageRecorder.drain()) to the
    database; return how many hourly rows changed."""
    counts = batch.get("counts") or []
    last_used = batch.get("last_used") or []
    ids = {row[0] for row in counts} | {row[0] for row in last_used}
    known = set(AccessKey.objects.filter(pk__in=ids).values_list("pk", flat=True))
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
