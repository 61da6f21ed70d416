"""Celery beat with the broker down: a run it cannot send is logged as missed, and the
scheduled tasks' next runs do the missed ones' work (tests/test_expiry.py and
tests/test_audit_trail.py show each sweep catching up)."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Celery
from celery.beat import ScheduleEntry
from django.conf import settings

from excloud_portal.celery import CatchUpScheduler
from tests.gateway_stack import free_port

QUICK_GIVE_UP = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.1}


def test_it_logs_a_scheduled_run_it_could_not_send(tmp_path, caplog):
    app = Celery("beat-test", broker=f"redis://127.0.0.1:{free_port()}/0")  # nobody there
    entry = ScheduleEntry(
        name="key-expiry",
        task="keys.tasks.expire_due_keys",
        schedule=timedelta(minutes=5),
        options={"retry": True, "retry_policy": QUICK_GIVE_UP},
        app=app,
    )
    scheduler = CatchUpScheduler(app=app, schedule_filename=str(tmp_path / "schedule"), lazy=True)

    with caplog.at_level(logging.INFO, logger="excloud_portal.celery"):
        scheduler.apply_entry(entry)

    [missed] = [r for r in caplog.records if r.name == "excloud_portal.celery"]
    assert missed.levelno == logging.ERROR
    assert missed.getMessage().startswith(
        "missed the scheduled run of key-expiry (keys.tasks.expire_due_keys"
    )


def test_it_keeps_trying_to_send_each_scheduled_run_for_a_while():
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["options"]["retry"] is True
        policy = entry["options"]["retry_policy"]
        assert policy["max_retries"] * policy["interval_max"] >= 60
