"""The audit hash (audit/chain.py) covers every stored field of an event but the hash itself.

No database: an unsaved event is hashed, then each field in turn is changed to another
valid value and the hash must change with it. A field added to AuditEvent later must be
added to the canonical form (or to NOT_HASHED, with a reason) for this file to pass.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from audit import chain
from audit.models import AuditEvent

# The primary key is assigned by the database after hashing; the hash cannot cover itself.
NOT_HASHED = {"id", "hash"}

CHANGES = {
    "org": {"org_id": 8},
    "seq": {"seq": 43},
    "occurred_at": {
        "occurred_at": datetime(2026, 1, 10, 12, 0, 0, 1, tzinfo=UTC),
    },
    "actor_type": {"actor_type": "system"},
    "actor_user": {"actor_user_id": 6},
    "actor_label": {"actor_label": "mallory@acme.test"},
    "action": {"action": "access_key.revoked"},
    "target_type": {"target_type": "api_token"},
    "target_id": {"target_id": "EXCAAAAAAAAAAAAAAAAB"},
    "source_ip": {"source_ip": "203.0.113.10"},
    "user_agent": {"user_agent": "curl/8.0"},
    "request_id": {"request_id": "req-2"},
    "details": {"details": {"name": "laptop", "via": "api"}},
    "prev_hash": {"prev_hash": "1" * 64},
}


def event(**changes) -> AuditEvent:
    fields = {
        "org_id": 7,
        "seq": 42,
        "occurred_at": datetime(2026, 1, 10, 12, 0, 0, tzinfo=UTC),
        "actor_type": "user",
        "actor_user_id": 5,
        "actor_label": "alice@acme.test",
        "action": "access_key.created",
        "target_type": "access_key",
        "target_id": "EXCAAAAAAAAAAAAAAAAA",
        "source_ip": "203.0.113.9",
        "user_agent": "Mozilla/5.0",
        "request_id": "req-1",
        "details": {"name": "laptop", "via": "web"},
        "prev_hash": "0" * 64,
    }
    fields.update(changes)
    return AuditEvent(**fields)


def test_it_names_a_change_for_every_stored_field():
    stored = {f.name for f in AuditEvent._meta.concrete_fields}
    assert stored - NOT_HASHED == set(CHANGES)


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_it_changes_the_hash_when_any_one_field_changes(name):
    original = chain.event_hash(event())
    assert chain.event_hash(event()) == original
    assert chain.event_hash(event(**CHANGES[name])) != original


def test_it_changes_the_hash_for_a_field_emptied_or_moved_to_another():
    original = chain.event_hash(event())
    # Empty and missing values are not all one: the type and the place of each value count.
    for changes in (
        {"org_id": None},
        {"actor_user_id": None},
        {"source_ip": None},
        {"user_agent": ""},
        {"details": {}},
        {"target_type": "", "target_id": "access_keyEXCAAAAAAAAAAAAAAAAA"},
        {"actor_label": "", "user_agent": "alice@acme.test"},
    ):
        assert chain.event_hash(event(**changes)) != original, changes


def test_it_hashes_the_same_moment_the_same_in_any_time_zone():
    shifted = datetime(2026, 1, 10, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    assert chain.event_hash(event(occurred_at=shifted)) == chain.event_hash(event())


def test_it_hashes_as_if_at_another_seq_only_when_asked():
    assert chain.event_hash(event(), seq=43) == chain.event_hash(event(seq=43))
    assert chain.event_hash(event(), seq=43) != chain.event_hash(event())


# The canonical form is a format: hashes stored years ago, and anyone who re-computes them
# outside this code, must keep matching. So its exact bytes are pinned here.
CANONICAL = (
    '{"action":"access_key.created",'
    '"actor":{"label":"zoë@acme.test","type":"user","user":5},'
    '"details":{"name":"laptop","note":"café","via":"web"},'
    '"ip":"203.0.113.9","org":7,'
    '"prev":"0000000000000000000000000000000000000000000000000000000000000000",'
    '"request":"req-1","seq":42,'
    '"target":{"id":"EXCAAAAAAAAAAAAAAAAA","type":"access_key"},'
    '"time":"2026-01-10T12:00:00.000000+00:00","ua":"Mozilla/5.0","v":1}'
)


@pytest.fixture
def local_time_zone_not_utc(monkeypatch):
    # The machine's own time zone must not leak into the hash.
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_it_hashes_the_documented_canonical_form(local_time_zone_not_utc):
    pinned = event(
        actor_label="zoë@acme.test", details={"via": "web", "note": "café", "name": "laptop"}
    )
    assert chain.canonical(pinned) == CANONICAL.encode("utf-8")
    assert chain.event_hash(pinned) == (
        "f6e3f53cca663aea547c7b9791f66022dbeb8270157438dd8d72996fbcbe51dd"
    )


def test_it_names_an_orgs_chain_and_the_global_one():
    assert chain.chain_name(7) == "org:7"
    assert chain.chain_name(0) == "org:0"
    assert chain.chain_name(None) == "global"
