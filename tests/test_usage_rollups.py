"""Hourly usage older than two days rolls into daily rows: exactly once, whether the task
runs twice or twice at once, and the pages' readers (keys.usage) see the same days before
and after."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from excloud_portal.celery import app
from keys import rollups, usage
from keys.models import DeniedAttempt, KeyBucketDay, KeySourceDay, KeyUsage, KeyUsageDay
from keys.tasks import roll_up_usage
from tests.concurrency import at_once
from tests.conftest import new_key

NOW = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
# Six days of traffic, every third hour, ending in the current hour.
HOURS = [NOW.replace(minute=0) - timedelta(hours=3 * step) for step in range(48)]


def _fill(key, scale: int = 1) -> None:
    KeyUsage.objects.bulk_create(
        KeyUsage(
            access_key=key,
            hour=hour,
            requests=scale * (index + 1),
            bytes_in=scale * 1000 * index,
            bytes_out=scale * 7 * index,
            errors=index % 2,
            denied=index % 3,
        )
        for index, hour in enumerate(HOURS)
    )


def _expected_days(key_id: str) -> dict:
    days: dict = {}
    for row in KeyUsage.objects.filter(access_key_id=key_id):
        totals = days.setdefault(row.hour.date(), [0] * 5)
        for index, name in enumerate(rollups.COUNTERS):
            totals[index] += getattr(row, name)
    return days


def _days(key_id: str) -> dict:
    found: dict = {}
    for day in usage.key_days(key_id, 10, NOW).days:
        values = [getattr(day, name) for name in rollups.COUNTERS]
        if any(values):
            found[day.day] = values
    return found


@pytest.mark.django_db
def test_it_rolls_hours_older_than_two_days_into_days(owner):
    key, _ = new_key(owner)
    _fill(key)
    before = _expected_days(key.pk)
    cutoff = datetime(2026, 11, 18, tzinfo=UTC)

    rolled = rollups.roll_up(NOW, batch_size=5)

    assert rolled == sum(1 for hour in HOURS if hour < cutoff)
    assert not KeyUsage.objects.filter(hour__lt=cutoff).exists()
    assert KeyUsage.objects.filter(hour__gte=cutoff).count() == len(HOURS) - rolled
    daily = {
        row.day: [getattr(row, name) for name in rollups.COUNTERS]
        for row in KeyUsageDay.objects.filter(access_key=key)
    }
    assert daily == {day: values for day, values in before.items() if day < cutoff.date()}
    assert _days(key.pk) == before


@pytest.mark.django_db
def test_a_second_run_changes_nothing_and_a_late_hour_joins_its_day(owner):
    key, _ = new_key(owner)
    _fill(key)
    rollups.roll_up(NOW)
    rolled_days = list(KeyUsageDay.objects.order_by("day").values_list("day", "requests"))

    assert rollups.roll_up(NOW) == 0
    assert list(KeyUsageDay.objects.order_by("day").values_list("day", "requests")) == rolled_days

    # A gateway's total for a rolled-up hour arrives late: it is read at once, and the
    # next run adds it to its day.
    late_hour = HOURS[-1]
    KeyUsage.objects.create(access_key=key, hour=late_hour, requests=5)
    before = _days(key.pk)
    assert rollups.roll_up(NOW) == 1
    day = KeyUsageDay.objects.get(access_key=key, day=late_hour.date())
    assert day.requests == dict(rolled_days)[late_hour.date()] + 5
    assert _days(key.pk) == before


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_count_every_hour_once(owner):
    keys = [new_key(owner, f"key-{n}")[0] for n in range(4)]
    for scale, key in enumerate(keys, start=1):
        _fill(key, scale)
    expected = {key.pk: _expected_days(key.pk) for key in keys}
    counts = at_once(lambda: rollups.roll_up(NOW, batch_size=3))

    assert sum(counts) == sum(1 for hour in HOURS if hour < rollups.cutoff(NOW)) * len(keys)
    for key in keys:
        assert _days(key.pk) == expected[key.pk]


@pytest.mark.django_db
def test_the_readers_cost_the_same_queries_for_one_key_or_many(owner, django_assert_num_queries):
    keys = [new_key(owner, f"key-{n}")[0] for n in range(6)]
    for key in keys:
        _fill(key)
    rollups.roll_up(NOW)

    with django_assert_num_queries(2):
        one = usage.daily_totals([keys[0].pk], 30, NOW)
    with django_assert_num_queries(2):
        many = usage.daily_totals([key.pk for key in keys], 30, NOW)
    with django_assert_num_queries(2):
        org = usage.daily_totals(owner.org.access_keys.all(), 30, NOW)

    assert one[keys[0].pk].total() == many[keys[0].pk].total() == org[keys[0].pk].total()
    assert org[keys[0].pk].total() == sum(range(1, len(HOURS) + 1))
    assert len(many[keys[5].pk].days) == 30
    assert many["EXCNOSUCHKEY"].total() == 0


@pytest.mark.django_db
def test_beat_runs_the_rollup_as_a_registered_task(owner):
    [entry] = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if "roll_up" in e["task"]]
    assert entry["task"] in app.tasks
    key, _ = new_key(owner)
    KeyUsage.objects.create(access_key=key, hour=datetime(2020, 1, 1, tzinfo=UTC), requests=3)

    assert roll_up_usage.apply().get() == 1
    assert KeyUsageDay.objects.get(access_key=key).requests == 3


@pytest.mark.django_db
def test_it_forgets_bucket_source_and_denied_days_past_their_retention(owner):
    key, _ = new_key(owner)
    today = NOW.date()
    for back in (0, rollups.DETAIL_DAYS - 1, rollups.DETAIL_DAYS, rollups.DETAIL_DAYS + 30):
        day = today - timedelta(days=back)
        KeyBucketDay.objects.create(access_key=key, bucket="b", day=day, requests=1)
        KeySourceDay.objects.create(access_key=key, source_ip="192.0.2.1", day=day, requests=1)
        DeniedAttempt.objects.create(
            access_key_id=key.pk, hour=datetime.combine(day, datetime.min.time(), tzinfo=UTC)
        )

    rollups.roll_up(NOW)

    kept = [today, today - timedelta(days=rollups.DETAIL_DAYS - 1)]
    assert sorted(KeyBucketDay.objects.values_list("day", flat=True), reverse=True) == kept
    assert sorted(KeySourceDay.objects.values_list("day", flat=True), reverse=True) == kept
    kept_hours = sorted(DeniedAttempt.objects.values_list("hour", flat=True), reverse=True)
    assert [hour.date() for hour in kept_hours] == kept
