"""What the pages read about usage: per-day totals of access keys, from the daily rows
(KeyUsageDay) and the hourly rows not rolled up yet (KeyUsage) together.

Every reader here costs the same few queries whatever the number of keys or days asked
for, and reads days through both tables, so a day counts the same before, during and
after its rollup (keys.rollups).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import BooleanField, Case, Max, Min, Q, QuerySet, Sum, Value, When
from django.db.models.functions import TruncDate
from django.utils import timezone

from .models import (
    AccessKey,
    DeniedAttempt,
    KeyBucketDay,
    KeySourceDay,
    KeyStatus,
    KeyUsage,
    KeyUsageDay,
)

COUNTERS = ("requests", "bytes_in", "bytes_out", "errors", "denied")
# The period the pages show.
PERIOD_DAYS = 30
RECENT_DAYS = 7


@dataclass(slots=True)
class DayUsage:
    day: date
    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    errors: int = 0
    denied: int = 0

    def add(self, values: Iterable[int]) -> None:
        for name, value in zip(COUNTERS, values, strict=True):
            setattr(self, name, getattr(self, name) + (value or 0))


@dataclass(slots=True)
class KeyPeriod:
    """One key's days over a period, oldest first, every day present (zero when idle)."""

    days: list[DayUsage] = field(default_factory=list)

    def total(self, counter: str = "requests", last: int | None = None) -> int:
        days = self.days if last is None else self.days[-last:]
        return sum(getattr(day, counter) for day in days)

    @property
    def requests(self) -> list[int]:
        return [day.requests for day in self.days]


class PeriodTotals(dict[str, KeyPeriod]):
    """Key ID → KeyPeriod; a key with no traffic in the period reads as all zeros."""

    def __init__(self, dates: list[date]) -> None:
        super().__init__()
        self.dates = dates

    def zeros(self) -> KeyPeriod:
        return KeyPeriod([DayUsage(day) for day in self.dates])

    def __missing__(self, key_id: str) -> KeyPeriod:
        return self.zeros()


def period(days: int = PERIOD_DAYS, now: datetime | None = None) -> list[date]:
    """The last ``days`` UTC days, today included, oldest first."""
    today = (now or timezone.now()).astimezone(UTC).date()
    return [today - timedelta(days=back) for back in range(days - 1, -1, -1)]


def _since(days: int, now: datetime | None) -> tuple[date, datetime]:
    first = period(days, now)[0]
    return first, datetime.combine(first, time.min, tzinfo=UTC)


def daily_totals(
    keys: QuerySet[AccessKey] | Iterable[str], days: int = PERIOD_DAYS, now: datetime | None = None
) -> PeriodTotals:
    """Each key's totals per day over the last ``days`` days, in two queries: ``keys`` is
    a queryset of keys (read as a subquery) or their IDs."""
    dates = period(days, now)
    first, since = _since(days, now)
    if isinstance(keys, QuerySet):
        selector = {"access_key__in": keys.values("pk")}
    else:
        selector = {"access_key__in": list(keys)}
    rolled = KeyUsageDay.objects.filter(**selector, day__gte=first).values_list(
        "access_key_id", "day", *COUNTERS
    )
    hourly = (
        KeyUsage.objects.filter(**selector, hour__gte=since)
        .annotate(day=TruncDate("hour", tzinfo=UTC))
        .values("access_key_id", "day")
        .annotate(**{name: Sum(name) for name in COUNTERS})
        .values_list("access_key_id", "day", *COUNTERS)
        .order_by()
    )
    index = {day: position for position, day in enumerate(dates)}
    result = PeriodTotals(dates)
    for key_id, day, *values in [*rolled, *hourly]:
        position = index.get(day)
        if position is None:
            continue
        entry = result.get(key_id) or result.setdefault(key_id, result.zeros())
        entry.days[position].add(values)
    return result


def key_days(key_id: str, days: int = PERIOD_DAYS, now: datetime | None = None) -> KeyPeriod:
    """One key's totals per day over the last ``days`` days (two queries)."""
    return daily_totals([key_id], days, now)[key_id]


def request_totals(
    keys: QuerySet[AccessKey], now: datetime | None = None
) -> dict[str, tuple[int, int]]:
    """Key ID → (requests in the last RECENT_DAYS days, in the last PERIOD_DAYS days) for
    the keys of ``keys`` that made any, in two grouped queries whatever their number."""
    first_recent, since_recent = _since(RECENT_DAYS, now)
    first_period, since_period = _since(PERIOD_DAYS, now)
    selector = {"access_key__in": keys.values("pk")}
    rolled = (
        KeyUsageDay.objects.filter(**selector, day__gte=first_period)
        .values("access_key_id")
        .annotate(
            recent=Sum("requests", filter=Q(day__gte=first_recent), default=0),
            whole=Sum("requests"),
        )
        .values_list("access_key_id", "recent", "whole")
        .order_by()
    )
    hourly = (
        KeyUsage.objects.filter(**selector, hour__gte=since_period)
        .values("access_key_id")
        .annotate(
            recent=Sum("requests", filter=Q(hour__gte=since_recent), default=0),
            whole=Sum("requests"),
        )
        .values_list("access_key_id", "recent", "whole")
        .order_by()
    )
    totals: dict[str, tuple[int, int]] = {}
    for key_id, recent, whole in [*rolled, *hourly]:
        before = totals.get(key_id, (0, 0))
        totals[key_id] = (before[0] + recent, before[1] + whole)
    return totals


# How many sources and buckets a key's page lists.
TOP_SIZE = 5


@dataclass(slots=True)
class BucketUse:
    bucket: str
    requests: int
    bytes_in: int
    bytes_out: int
    access_key_id: str = ""


def top_sources(
    key_id: str, days: int = PERIOD_DAYS, now: datetime | None = None, limit: int = TOP_SIZE
) -> list[tuple[str, int]]:
    """The source IPs the key was used from most over the last ``days`` days, with their
    requests (one query)."""
    rows = (
        KeySourceDay.objects.filter(access_key_id=key_id, day__gte=period(days, now)[0])
        .values("source_ip")
        .annotate(total=Sum("requests"))
        .order_by("-total", "source_ip")[:limit]
    )
    return [(row["source_ip"], row["total"]) for row in rows]


def top_buckets(
    key_id: str, days: int = PERIOD_DAYS, now: datetime | None = None, limit: int = TOP_SIZE
) -> list[BucketUse]:
    """The buckets the key used most over the last ``days`` days (one query)."""
    rows = (
        KeyBucketDay.objects.filter(access_key_id=key_id, day__gte=period(days, now)[0])
        .values("bucket")
        .annotate(total=Sum("requests"), total_in=Sum("bytes_in"), total_out=Sum("bytes_out"))
        .order_by("-total", "bucket")[:limit]
    )
    return [
        BucketUse(row["bucket"], row["total"], row["total_in"], row["total_out"]) for row in rows
    ]


def bucket_users(
    org, buckets: Iterable[str], days: int = PERIOD_DAYS, now: datetime | None = None
) -> dict[str, list[BucketUse]]:
    """For each bucket, the org's keys that used it over the last ``days`` days, most
    first (one query). Only the org's keys: a name another org held before counts
    nothing of theirs here."""
    rows = (
        KeyBucketDay.objects.filter(
            access_key__org=org, bucket__in=list(buckets), day__gte=period(days, now)[0]
        )
        .values("bucket", "access_key_id")
        .annotate(total=Sum("requests"), total_in=Sum("bytes_in"), total_out=Sum("bytes_out"))
        .order_by("bucket", "-total", "access_key_id")
    )
    found: dict[str, list[BucketUse]] = {}
    for row in rows:
        found.setdefault(row["bucket"], []).append(
            BucketUse(
                row["bucket"], row["total"], row["total_in"], row["total_out"], row["access_key_id"]
            )
        )
    return found


# How the detail page says when a key stopped being usable, by its status.
STOPPED = {
    KeyStatus.REVOKED: "revoked",
    KeyStatus.INACTIVE: "deactivated",
    KeyStatus.EXPIRED: "expired",
}


@dataclass(slots=True)
class DeniedSource:
    """Refused requests naming one key from one source IP over a period.

    ``since_stopped``: the requests came after the key was revoked, deactivated or
    expired (from the hour it happened); otherwise they came while it was active, so
    only a bad signature refused them. ``signed``: how many carried the key's correct
    signature, so their sender holds the secret.
    """

    source_ip: str
    since_stopped: bool
    count: int
    signed: int
    first: datetime
    last: datetime


def stopped_hour(key: AccessKey) -> datetime | None:
    """The hour from which refused requests count as uses of a stopped key."""
    if key.status == KeyStatus.ACTIVE:
        return None
    at = key.status_changed_at or key.expires_at or key.created_at
    return at.replace(minute=0, second=0, microsecond=0)


def denied_sources(
    key: AccessKey, days: int = PERIOD_DAYS, now: datetime | None = None
) -> list[DeniedSource]:
    """The key's refused requests over the last ``days`` days per source IP, most first
    (one query)."""
    _first, since = _since(days, now)
    stopped = stopped_hour(key)
    after = (
        Case(
            When(hour__gte=stopped, then=Value(True)),
            default=Value(False),
            output_field=BooleanField(),
        )
        if stopped is not None
        else Value(False, output_field=BooleanField())
    )
    rows = (
        DeniedAttempt.objects.filter(access_key_id=key.pk, hour__gte=since)
        .annotate(since_stopped=after)
        .values("source_ip", "since_stopped")
        .annotate(
            total=Sum("count"),
            signed_total=Sum("count", filter=Q(signed=True), default=0),
            first=Min("hour"),
            last=Max("hour"),
        )
        .order_by("-since_stopped", "-total", "source_ip")
    )
    return [
        DeniedSource(
            source_ip=row["source_ip"],
            since_stopped=row["since_stopped"],
            count=row["total"],
            signed=row["signed_total"],
            first=row["first"],
            last=row["last"],
        )
        for row in rows
    ]


def denied_counts(
    key_ids: Iterable[str], days: int = RECENT_DAYS, now: datetime | None = None
) -> dict[str, int]:
    """Refused requests naming each key over the last ``days`` days (one query); keys
    with none are left out."""
    _first, since = _since(days, now)
    rows = (
        DeniedAttempt.objects.filter(access_key_id__in=list(key_ids), hour__gte=since)
        .values("access_key_id")
        .annotate(total=Sum("count"))
        .order_by()
    )
    return {row["access_key_id"]: row["total"] for row in rows}
