"""Expiring keys past a limit (stale, past expiry, too old), warning before it happens,
and retiring a rotated key when its overlap ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError
from django.core import mail
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Membership, Organization, Role
from audit.models import AuditEvent
from audit.trail import Actor
from excloud_portal import devenv
from keys import credentials, expiry
from keys.models import (
    AccessKey,
    CacheChange,
    CachedKind,
    CreatedVia,
    ExpiryReason,
    KeyPolicy,
    KeyStatus,
    KeyWarning,
)
from keys.services import deactivate_key, rotate_key
from tests.concurrency import at_once
from tests.conftest import audit_mark, events_since, make_user, new_key
from tests.gateway_stack import REPO, database_url, gateway, worker
from tests.sqlite_sweep import sweep_with_a_revoke_in_between
from tests.test_gateway_e2e import bucket_name, s3_client

WORKER_TIMEOUT = 60


def expired_events(**filters) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="access_key.expired", **filters).order_by("pk"))


def age(key: AccessKey, **fields) -> None:
    AccessKey.objects.filter(pk=key.pk).update(**fields)


def s3_status(gw_url: str, key_id: str, secret: str, bucket: str) -> int:
    try:
        s3_client(gw_url, key_id, secret).list_objects_v2(Bucket=bucket)
    except ClientError as error:
        return error.response["ResponseMetadata"]["HTTPStatusCode"]
    return 200


def bulk_keys(org: Organization, count: int, **fields) -> list[str]:
    """Insert keys directly, each with a properly sealed secret."""
    rows = []
    for n in range(count):
        key_id = credentials.new_access_key_id()
        kek_id, sealed = credentials.seal(credentials.new_secret(), key_id)
        rows.append(
            AccessKey(
                id=key_id,
                org=org,
                name=f"bulk-{n:05d}",
                secret_sealed=sealed,
                secret_kek_id=kek_id,
                created_via=CreatedVia.API,
                **fields,
            )
        )
    AccessKey.objects.bulk_create(rows, batch_size=1000)
    return [r.id for r in rows]


# 1. Each kind of due key, expired by a real Celery worker, refused by the real gateway.


@pytest.mark.django_db(transaction=True)
def test_it_expires_stale_past_expiry_and_too_old_keys_in_a_celery_worker(
    owner, store, tmp_path, settings
):
    from excloud_portal.celery import app
    from keys.tasks import expire_due_keys

    if not settings.REDIS_URL:
        pytest.skip("needs REDIS_URL: the worker takes the task from the Redis broker")
    now = timezone.now()
    KeyPolicy.objects.create(org=owner.org, inactivity_days=90, max_age_days=365)
    stale, stale_secret = new_key(owner, "stale")
    past, past_secret = new_key(owner, "past-expiry")
    old, old_secret = new_key(owner, "too-old")
    fresh, fresh_secret = new_key(owner, "fresh")

    var = tmp_path / "var"
    var.mkdir()
    app.control.purge()
    with (
        gateway(tmp_path, store, redis_url=settings.REDIS_URL) as gw,
        worker(tmp_path, store, redis_url=settings.REDIS_URL, var=var) as log,
    ):
        bucket = bucket_name()
        s3_client(gw.url, fresh.id, fresh_secret).create_bucket(Bucket=bucket)
        # Before their timestamps put them past a limit, each key works (the gateway
        # caches them behind the Redis version).
        for key, secret in ((stale, stale_secret), (old, old_secret), (past, past_secret)):
            assert s3_status(gw.url, key.id, secret, bucket) == 200

        age(stale, created_at=now - timedelta(days=200), last_used_at=now - timedelta(days=91))
        age(past, expires_at=now - timedelta(minutes=1))
        age(old, created_at=now - timedelta(days=366), last_used_at=now - timedelta(hours=1))
        age(fresh, created_at=now - timedelta(days=30), last_used_at=now - timedelta(days=89))

        expire_due_keys.delay()
        deadline = time.monotonic() + WORKER_TIMEOUT
        while AccessKey.objects.filter(status=KeyStatus.EXPIRED).count() < 3:
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)
        # A second run finds nothing more to do.
        expire_due_keys.delay()
        deadline = time.monotonic() + WORKER_TIMEOUT
        while log.read_text(errors="replace").count("keys.tasks.expire_due_keys") < 4:
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.2)

        for key, secret in ((stale, stale_secret), (past, past_secret), (old, old_secret)):
            assert s3_status(gw.url, key.id, secret, bucket) == 403, key.name
        assert s3_status(gw.url, fresh.id, fresh_secret, bucket) == 200

    text = log.read_text(errors="replace")
    assert "expire_due_keys" in text and "succeeded" in text
    reasons = {}
    for key in (stale, past, old):
        key.refresh_from_db()
        assert key.status == KeyStatus.EXPIRED
        assert key.status_changed_by is None and key.status_changed_at is not None
        [event] = expired_events(target_id=key.id)
        assert (event.actor_type, event.actor_label) == ("system", "key expiry")
        assert event.org_id == owner.org_id
        reasons[key.name] = (event.details["reason"], key.status_reason.split(":")[0])
    assert reasons == {
        "stale": ("stale", "stale"),
        "past-expiry": ("past_expiry", "past its expiry date"),
        "too-old": ("too_old", "too old"),
    }
    fresh.refresh_from_db()
    assert fresh.status == KeyStatus.ACTIVE
    assert len(expired_events()) == 3


def test_it_expires_each_kind_of_due_key_with_its_reason_and_one_event(owner, other_org):
    # The worker test's keys, swept in this process: what each expired key stores and the
    # event the sweep writes for it, field by field.
    now = timezone.now()
    KeyPolicy.objects.create(org=owner.org, inactivity_days=90, max_age_days=365)
    stale, _ = new_key(owner, "stale")
    past, _ = new_key(owner, "past-expiry")
    old, _ = new_key(owner, "too-old")
    fresh, _ = new_key(owner, "fresh")
    off, _ = new_key(owner, "switched-off")
    age(stale, created_at=now - timedelta(days=200), last_used_at=now - timedelta(days=91))
    age(past, expires_at=now - timedelta(minutes=1))
    age(old, created_at=now - timedelta(days=366), last_used_at=now - timedelta(hours=1))
    age(fresh, created_at=now - timedelta(days=30), last_used_at=now - timedelta(days=89))
    # Another org without a policy: the defaults (90 days unused, no maximum age).
    globex = Membership.objects.create(
        org=other_org, user=make_user("owner@globex.test"), role=Role.OWNER
    )
    default_stale, _ = new_key(globex, "unused")
    ancient, _ = new_key(globex, "ancient")
    age(default_stale, created_at=now - timedelta(days=91))
    age(ancient, created_at=now - timedelta(days=5000), last_used_at=now)
    # Deactivated by its owner: the sweep, not the owner, is the one who expires it.
    deactivate_key(owner, Actor.for_user(owner.user), off)
    age(off, expires_at=now - timedelta(days=1))
    mark = audit_mark()

    assert expiry.expire_due_keys(now) == 5
    assert expiry.expire_due_keys(now) == 0

    reasons = {
        stale: ExpiryReason.STALE,
        past: ExpiryReason.PAST_EXPIRY,
        old: ExpiryReason.TOO_OLD,
        default_stale: ExpiryReason.STALE,
        off: ExpiryReason.PAST_EXPIRY,
    }
    events = {e.target_id: e for e in AuditEvent.objects.filter(pk__gt=mark)}
    assert set(events) == {key.pk for key in reasons}
    for key, reason in reasons.items():
        was = key.status
        key.refresh_from_db()
        assert (key.status, key.status_changed_at, key.status_changed_by_id) == (
            KeyStatus.EXPIRED,
            now,
            None,
        )
        assert key.status_reason == expiry.REASON_TEXT[reason]
        event = events[key.pk]
        assert (event.action, event.org_id, event.target_type) == (
            "access_key.expired",
            key.org_id,
            "access_key",
        )
        assert (event.actor_type, event.actor_label, event.actor_user_id) == (
            "system",
            "key expiry",
            None,
        )
        assert event.details == {
            "name": key.name,
            "from": KeyStatus.INACTIVE if key == off else was,
            "to": KeyStatus.EXPIRED,
            "reason": reason,
        }
    for key in (fresh, ancient):
        key.refresh_from_db()
        assert key.status == KeyStatus.ACTIVE
    # Each expired key is announced to the gateways.
    announced = set(CacheChange.objects.filter(kind=CachedKind.KEY).values_list("name", flat=True))
    assert {key.pk for key in reasons} <= announced


def test_it_schedules_the_sweep_and_the_warnings(settings):
    from excloud_portal.celery import app

    schedule = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert schedule["keys.tasks.expire_due_keys"] == settings.KEY_EXPIRY_INTERVAL
    assert schedule["keys.tasks.warn_expiring_keys"] == settings.KEY_WARNING_INTERVAL
    app.loader.import_default_modules()
    assert {"keys.tasks.expire_due_keys", "keys.tasks.warn_expiring_keys"} <= set(app.tasks)


def test_it_uses_the_defaults_without_a_policy_and_honours_off(owner):
    now = timezone.now()
    unused, _ = new_key(owner, "unused")
    ancient, _ = new_key(owner, "ancient")
    age(unused, created_at=now - timedelta(days=91))
    age(ancient, created_at=now - timedelta(days=5000), last_used_at=now)
    # Default policy: 90 days of inactivity, no maximum age.
    assert list(expiry.due_keys(now).values_list("name", flat=True)) == ["unused"]
    KeyPolicy.objects.create(org=owner.org, inactivity_days=0, max_age_days=0)
    assert not expiry.due_keys(now).exists()
    assert expiry.expire_due_keys(now) == 0


def test_a_limit_of_one_day_is_a_limit_not_off(owner, outsider):
    now = timezone.now()
    KeyPolicy.objects.create(org=owner.org, inactivity_days=1, max_age_days=0)
    KeyPolicy.objects.create(org=outsider.org, inactivity_days=0, max_age_days=1)
    unused, _ = new_key(owner, "unused")
    recent, _ = new_key(owner, "recent")
    old, _ = new_key(outsider, "old")
    young, _ = new_key(outsider, "young")
    age(unused, created_at=now - timedelta(days=3), last_used_at=now - timedelta(days=2))
    age(recent, created_at=now - timedelta(days=3), last_used_at=now - timedelta(hours=23))
    age(old, created_at=now - timedelta(days=2), last_used_at=now)
    age(young, created_at=now - timedelta(hours=23), last_used_at=now)

    assert sorted(expiry.due_keys(now).values_list("name", flat=True)) == ["old", "unused"]
    assert expiry.expire_due_keys(now) == 2
    assert {e.target_id: e.details["reason"] for e in expired_events()} == {
        unused.pk: ExpiryReason.STALE,
        old.pk: ExpiryReason.TOO_OLD,
    }


# 2. Two sweeps at once, a sweep killed halfway, and changes between a batch's selection
# and its update.


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_expire_each_of_10000_keys_exactly_once(org):
    now = timezone.now()
    ids = bulk_keys(org, 10_000, expires_at=now - timedelta(minutes=5))
    counts = at_once(lambda: expiry.expire_due_keys(now, batch_size=250), timeout=300)
    assert sum(counts) == 10_000
    # Both sweeps did part of the work: SKIP LOCKED let them take different batches.
    assert len(counts) == 2 and min(counts) > 0, counts
    assert AccessKey.objects.filter(status=KeyStatus.EXPIRED).count() == 10_000
    per_key = Counter(
        AuditEvent.objects.filter(action="access_key.expired").values_list("target_id", flat=True)
    )
    assert set(per_key) == set(ids)
    assert set(per_key.values()) == {1}


SWEEP_SCRIPT = """
import sys
import django
django.setup()
from django.utils import timezone
from keys import expiry
now = timezone.now()
while expiry.expire_batch(now, 100) is not None:
    print("batch", flush=True)
print("done", flush=True)
"""


@pytest.mark.django_db(transaction=True)
def test_a_sweep_killed_halfway_is_finished_by_the_next_run(org, settings):
    now = timezone.now()
    ids = bulk_keys(org, 2_000, last_used_at=now - timedelta(days=120))
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,
        "EXCLOUD_SECRET_KEYS": settings.EXCLOUD_SECRET_KEYS,
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", SWEEP_SCRIPT],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        for _ in range(3):
            line = proc.stdout.readline()
            assert line == "batch\n", line + proc.stderr.read()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    done = AccessKey.objects.filter(status=KeyStatus.EXPIRED).count()
    assert 300 <= done < 2_000
    assert len(expired_events()) == done
    assert expiry.expire_due_keys(now) == 2_000 - done
    assert AccessKey.objects.filter(status=KeyStatus.EXPIRED).count() == 2_000
    per_key = Counter(e.target_id for e in expired_events())
    assert set(per_key) == set(ids) and set(per_key.values()) == {1}
    assert expiry.expire_due_keys(now) == 0


def sweep_with_a_change_in_between(now, change) -> int | None:
    """One sweep batch, with ``change()`` made after the batch was selected and before its
    conditional update: when the sweep reads the org policies. On SQLite another writer's
    change can land there; here it is made on the sweep's own connection."""
    policies = expiry._policies

    def policies_after_the_change(org_ids):
        change()
        return policies(org_ids)

    expiry._policies = policies_after_the_change
    try:
        return expiry.expire_batch(now)
    finally:
        expiry._policies = policies


# What another writer leaves on a key that the batch selected, just before the batch's
# update: none of them is this update's work, so none gets an expiry event from it.
CHANGES_IN_BETWEEN = {
    # Another sweep, with an earlier clock reading, expired it first.
    "expired by an earlier sweep": (KeyStatus.EXPIRED, timedelta(minutes=-1), "past_expiry"),
    # Another sweep at the same moment, under a policy that made it stale.
    "expired at the same moment as stale": (KeyStatus.EXPIRED, timedelta(0), "stale"),
    # Revoked at the same moment by an owner who gave the sweep's own words as the reason.
    "revoked at the same moment in the sweep's words": (
        KeyStatus.REVOKED,
        timedelta(0),
        "past_expiry",
    ),
}


@pytest.mark.parametrize("change", CHANGES_IN_BETWEEN)
def test_a_key_changed_between_selection_and_update_gets_no_event_from_the_sweep(org, change):
    status, offset, reason = CHANGES_IN_BETWEEN[change]
    now = timezone.now()
    first, changed, last = bulk_keys(org, 3, expires_at=now - timedelta(hours=1))
    left = {
        "status": status,
        "status_changed_at": now + offset,
        "status_reason": expiry.REASON_TEXT[reason],
    }
    mark = audit_mark()

    expired = sweep_with_a_change_in_between(
        now, lambda: AccessKey.objects.filter(pk=changed).update(**left)
    )

    assert expired == 2
    assert sorted(e.target_id for e in events_since(mark)) == sorted([first, last])
    key = AccessKey.objects.get(pk=changed)
    assert (key.status, key.status_changed_at, key.status_reason) == tuple(left.values())
    assert expiry.expire_batch(now) is None


def test_a_key_whose_policy_is_switched_off_after_selection_is_still_expired(owner):
    # The batch selected the key as stale, then its org switched every limit off before the
    # sweep read the policy: no limit is left to name, and the key the batch holds is
    # expired under the catch-all reason.
    now = timezone.now()
    KeyPolicy.objects.create(org=owner.org, inactivity_days=30, max_age_days=0)
    idle, _ = new_key(owner, "idle")
    age(idle, created_at=now - timedelta(days=50), last_used_at=now - timedelta(days=40))

    expired = sweep_with_a_change_in_between(
        now,
        lambda: KeyPolicy.objects.filter(org=owner.org).update(inactivity_days=0, max_age_days=0),
    )

    assert expired == 1
    idle.refresh_from_db()
    assert idle.status == KeyStatus.EXPIRED
    assert idle.status_reason == expiry.REASON_TEXT[ExpiryReason.PAST_EXPIRY]
    [event] = expired_events(target_id=idle.pk)
    assert event.details["reason"] == ExpiryReason.PAST_EXPIRY


# 3. Warnings before expiry.


@pytest.fixture
def eager_celery():
    from excloud_portal.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_it_warns_once_per_key_per_window_naming_the_key(
    owner, admin, member, auditor, eager_celery, django_capture_on_commit_callbacks, settings
):
    from keys.tasks import warn_expiring_keys

    now = timezone.now()
    soon, _ = new_key(member, "deploy-bot")
    age(soon, expires_at=now + timedelta(days=3))
    idle, _ = new_key(owner, "idle-laptop")
    age(idle, created_at=now - timedelta(days=100), last_used_at=now - timedelta(days=85))
    later, _ = new_key(owner, "later")
    age(later, expires_at=now + timedelta(days=30))

    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            warn_expiring_keys()

    assert KeyWarning.objects.count() == 2
    by_key = {}
    for message in mail.outbox:
        key_id = next(k.id for k in (soon, idle) if k.id in message.subject)
        by_key.setdefault(key_id, []).append(message)
    assert {k: len(v) for k, v in by_key.items()} == {soon.id: 1, idle.id: 1}

    [message] = by_key[soon.id]
    assert "deploy-bot" in message.subject
    assert sorted(message.to) == ["admin@acme.test", "member@acme.test", "owner@acme.test"]
    assert "Past its expiry date" in message.body
    assert f"{settings.SITE_URL}/orgs/acme/keys/{soon.id}/" in message.body
    soon.refresh_from_db()
    assert f"{soon.expires_at:%Y-%m-%d %H:%M}" in message.body
    [message] = by_key[idle.id]
    assert "Unused for too long" in message.body
    assert sorted(message.to) == ["admin@acme.test", "owner@acme.test"]

    warned = AuditEvent.objects.filter(action="access_key.expiry_warned")
    assert Counter(warned.values_list("target_id", flat=True)) == {soon.id: 1, idle.id: 1}
    assert all(w.sent_at is not None for w in KeyWarning.objects.all())


def test_it_mails_a_warning_whose_mail_task_never_reached_a_worker(
    owner, eager_celery, django_capture_on_commit_callbacks
):
    from keys.tasks import UNSENT_WARNING_GRACE, warn_expiring_keys

    now = timezone.now()
    stranded, _ = new_key(owner, "stranded")
    age(stranded, expires_at=now + timedelta(days=3))
    # Recorded by an earlier sweep while the broker was down: its mail task was lost.
    KeyWarning.objects.create(
        key=stranded,
        reason=ExpiryReason.PAST_EXPIRY,
        due_at=now + timedelta(days=3),
        created_at=now - UNSENT_WARNING_GRACE - timedelta(minutes=1),
    )
    too_late, _ = new_key(owner, "too-late")
    KeyWarning.objects.create(
        key=too_late,
        reason=ExpiryReason.PAST_EXPIRY,
        due_at=now - timedelta(minutes=1),
        created_at=now - UNSENT_WARNING_GRACE - timedelta(days=3),
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert warn_expiring_keys() == 0

    [message] = mail.outbox
    assert "stranded" in message.subject
    assert KeyWarning.objects.get(key=stranded).sent_at is not None
    assert KeyWarning.objects.get(key=too_late).sent_at is None


@pytest.mark.django_db(transaction=True)
def test_two_warning_runs_at_once_send_one_email_per_key(owner, eager_celery):
    from keys.tasks import send_expiry_warning

    now = timezone.now()
    keys = [new_key(owner, f"soon-{n}")[0] for n in range(20)]
    AccessKey.objects.update(expires_at=now + timedelta(days=2))
    at_once(lambda: expiry.record_warnings(send_expiry_warning.delay_on_commit, now))
    sent = Counter(k.id for message in mail.outbox for k in keys if k.id in message.subject)
    assert sent == {k.id: 1 for k in keys}
    assert KeyWarning.objects.count() == 20


# 4. Rotation: both keys work during the overlap, the old one stops after it.


@pytest.mark.django_db(transaction=True)
def test_a_rotated_key_works_during_the_overlap_and_is_expired_after_it(
    owner, store, tmp_path, settings
):
    old, old_secret = new_key(owner, "ci")
    with gateway(tmp_path, store, redis_url=settings.REDIS_URL) as gw:
        bucket = bucket_name()
        s3_client(gw.url, old.id, old_secret).create_bucket(Bucket=bucket)
        created = rotate_key(owner, Actor.for_user(owner.user), old, overlap=timedelta(hours=1))
        new, new_secret = created.key, created.secret
        assert s3_status(gw.url, old.id, old_secret, bucket) == 200
        assert s3_status(gw.url, new.id, new_secret, bucket) == 200

        # The sweep runs as if the overlap were over.
        assert expiry.expire_due_keys(timezone.now() + timedelta(hours=1, minutes=1)) == 1
        assert s3_status(gw.url, old.id, old_secret, bucket) == 403
        assert s3_status(gw.url, new.id, new_secret, bucket) == 200

    old.refresh_from_db()
    assert old.status == KeyStatus.EXPIRED
    chain = list(
        AuditEvent.objects.filter(target_id=old.id).order_by("pk").values_list("action", flat=True)
    )
    assert chain == ["access_key.created", "access_key.rotated", "access_key.expired"]
    rotated = AuditEvent.objects.get(target_id=old.id, action="access_key.rotated")
    assert rotated.details["replacement"] == new.id
    assert expired_events(target_id=old.id)[0].details["reason"] == "past_expiry"


def test_recipients_leave_out_admins_when_the_policy_says_so(owner, admin, member):
    from keys.tasks import warning_recipients

    key, _ = new_key(member, "bot")
    warning = KeyWarning.objects.create(key=key, reason="past_expiry", due_at=timezone.now())
    assert warning_recipients(warning) == ["admin@acme.test", "member@acme.test", "owner@acme.test"]
    KeyPolicy.objects.create(org=owner.org, warn_admins=False)
    assert warning_recipients(warning) == ["member@acme.test"]
    Membership.objects.create(org=owner.org, user=make_user("x@acme.test"), role=Role.AUDITOR)
    assert warning_recipients(warning) == ["member@acme.test"]


# 6. The sweep on SQLite (the embedded default), where no row lock keeps other writers out.


def test_a_key_revoked_between_selection_and_update_on_sqlite_stays_revoked(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "EXCLOUD_SECRET_KEYS")
    }
    env.update(
        EXCLOUD_VAR_DIR=str(tmp_path / "var"),
        DJANGO_SETTINGS_MODULE="excloud_portal.settings",
        PYTHONPATH=str(REPO),
    )
    devenv.load(env)
    result = subprocess.run(
        [sys.executable, "-m", "tests.sqlite_sweep"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr
    assert_the_revoked_key_stays_revoked(json.loads(result.stdout.strip().splitlines()[-1]))


def test_a_key_revoked_between_selection_and_update_on_the_sweeps_connection(db):
    # On PostgreSQL the batch's row locks keep other writers out, but the same change made
    # on the sweep's own connection takes the same path through the sweep.
    assert_the_revoked_key_stays_revoked(sweep_with_a_revoke_in_between())


def assert_the_revoked_key_stays_revoked(outcome: dict) -> None:
    first, revoked, last = outcome["ids"]
    # The conditional update changed two of the three keys it selected; the third was
    # revoked in between and keeps its status, its reason, and gets no expiry event.
    assert outcome["expired"] == 2
    assert outcome["status"] == {
        first: KeyStatus.EXPIRED,
        revoked: KeyStatus.REVOKED,
        last: KeyStatus.EXPIRED,
    }
    assert outcome["reason"][revoked] == "revoked by its owner"
    assert outcome["reason"][first] == expiry.REASON_TEXT[ExpiryReason.PAST_EXPIRY]
    assert outcome["reason"][last] == expiry.REASON_TEXT[ExpiryReason.PAST_EXPIRY]
    # One event per expired key, in whatever order the batch took them.
    assert sorted(outcome["events"]) == sorted([first, last])
    assert outcome["again"] is None


# 7. A sweep in a bounded number of batches.


def test_a_sweep_of_a_few_batches_stops_after_them_and_the_next_finishes(org):
    now = timezone.now()
    bulk_keys(org, 5, expires_at=now - timedelta(minutes=5))
    assert expiry.expire_due_keys(now, batch_size=2, max_batches=2) == 4
    assert AccessKey.objects.filter(status=KeyStatus.EXPIRED).count() == 4
    assert expiry.expire_due_keys(now, batch_size=2, max_batches=1) == 1
    assert expiry.expire_due_keys(now, batch_size=2, max_batches=1) == 0


# 8. Warnings, as recorded.


def test_a_warning_follows_the_orgs_own_policy_and_names_its_moment(owner, other_org):
    now = timezone.now()
    KeyPolicy.objects.create(org=owner.org, inactivity_days=30, warning_days=7)
    idle, _ = new_key(owner, "idle")
    age(idle, created_at=now - timedelta(days=40), last_used_at=now - timedelta(days=25))
    mark = audit_mark()

    created = expiry.record_warnings(lambda pk: None, now)

    warning = KeyWarning.objects.get()
    assert created == [warning.pk]
    due_at = now - timedelta(days=25) + timedelta(days=30)
    assert (warning.key_id, warning.reason, warning.due_at) == (idle.pk, "stale", due_at)
    [event] = AuditEvent.objects.filter(pk__gt=mark)
    assert (event.action, event.org_id, event.target_type, event.target_id) == (
        "access_key.expiry_warned",
        owner.org_id,
        "access_key",
        idle.pk,
    )
    assert (event.actor_type, event.actor_label) == ("system", "key expiry")
    assert event.details == {"name": "idle", "reason": "stale", "due_at": due_at.isoformat()}


def test_a_second_warning_run_warns_only_the_keys_it_has_not_warned(owner):
    now = timezone.now()
    keys = []
    for n in range(3):
        key, _ = new_key(owner, f"soon-{n}")
        age(key, expires_at=now + timedelta(days=3))
        keys.append(key)
    assert len(expiry.record_warnings(lambda pk: None, now)) == 3
    late, _ = new_key(owner, "soon-late")
    age(late, expires_at=now + timedelta(days=3))
    sent = []

    created = expiry.record_warnings(sent.append, now)

    assert created == sent == [KeyWarning.objects.get(key=late).pk]
    assert KeyWarning.objects.count() == 4


# 9. What the keys page shows about each key's expiry.


def test_the_hints_name_the_first_limit_and_when_it_is_soon(owner):
    now = timezone.now()
    policy = KeyPolicy(org=owner.org, inactivity_days=90, max_age_days=0, warning_days=7)
    at_the_edge, _ = new_key(owner, "at-the-edge")
    overdue, _ = new_key(owner, "overdue")
    idle, _ = new_key(owner, "idle")
    revoked, _ = new_key(owner, "revoked")
    age(at_the_edge, expires_at=now + timedelta(days=7), last_used_at=now)
    age(overdue, expires_at=now - timedelta(hours=1), last_used_at=now)
    age(idle, created_at=now - timedelta(days=40), last_used_at=now - timedelta(days=30))
    age(revoked, status=KeyStatus.REVOKED, expires_at=now + timedelta(days=1))
    keys = {k.name: k for k in AccessKey.objects.all()}

    expiry.add_hints(list(keys.values()), policy, now)

    def hints(name):
        k = keys[name]
        return (k.due and (k.due.reason, k.due.at), k.due_in_days, k.due_soon, k.unused_days)

    # Due exactly at the end of the warning lead time: soon.
    assert hints("at-the-edge") == (("past_expiry", now + timedelta(days=7)), 7, True, None)
    # Past its limit but not swept yet: due today, not in a negative number of days.
    assert hints("overdue") == (("past_expiry", now - timedelta(hours=1)), 0, True, None)
    # Idle for exactly the days after which the page says so.
    assert hints("idle") == (("stale", now + timedelta(days=60)), 60, False, 30)
    # A key that is no longer live reaches no limit and is not called unused.
    assert hints("revoked") == (None, None, False, None)


def test_a_key_no_limit_applies_to_has_no_due_moment(owner):
    now = timezone.now()
    policy = KeyPolicy(org=owner.org, inactivity_days=0, max_age_days=0, warning_days=7)
    forever, _ = new_key(owner, "forever")
    age(forever, created_at=now - timedelta(days=400), last_used_at=now - timedelta(days=40))
    forever.refresh_from_db()

    assert expiry.next_due(forever, policy) is None
    [forever] = expiry.add_hints([forever], policy, now)
    assert (forever.due, forever.due_in_days, forever.due_soon, forever.unused_days) == (
        None,
        None,
        False,
        40,
    )


# 10. The policy's days as a duration on SQLite, which the child process above runs on.


def test_a_number_of_days_is_a_duration_as_sqlite_stores_one(django_db_blocker):
    from django.db.models import DurationField, Value
    from django.db.models.sql import Query
    from django.db.utils import ConnectionHandler

    sqlite = ConnectionHandler(
        {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    )["default"]
    # An in-memory database of this test's own, not the test database.
    with django_db_blocker.unblock():
        try:
            compiler = Query(AccessKey).get_compiler(connection=sqlite)
            sql, params = compiler.compile(expiry.DaysDuration(Value(3)))
            with sqlite.cursor() as cursor:
                cursor.execute(f"SELECT {sql}", params)
                (stored,) = cursor.fetchone()
        finally:
            sqlite.close()
    assert stored == DurationField().get_db_prep_value(timedelta(days=3), sqlite)


@pytest.mark.django_db(transaction=True)
def test_a_sweep_takes_the_due_keys_no_one_holds_without_waiting(org):
    # Another transaction holds one due key (a second sweep's batch, say): the sweep takes
    # the others at once instead of queueing behind it.
    now = timezone.now()
    held, *_ = bulk_keys(org, 3, expires_at=now - timedelta(minutes=5))
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                list(AccessKey.objects.select_for_update().filter(pk=held))
                locked.set()
                release.wait(30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(30)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '10s'")
        assert expiry.expire_batch(now) == 2
    finally:
        release.set()
        holder.join(30)
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 0")
    assert expiry.expire_batch(now) == 1
    assert AccessKey.objects.get(pk=held).status == KeyStatus.EXPIRED
