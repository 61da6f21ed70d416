"""Changing a key through keys/services.py: what each change stores, the one audit event it
writes (every field of it), the words a refused change gives, and the limits on names,
reasons and expiry dates."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from datetime import timezone as fixed_zone

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection, connections, transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.trail import Actor
from keys.models import AccessKey, KeyPolicy, KeyStatus
from keys.services import (
    AccessKeyError,
    InvalidExpiry,
    InvalidKeyState,
    KeyNameTaken,
    create_key,
    deactivate_key,
    reactivate_key,
    rename_key,
    revoke_key,
    rotate_key,
)

from .conftest import audit_mark, events_since, new_key

LONG_NAME = "k" * 64


def by(membership) -> Actor:
    return Actor.for_user(membership.user)


def event_of(mark: int) -> AuditEvent:
    (event,) = events_since(mark)
    return event


def assert_event(event: AuditEvent, action: str, key: AccessKey, actor, details: dict) -> None:
    assert (event.action, event.org_id, event.target_type, event.target_id) == (
        action,
        key.org_id,
        "access_key",
        key.pk,
    )
    assert event.actor_user_id == actor.user_id
    assert event.details == details


# 1. Status changes: the stored change and its event.


def test_deactivating_stores_who_and_when_and_records_the_change(owner, member):
    key, _ = new_key(member, "laptop")
    mark = audit_mark()
    before = timezone.now()
    deactivate_key(owner, by(owner), key)
    after = timezone.now()
    key.refresh_from_db()
    assert key.status == KeyStatus.INACTIVE
    assert before <= key.status_changed_at <= after
    assert key.status_changed_by_id == owner.user_id
    assert key.status_reason == ""
    assert_event(
        event_of(mark),
        "access_key.deactivated",
        key,
        owner,
        {"name": "laptop", "from": ["active"], "to": "inactive"},
    )


def test_reactivating_records_the_change(owner):
    key, _ = new_key(owner, "laptop")
    deactivate_key(owner, by(owner), key)
    mark = audit_mark()
    reactivate_key(owner, by(owner), key)
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE
    assert_event(
        event_of(mark),
        "access_key.reactivated",
        key,
        owner,
        {"name": "laptop", "from": ["inactive"], "to": "active"},
    )


def test_revoking_without_a_reason_records_none(owner):
    key, _ = new_key(owner, "laptop")
    mark = audit_mark()
    revoke_key(owner, by(owner), key)
    key.refresh_from_db()
    assert (key.status, key.status_reason) == (KeyStatus.REVOKED, "")
    assert_event(
        event_of(mark),
        "access_key.revoked",
        key,
        owner,
        {"name": "laptop", "from": ["active", "inactive"], "to": "revoked"},
    )


def test_revoking_keeps_the_first_200_characters_of_the_reason(owner):
    key, _ = new_key(owner, "laptop")
    mark = audit_mark()
    revoke_key(owner, by(owner), key, "  " + "r" * 300 + "  ")
    key.refresh_from_db()
    assert key.status_reason == "r" * 200
    assert event_of(mark).details["reason"] == "r" * 200


def test_revoking_refuses_a_reason_with_control_characters(owner):
    key, _ = new_key(owner, "laptop")
    mark = audit_mark()
    with pytest.raises(AccessKeyError) as refused:
        revoke_key(owner, by(owner), key, "lost\x1b[2J")
    assert str(refused.value) == (
        "Reasons cannot contain control characters or text-direction controls (found U+001B)."
    )
    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE
    assert events_since(mark) == []


def test_a_change_from_the_wrong_status_names_the_key_and_its_status(owner):
    key, _ = new_key(owner, "laptop")
    revoke_key(owner, by(owner), key)
    mark = audit_mark()
    for change in (deactivate_key, revoke_key):
        with pytest.raises(InvalidKeyState) as refused:
            change(owner, by(owner), key)
        assert str(refused.value) == "Key “laptop” is revoked; nothing was changed."
    with pytest.raises(InvalidKeyState) as refused:
        rename_key(owner, by(owner), key, "desktop")
    assert str(refused.value) == "Key “laptop” is revoked; it cannot be renamed."
    assert events_since(mark) == []


# 2. Refusals by role, in the words the API answers 403 with.


def test_each_change_refused_to_a_member_says_who_may_make_it(owner, member):
    key, _ = new_key(owner, "laptop")
    mark = audit_mark()
    refusals = [
        (deactivate_key, "Only owners, admins and the key's creator can deactivate it."),
        (revoke_key, "Only owners, admins and the key's creator can revoke it."),
        (
            lambda m, a, k: rename_key(m, a, k, "x"),
            "Only owners, admins and the key's creator can rename it.",
        ),
    ]
    for change, words in refusals:
        with pytest.raises(PermissionDenied) as refused:
            change(member, by(member), key)
        assert str(refused.value) == words
    deactivate_key(owner, by(owner), key)
    mark = audit_mark()
    with pytest.raises(PermissionDenied) as refused:
        reactivate_key(member, by(member), key)
    assert str(refused.value) == "Only owners and admins can reactivate this key."
    assert events_since(mark) == []


# 3. Names.


def test_renaming_records_the_old_and_the_new_name(owner):
    key, _ = new_key(owner, "laptop")
    mark = audit_mark()
    rename_key(owner, by(owner), key, " desktop ")
    key.refresh_from_db()
    assert key.name == "desktop"
    assert_event(
        event_of(mark), "access_key.renamed", key, owner, {"name": "desktop", "from": "laptop"}
    )


def test_a_key_can_be_renamed_to_its_own_name_in_another_case(owner):
    key, _ = new_key(owner, "laptop")
    mark = audit_mark()
    rename_key(owner, by(owner), key, "Laptop")
    key.refresh_from_db()
    assert key.name == "Laptop"
    assert event_of(mark).details == {"name": "Laptop", "from": "laptop"}


def test_a_taken_name_is_named_in_the_refusal(owner):
    key, _ = new_key(owner, "laptop")
    new_key(owner, "backup")
    mark = audit_mark()
    with pytest.raises(KeyNameTaken) as refused:
        rename_key(owner, by(owner), key, "BACKUP")
    assert str(refused.value) == "A live key named “BACKUP” already exists. Choose another name."
    with pytest.raises(KeyNameTaken) as refused:
        create_key(owner, by(owner), "Backup")
    assert str(refused.value) == "A live key named “Backup” already exists. Choose another name."
    assert events_since(mark) == []


def test_a_name_with_control_characters_is_refused_in_words(owner):
    with pytest.raises(AccessKeyError) as refused:
        create_key(owner, by(owner), "lap\u202etop")
    assert str(refused.value) == (
        "Key names cannot contain control characters or text-direction controls (found U+202E)."
    )
    assert not AccessKey.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_of_two_renames_to_one_name_at_once_one_is_told_it_is_taken(owner):
    """The second rename passes the name check before the first commits; the unique index
    then refuses its update, and it is told the name is taken, like any other."""
    first, _ = new_key(owner, "first")
    second, _ = new_key(owner, "second")
    renamed = threading.Event()
    done = threading.Event()

    def rename_first_and_hold() -> None:
        try:
            with transaction.atomic():
                AccessKey.objects.filter(pk=first.pk).update(name="shared")
                renamed.set()
                # Commit once the other rename waits on this one's index entry.
                deadline = timezone.now() + timedelta(seconds=30)
                while not done.is_set() and timezone.now() < deadline:
                    if _someone_waits_on_a_lock():
                        break
                    done.wait(0.05)
        finally:
            connections.close_all()

    holder = threading.Thread(target=rename_first_and_hold)
    holder.start()
    try:
        assert renamed.wait(30)
        mark = audit_mark()
        with pytest.raises(KeyNameTaken) as refused:
            rename_key(owner, by(owner), second, "shared")
    finally:
        done.set()
        holder.join(30)
    assert str(refused.value) == "A live key named “shared” already exists. Choose another name."
    second.refresh_from_db()
    assert second.name == "second"
    assert events_since(mark) == []


def _someone_waits_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
        return cursor.fetchone()[0] > 0


def test_a_long_names_rotation_name_fits(owner):
    key, _ = new_key(owner, LONG_NAME)
    before = timezone.now()
    new = rotate_key(owner, by(owner), key).key
    after = timezone.now()
    assert new.name in {f"{'k' * 44}-rotated-{at:%Y%m%d}" for at in (before, after)}
    assert len(new.name) == 61


# 4. Expiry dates chosen at creation.


def test_an_expiry_within_five_minutes_is_refused(owner):
    with pytest.raises(InvalidExpiry) as refused:
        create_key(owner, by(owner), "laptop", expires_at=timezone.now() + timedelta(minutes=1))
    assert str(refused.value) == "Choose an expiry date in the future."
    assert not AccessKey.objects.exists()


@pytest.mark.parametrize(
    "expires_at",
    [
        # No UTC equivalent: past the last moment a datetime holds.
        datetime(9999, 12, 31, 23, 0, tzinfo=fixed_zone(-timedelta(hours=23, minutes=59))),
        datetime(2200, 1, 1, tzinfo=UTC),
    ],
    ids=["overflow", "past-100-years"],
)
def test_an_expiry_out_of_range_is_refused_in_words(owner, expires_at):
    with pytest.raises(InvalidExpiry) as refused:
        create_key(owner, by(owner), "laptop", expires_at=expires_at)
    assert str(refused.value) == "Choose an expiry date within the next 100 years."


def test_the_policys_maximum_age_allows_earlier_dates_and_names_the_last_day(owner):
    KeyPolicy.objects.create(org=owner.org, max_age_days=30)
    soon = timezone.now() + timedelta(days=10)
    assert create_key(owner, by(owner), "soon", expires_at=soon).key.expires_at == soon
    before = timezone.now()
    with pytest.raises(InvalidExpiry) as refused:
        create_key(owner, by(owner), "late", expires_at=timezone.now() + timedelta(days=31))
    after = timezone.now()
    assert str(refused.value) in {
        "This organisation keeps keys at most 30 days: choose a date on or before "
        f"{at + timedelta(days=30):%Y-%m-%d}."
        for at in (before, after)
    }


def test_an_expiry_given_in_another_zone_is_stored_and_recorded_in_utc(owner, monkeypatch):
    # Whatever the machine's own zone: the audit event states the moment in UTC.
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        zone = fixed_zone(timedelta(hours=2))
        chosen = (timezone.now() + timedelta(days=3)).astimezone(zone).replace(microsecond=0)
        mark = audit_mark()
        key = create_key(owner, by(owner), "laptop", expires_at=chosen).key
    finally:
        monkeypatch.undo()
        time.tzset()
    assert key.expires_at == chosen
    assert event_of(mark).details["expires_at"] == chosen.astimezone(UTC).isoformat()


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", "Give the key a name."),
        ("   ", "Give the key a name."),
        (None, "Give the key a name."),
        (
            "k" * 65,
            "Names are at most 64 characters. Use 1–64 characters: letters, digits, spaces, "
            "dots, underscores and hyphens.",
        ),
        (
            "lap/top",
            "That name has characters we don't allow. Use 1–64 characters: letters, digits, "
            "spaces, dots, underscores and hyphens.",
        ),
    ],
    ids=["empty", "spaces", "none", "too-long", "slash"],
)
def test_a_name_against_the_rules_is_refused_saying_which(owner, name, words):
    with pytest.raises(AccessKeyError) as refused:
        create_key(owner, by(owner), name)
    assert str(refused.value) == words
    assert not AccessKey.objects.exists()


def test_a_name_of_the_longest_length_is_kept_whole(owner):
    assert create_key(owner, by(owner), f" {LONG_NAME} ").key.name == LONG_NAME
