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
            _add_up(
                KeyUsage,
                {"access_key_id": key_id, "hour": datetime.fromtimestamp(hour, UTC)},
                dict(zip(COUNTERS, values, strict=True)),
            )
            changed += 1
        for key_id, at, ip, operation, bucket in last_used:
            if key_id in known:
                note_last_use(key_id, datetime.fromtimestamp(at, UTC), ip, operation, bucket)
        for key_id, ip, hour, count in denied:
            _add_up(
                DeniedAttempt,
                {
                    "access_key_id": key_id,
                    "source_ip": ip or "",
                    "hour": datetime.fromtimestamp(hour, UTC),
                },
                {"count": count},
                org_id=orgs.get(key_id),
            )
        for label, key_id, hour, count in signing_keys:
            hour_at = datetime.fromtimestamp(hour, UTC)
            if key_id in known:
                _add_up(
                    SigningKeyGrant,
                    {"token_label": label, "access_key_id": key_id, "hour": hour_at},
                    {"count": count},
                )
            elif key_id == ANY_KEY:
                log.warning(
                    "%s got %d signing keys in the hour from %s that the verify API could not "
                    "count per key",
                    label,
                    count,
                    hour_at.isoformat(),
                )
    return changed


def _add_up(model, key: dict[str, Any], values: dict[str, int], **create: Any) -> None:
    """Add ``values`` to the counters of the ``model`` row that ``key`` names, creating the
    row (with ``create``) when there is none yet."""
    increments = {name: F(name) + value for name, value in values.items()}
    rows = model.objects.filter(**key)
    if rows.update(**increments):
        return
    try:
        with transaction.atomic():
            model.objects.create(**key, **create, **values)
    except IntegrityError:
        # Another flush made the row in the meantime.
        rows.update(**increments)
