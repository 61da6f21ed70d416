"""Hourly usage rows older than two days, added into daily rows (KeyUsageDay).

Each batch of hourly rows is added to the daily rows and deleted in one transaction, so
a row counts in exactly one place at any moment. Batches are taken with SKIP LOCKED: two
runs at once take different rows, and a row a late usage batch is writing to at that
moment (gateway.tasks.record_usage) is left for the next run. A second run finds nothing
left to do. SQLite (the embedded default) has one writer at a time, which gives the same.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from .models import DeniedAttempt, KeyBucketDay, KeySourceDay, KeyUsage, KeyUsageDay

# Hourly rows are kept for the days before today back to this many; older ones roll up.
HOURLY_DAYS = 2
# Hourly rows per transaction: bounded work and locks, and within SQLite's limit on the
# parameters of one statement.
ROLLUP_BATCH = 1000
COUNTERS = ("requests", "bytes_in", "bytes_out", "errors", "denied")
# Per-bucket and per-source daily rows and hourly denied attempts are read for the last
# 30 days only (keys.usage); older ones are deleted by the rollup, so they stay bounded.
DETAIL_DAYS = 90


def cutoff(now: datetime | None = None) -> datetime:
    """The hour before which hourly rows roll up: midnight UTC, HOURLY_DAYS days ago."""
    now = now or timezone.now()
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=HOURLY_DAYS)


def forget_old_details(now: datetime | None = None) -> int:
    """Delete per-bucket and per-source daily rows and denied attempts older than
    DETAIL_DAYS; how many."""
    # The last DETAIL_DAYS UTC days, today included, are kept.
    today = (now or timezone.now()).astimezone(UTC).date()
    oldest = today - timedelta(days=DETAIL_DAYS - 1)
    deleted = 0
    for model in (KeyBucketDay, KeySourceDay):
        deleted += model.objects.filter(day__lt=oldest).delete()[0]
    since = datetime.combine(oldest, datetime.min.time(), tzinfo=UTC)
    deleted += DeniedAttempt.objects.filter(hour__lt=since).delete()[0]
    return deleted


def roll_up(now: datetime | None = None, batch_size: int = ROLLUP_BATCH) -> int:
    """Roll every hourly row older than cutoff() into its day; return how many rows.
    Also forgets the per-bucket and per-source days and denied attempts past DETAIL_DAYS."""
    forget_old_details(now)
    before = cutoff(now)
    rolled = 0
    while True:
        with transaction.atomic():
            rows = list(
                KeyUsage.objects.filter(hour__lt=before)
                .order_by("pk")
                .select_for_update(skip_locked=True)
                .values_list("pk", "access_key_id", "hour", *COUNTERS)[:batch_size]
            )
            if not rows:
                return rolled
            days: dict[tuple[str, date], list[int]] = defaultdict(lambda: [0] * len(COUNTERS))
            for _pk, key_id, hour, *values in rows:
                totals = days[(key_id, hour.astimezone(UTC).date())]
                for index, value in enumerate(values):
                    totals[index] += value
            _add_to_days(days)
            KeyUsage.objects.filter(pk__in=[row[0] for row in rows]).delete()
        rolled += len(rows)


def _add_to_days(days: dict[tuple[str, date], list[int]]) -> None:
    """Add the totals to their daily rows, creating the missing ones, in one statement.

    Rows go in key and day order, so two runs adding to the same days lock them in the
    same order and cannot deadlock.
    """
    quote = connection.ops.quote_name
    table = quote(KeyUsageDay._meta.db_table)
    columns = ("access_key_id", "day", *COUNTERS)
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    params: list[object] = []
    for (key_id, day), totals in sorted(days.items()):
        params.extend((key_id, day, *totals))
    updates = ", ".join(f"{quote(c)} = {table}.{quote(c)} + excluded.{quote(c)}" for c in COUNTERS)
    sql = (
        f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) "
        f"VALUES {', '.join([placeholders] * len(days))} "
        f"ON CONFLICT ({quote('access_key_id')}, {quote('day')}) DO UPDATE SET {updates}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
