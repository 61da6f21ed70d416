from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import shared_task
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import F
from django.utils import timezone

from keys.models import AccessKey, DeniedAttempt, KeyBucketDay, KeySourceDay, KeyUsage
from keys.services import note_last_use

from .guard import ip_address_or_none
from .models import SigningKeyGrant, UsageBatch
from .usage import ANY_KEY, COUNTERS

log = logging.getLogger(__name__)

# How long an applied batch's ID is kept to refuse it a second time.
USAGE_BATCH_RETENTION = timedelta(days=7)
# Retries up to USAGE_RETRY_BACKOFF_MAX seconds apart (jittered): half a day or more of
# database outage before a batch is given up, as a logged task failure.
USAGE_MAX_RETRIES = 300
USAGE_RETRY_BACKOFF_MAX = 300


@shared_task(
    name="gateway.tasks.record_usage",
    # Acknowledged once applied, and given back if the worker dies on it: the batch ID
    # makes a second delivery harmless.
    acks_late=True,
    reject_on_worker_lost=True,
    # The database being down or restarting is worth waiting for; a batch is only lost
    # after USAGE_MAX_RETRIES tries.
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_backoff_max=USAGE_RETRY_BACKOFF_MAX,
    max_retries=USAGE_MAX_RETRIES,
)
def record_usage(batch: dict[str, Any]) -> int:
    """Add one gateway's usage totals (gateway.usage.UsageRecorder.drain()) to the
    database, once per batch ID, in one transaction; return how many hourly rows changed
    (0 for a batch already applied)."""
    counts = batch.get("counts") or []
    last_used = batch.get("last_used") or []
    denied = batch.get("denied_attempts") or []
    refused = batch.get("refused_uses") or []
    buckets = batch.get("buckets") or []
    sources = batch.get("sources") or []
    signing_keys = batch.get("signing_keys") or []
    ids = {row[0] for row in counts} | {row[0] for row in last_used} | {row[0] for row in denied}
    ids |= {row[0] for row in refused} | {row[0] for row in buckets} | {row[0] for row in sources}
    ids |= {row[1] for row in signing_keys}
    changed = 0
    with transaction.atomic():
        if batch.get("id") is not None and not _first_delivery(uuid.UUID(batch["id"])):
            log.info("usage batch %s was applied before; skipping it", batch["id"])
            return 0
        orgs = dict(AccessKey.objects.filter(pk__in=ids).values_list("pk", "org_id"))
        known = set(orgs)
        for key_id, hour, *values in counts:
            if key_id not in known:
                continue
            _add_up(
                KeyUsage,
                {"access_key_id": key_id, "hour": datetime.fromtimestamp(hour, UTC)},
                dict(zip(COUNTERS, values, strict=True)),
            )
            changed += 1
        # Source addresses are checked again, each stored as none when it is not one: a
        # gateway that kept X-Forwarded-For's text as it came sends that, and the batch is
        # counted, not refused whole.
        # A last use from a gateway older than the user agent's counting has five fields.
        for key_id, at, ip, operation, bucket, *agent in last_used:
            if key_id in known:
                note_last_use(
                    key_id,
                    datetime.fromtimestamp(at, UTC),
                    ip_address_or_none(ip),
                    operation,
                    bucket,
                    *agent[:1],
                )
        for key_id, bucket, day, requests, bytes_in, bytes_out in buckets:
            if key_id in known:
                _add_up(
                    KeyBucketDay,
                    {
                        "access_key_id": key_id,
                        "bucket": bucket,
                        "day": datetime.fromtimestamp(day, UTC).date(),
                    },
                    {"requests": requests, "bytes_in": bytes_in, "bytes_out": bytes_out},
                )
        for key_id, ip, day, count in sources:
            if key_id in known:
                _add_up(
                    KeySourceDay,
                    {
                        "access_key_id": key_id,
                        "source_ip": ip_address_or_none(ip) or "",
                        "day": datetime.fromtimestamp(day, UTC).date(),
                    },
                    {"requests": count},
                )
        for key_id, ip, hour, count in denied:
            _add_up(
                DeniedAttempt,
                {
                    "access_key_id": key_id,
                    "source_ip": ip_address_or_none(ip) or "",
                    "hour": datetime.fromtimestamp(hour, UTC),
                    "signed": False,
                },
                {"count": count},
                org_id=orgs.get(key_id),
            )
        for key_id, ip, hour, count in refused:
            if key_id not in known:
                continue
            _add_up(
                DeniedAttempt,
                {
                    "access_key_id": key_id,
                    "source_ip": ip_address_or_none(ip) or "",
                    "hour": datetime.fromtimestamp(hour, UTC),
                    "signed": True,
                },
                {"count": count},
                org_id=orgs[key_id],
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


def _first_delivery(batch_id: uuid.UUID) -> bool:
    """Record the batch as applied; False if it was already. Another transaction applying
    the same batch at once makes this wait for it, then answer False."""
    now = timezone.now()
    UsageBatch.objects.filter(applied_at__lt=now - USAGE_BATCH_RETENTION).delete()
    try:
        with transaction.atomic():
            UsageBatch.objects.create(id=batch_id, applied_at=now)
    except IntegrityError:
        return False
    return True


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
