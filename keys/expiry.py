"""Expiring keys that are past a limit, and warning before they are.

A key is due when it is past its own expiry date, unused for longer than its org's
inactivity limit (a never-used key counts from its creation), or older than the org's
maximum key age. Orgs without a saved policy use the defaults in keys/models.py; zero
days means the limit is off.

The sweep works in batches, each one transaction: lock a batch of due live keys with
``FOR UPDATE SKIP LOCKED`` (so a second sweep running at once takes other keys), set them
expired with a conditional update, write one audit event per key and bump the gateways'
revocation version once. A sweep killed halfway leaves whole batches done or not done;
the next run picks up the rest, and the status condition makes a repeat a no-op.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import (
    DateTimeField,
    DurationField,
    ExpressionWrapper,
    F,
    Func,
    Q,
    QuerySet,
    Value,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Organization
from audit.models import AuditAction, TargetType
from audit.trail import Actor, record

from . import revocation
from .models import (
    DEFAULT_INACTIVITY_DAYS,
    DEFAULT_MAX_AGE_DAYS,
    DEFAULT_WARNING_DAYS,
    LIVE_STATUSES,
    AccessKey,
    ExpiryReason,
    KeyPolicy,
    KeyStatus,
    KeyWarning,
)

SWEEP_BATCH = 500
EXPIRY_ACTOR = "key expiry"
ONE_DAY = timedelta(days=1)
UPCOMING_REASONS = {
    ExpiryReason.STALE: "if it stays unused until then (the inactivity limit)",
    ExpiryReason.PAST_EXPIRY: "its expiry date",
    ExpiryReason.TOO_OLD: "the organisation's maximum key age",
}

# Written into status_reason, which the dashboard shows.
REASON_TEXT = {
    ExpiryReason.STALE: "stale: unused for longer than the inactivity limit",
    ExpiryReason.PAST_EXPIRY: "past its expiry date",
    ExpiryReason.TOO_OLD: "too old: older than the maximum key age",
}


def _days(field: str, default: int):
    return Coalesce(F(f"org__key_policy__{field}"), Value(default))


class DaysDuration(Func):
    """A whole number of days as a duration. Django multiplies no duration by a column on
    SQLite (the embedded default), so each backend gets its own SQL."""

    output_field = DurationField()

    def as_postgresql(self, compiler, connection, **extra_context):
        template = "make_interval(days => %(expressions)s)"
        return self.as_sql(compiler, connection, template=template, **extra_context)

    def as_sqlite(self, compiler, connection, **extra_context):
        # SQLite stores durations as microseconds.
        template = "(%(expressions)s * 86400000000)"
        return self.as_sql(compiler, connection, template=template, **extra_context)


def _after_days(start, field: str, default: int):
    """``start`` plus the org's policy value in days, as a timestamp expression."""
    return ExpressionWrapper(
        start + DaysDuration(_days(field, default)), output_field=DateTimeField()
    )


def with_limits(qs: QuerySet[AccessKey]) -> QuerySet[AccessKey]:
    """Annotate each key with its org's limits and the moment each limit falls due."""
    return qs.alias(
        inactivity_days=_days("inactivity_days", DEFAULT_INACTIVITY_DAYS),
        max_age_days=_days("max_age_days", DEFAULT_MAX_AGE_DAYS),
        stale_at=_after_days(
            Coalesce("last_used_at", "created_at"), "inactivity_days", DEFAULT_INACTIVITY_DAYS
        ),
        too_old_at=_after_days(F("created_at"), "max_age_days", DEFAULT_MAX_AGE_DAYS),
    )


def _due_by(moment) -> Q:
    return (
        Q(expires_at__lte=moment)
        | Q(inactivity_days__gt=0, stale_at__lte=moment)
        | Q(max_age_days__gt=0, too_old_at__lte=moment)
    )


def due_keys(now: datetime) -> QuerySet[AccessKey]:
    """Live keys past a limit at ``now``."""
    return with_limits(AccessKey.objects.live()).filter(_due_by(now))


@dataclass(frozen=True)
class Due:
    reason: str
    at: datetime

    @property
    def label(self) -> str:
        return ExpiryReason(self.reason).label

    @property
    def why(self) -> str:
        """Why the key will expire then, as the key's page says it."""
        return UPCOMING_REASONS[self.reason]


def next_due(key: AccessKey, policy: KeyPolicy | None) -> Due | None:
    """The first limit this key reaches, and when; None when no limit applies."""
    inactivity = policy.inactivity_days if policy else DEFAULT_INACTIVITY_DAYS
    max_age = policy.max_age_days if policy else DEFAULT_MAX_AGE_DAYS
    candidates = []
    if key.expires_at is not None:
        candidates.append(Due(ExpiryReason.PAST_EXPIRY, key.expires_at))
    if inactivity:
        start = key.last_used_at or key.created_at
        candidates.append(Due(ExpiryReason.STALE, start + inactivity * ONE_DAY))
    if max_age:
        candidates.append(Due(ExpiryReason.TOO_OLD, key.created_at + max_age * ONE_DAY))
    return min(candidates, key=lambda d: d.at, default=None)


def _policies(org_ids) -> dict[int, KeyPolicy]:
    return {p.org_id: p for p in KeyPolicy.objects.filter(org_id__in=set(org_ids))}


def expire_batch(now: datetime, batch_size: int = SWEEP_BATCH) -> int | None:
    """Expire one batch of due keys; return how many, or None when none are left."""
    actor = Actor.system(EXPIRY_ACTOR)
    with transaction.atomic():
        batch = list(
            due_keys(now)
            .select_for_update(skip_locked=True, of=("self",))
            .only("id", "org_id", "name", "status", "expires_at", "last_used_at", "created_at")
            .order_by("pk")[:batch_size]
        )
        if not batch:
            return None
        policies = _policies(k.org_id for k in batch)
        by_reason: dict[str, list[AccessKey]] = {}
        for key in batch:
            due = next_due(key, policies.get(key.org_id))
            # The query said the key is due; the earliest limit is the reason.
            reason = due.reason if due is not None else ExpiryReason.PAST_EXPIRY
            by_reason.setdefault(reason, []).append(key)
        expired: list[tuple[AccessKey, str]] = []
        for reason, keys in by_reason.items():
            ids = [k.pk for k in keys]
            changed = AccessKey.objects.filter(pk__in=ids, status__in=LIVE_STATUSES).update(
                status=KeyStatus.EXPIRED,
                status_changed_at=now,
                status_changed_by=None,
                status_reason=REASON_TEXT[reason],
            )
            if changed != len(ids):
                # Only without row locks (SQLite) can another writer get in between; ask
                # the database which keys this update changed.
                done = set(
                    AccessKey.objects.filter(
                        pk__in=ids,
                        status=KeyStatus.EXPIRED,
                        status_changed_at=now,
                        status_reason=REASON_TEXT[reason],
                    ).values_list("pk", flat=True)
                )
                keys = [k for k in keys if k.pk in done]
            expired.extend((k, reason) for k in keys)
        revocation.announce_change(keys=[key.id for key, _ in expired])
        for key, reason in expired:
            record(
                actor,
                AuditAction.ACCESS_KEY_EXPIRED,
                org=_org_ref(key),
                target_type=TargetType.ACCESS_KEY,
                target_id=key.pk,
                details={
                    "name": key.name,
                    "from": key.status,
                    "to": KeyStatus.EXPIRED,
                    "reason": reason,
                },
            )
    return len(expired)


def _org_ref(key: AccessKey):
    # record() takes the org; an unsaved instance with the primary key is enough and
    # costs no query.
    return Organization(pk=key.org_id)


def expire_due_keys(
    now: datetime | None = None, *, batch_size: int = SWEEP_BATCH, max_batches: int | None = None
) -> int:
    """Expire every due key, batch by batch; return how many this call expired."""
    now = now or timezone.now()
    total = batches = 0
    while max_batches is None or batches < max_batches:
        count = expire_batch(now, batch_size)
        if count is None:
            break
        total += count
        batches += 1
    return total


# Warnings.


def keys_due_within_warning(now: datetime) -> QuerySet[AccessKey]:
    """Live keys not yet due that reach a limit within their org's warning lead time."""
    qs = with_limits(AccessKey.objects.live()).alias(
        warn_until=_after_days(Value(now), "warning_days", DEFAULT_WARNING_DAYS)
    )
    # A rotated key's expiry is the overlap its owner chose a moment ago: no warning.
    qs = qs.filter(replacement__isnull=True)
    return qs.filter(_due_by(F("warn_until"))).exclude(_due_by(now))


def record_warnings(send: Callable[[int], None], now: datetime | None = None) -> list[int]:
    """Insert one KeyWarning per key about to expire in this window; return the new IDs.

    ``send`` is called with each new warning's ID inside the transaction that records it
    (keys.tasks passes its mail task's ``delay_on_commit``), so the sweep needs no import
    of the tasks that call it.

    A warning already recorded for the same key, reason and due moment is skipped, so the
    task can run twice (or twice at once) and each window is warned about once.
    """
    now = now or timezone.now()
    actor = Actor.system(EXPIRY_ACTOR)
    keys = list(
        keys_due_within_warning(now).only(
            "id", "org_id", "name", "expires_at", "last_used_at", "created_at"
        )
    )
    policies = _policies(k.org_id for k in keys)
    created: list[int] = []
    for key in keys:
        due = next_due(key, policies.get(key.org_id))
        if due is None or due.at <= now:
            continue
        try:
            with transaction.atomic():
                warning = KeyWarning.objects.create(key=key, reason=due.reason, due_at=due.at)
                record(
                    actor,
                    AuditAction.ACCESS_KEY_EXPIRY_WARNED,
                    org=_org_ref(key),
                    target_type=TargetType.ACCESS_KEY,
                    target_id=key.pk,
                    details={"name": key.name, "reason": due.reason, "due_at": due.at.isoformat()},
                )
                send(warning.pk)
        except IntegrityError:
            continue  # warned already for this window
        created.append(warning.pk)
    return created


# What the dashboard shows.

UNUSED_HINT_DAYS = 30


def add_hints(keys: list[AccessKey], policy: KeyPolicy, now: datetime) -> list[AccessKey]:
    """Give each key what the keys page shows about its expiry: ``due`` (the first limit
    it reaches), ``due_in_days``, ``due_soon`` (within the warning lead time) and
    ``unused_days`` (set once a live key has been idle for UNUSED_HINT_DAYS)."""
    warn_until = now + policy.warning_days * ONE_DAY
    for key in keys:
        key.due = next_due(key, policy) if key.is_live else None
        key.due_in_days = None
        key.due_soon = False
        key.unused_days = None
        if key.due is not None:
            key.due_in_days = max(0, math.ceil((key.due.at - now) / ONE_DAY))
            key.due_soon = key.due.at <= warn_until
        if key.is_live:
            idle = (now - (key.last_used_at or key.created_at)).days
            if idle >= UNUSED_HINT_DAYS:
                key.unused_days = idle
    return keys


def count_due_within_warning(org, now: datetime) -> int:
    """How many of the org's live keys reach a limit within the warning lead time."""
    qs = with_limits(AccessKey.objects.for_org(org).live()).alias(
        warn_until=_after_days(Value(now), "warning_days", DEFAULT_WARNING_DAYS)
    )
    return qs.filter(_due_by(F("warn_until"))).count()
