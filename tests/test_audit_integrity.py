"""A trail that cannot be edited.

Audit rows cannot be updated or deleted; `audit_verify` finds each kind of tampering done by
someone who can get past the triggers; appends to one org are serialized; signed
checkpoints pin each chain where it was.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from accounts.models import Membership, Organization, User
from audit import signing
from audit.chain import chain_name, event_hash
from audit.checkpoints import sign_checkpoints
from audit.models import AuditChainHead, AuditCheckpoint, AuditEvent
from audit.trail import Actor, record
from audit.verify import ChainResult, verify_chain
from keys.services import deactivate_key, revoke_key

from .conftest import new_key

REPO = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).parent / "celery")
WORKER_TIMEOUT = 60


# 1. Append-only.


@pytest.fixture
def trail(everyone) -> dict[str, Membership]:
    """Acme's chain with six events, Globex's with one, and the sign-ins outside any org."""
    owner, member, outsider = everyone["owner"], everyone["member"], everyone["outsider"]
    first, _ = new_key(member, "first")
    new_key(member, "second")
    third, _ = new_key(owner, "third")
    deactivate_key(owner, Actor.for_user(owner.user), first)
    revoke_key(owner, Actor.for_user(owner.user), first, "rotated")
    deactivate_key(owner, Actor.for_user(owner.user), third)
    new_key(outsider, "globex-key")
    assert AuditEvent.objects.filter(org__slug="acme").count() == 6
    return everyone


def acme_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(org__slug="acme").order_by("seq"))


APPEND_ONLY_TABLES = ["audit_auditevent", "audit_auditcheckpoint"]


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {table} SET hash = repeat('0', 64)",
        "UPDATE {table} SET seq = seq WHERE id = (SELECT max(id) FROM {table})",
        "DELETE FROM {table}",
        "DELETE FROM {table} WHERE id = (SELECT max(id) FROM {table})",
    ],
)
def test_it_refuses_update_and_delete_of_audit_rows_in_the_database(trail, table, statement):
    sign_checkpoints()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT t::text FROM {table} t ORDER BY id")
        before = cursor.fetchall()
        assert before
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            cursor.execute(statement.format(table=table))
        cursor.execute(f"SELECT t::text FROM {table} t ORDER BY id")
        assert cursor.fetchall() == before


@pytest.mark.parametrize(
    "change",
    [
        lambda: AuditEvent.objects.update(actor_label="mallory"),
        lambda: AuditEvent.objects.filter(action="access_key.revoked").delete(),
        lambda: AuditEvent.objects.last().delete(),
        lambda: AuditCheckpoint.objects.update(seq=1),
        lambda: AuditCheckpoint.objects.all().delete(),
    ],
    ids=["update-events", "delete-events", "delete-event", "update-checkpoints", "delete-cps"],
)
def test_it_refuses_update_and_delete_of_audit_rows_through_the_orm(trail, change):
    sign_checkpoints()
    before = list(AuditEvent.objects.values_list()), list(AuditCheckpoint.objects.values_list())
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        change()
    after = list(AuditEvent.objects.values_list()), list(AuditCheckpoint.objects.values_list())
    assert after == before


def test_it_deletes_a_user_and_keeps_their_events(trail):
    member = trail["member"].user
    user_id = member.pk
    theirs = list(AuditEvent.objects.filter(actor_user_id=user_id).values_list("pk", "hash"))
    assert len(theirs) >= 3  # signed in, created two keys
    member.delete()
    assert not User.objects.filter(pk=user_id).exists()
    kept = AuditEvent.objects.filter(actor_user_id=user_id)
    assert list(kept.values_list("pk", "hash")) == theirs
    assert set(kept.values_list("actor_label", flat=True)) == {"member@acme.test"}
    assert verify() == f"OK {AuditEvent.objects.count()} events\n"


# 2. audit_verify finds tampering.


def verify(*args: str) -> str:
    out, err = StringIO(), StringIO()
    call_command("audit_verify", *args, stdout=out, stderr=err)
    assert err.getvalue() == ""
    return out.getvalue()


def verify_fails(*args: str) -> str:
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError, match="failed verification"):
        call_command("audit_verify", *args, stdout=out, stderr=err)
    assert out.getvalue() == ""
    return err.getvalue()


@contextlib.contextmanager
def triggers_bypassed():
    """What a superuser can do: turn off triggers for this session (the test DB user is one)."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = origin")


def set_head(org_slug: str, seq: int, hash_: str) -> None:
    org = Organization.objects.get(slug=org_slug)
    AuditChainHead.objects.filter(chain=chain_name(org.pk)).update(seq=seq, hash=hash_)


def assert_verifies_before_tampering() -> None:
    assert verify() == f"OK {AuditEvent.objects.count()} events\n"


def walked(org_slug: str) -> int:
    """How many events the walk of the org's chain vouches for: those it went through in
    order, with their links and hashes intact, before it found a problem."""
    return verify_chain(Organization.objects.get(slug=org_slug).pk).events


def signed(cp: AuditCheckpoint) -> str:
    """When a checkpoint was signed, as audit_verify names it."""
    return f"{cp.signed_at:%Y-%m-%d %H:%M:%S} UTC"


def test_it_verifies_an_untampered_trail(trail):
    # Five sign-ins outside any org, six events in Acme, one in Globex.
    assert AuditEvent.objects.filter(org__isnull=True).count() == 5
    total = AuditEvent.objects.count()
    assert total == 5 + 6 + 1
    assert verify() == f"OK {total} events\n"
    assert verify("--org", "acme") == "OK 6 events\n"
    assert verify("--org", "globex") == "OK 1 events\n"
    # Each result names the chain it walked.
    acme = Organization.objects.get(slug="acme")
    assert verify_chain(acme.pk) == ChainResult(chain_name(acme.pk), 6)
    assert verify_chain(None) == ChainResult(chain_name(None), 5)
    sign_checkpoints()
    new_key(trail["member"], "after-the-checkpoint")
    assert verify("--org", "acme") == "OK 7 events\n"
    with pytest.raises(CommandError, match="No organisation 'nope'"):
        call_command("audit_verify", "--org", "nope")


@pytest.mark.parametrize(
    "edit",
    [
        {"actor_label": "mallory@acme.test"},
        {"details": {"name": "second", "via": "api"}},
        {"target_id": "AKIA0000000000000000"},
        {"action": "access_key.renamed"},
        {"source_ip": "198.51.100.1"},
    ],
    ids=lambda edit: next(iter(edit)),
)
def test_it_finds_an_edited_field(trail, edit):
    assert_verifies_before_tampering()
    victim = acme_events()[2]
    with triggers_bypassed():
        assert AuditEvent.objects.filter(pk=victim.pk).update(**edit) == 1
    problem = verify_fails()
    assert f"FAIL org acme: event #3 (id {victim.pk}) altered" in problem
    assert walked("acme") == 2
    # Only the tampered chain fails.
    assert "globex" not in problem
    assert verify("--org", "globex") == "OK 1 events\n"
    assert verify_fails("--org", "acme") == problem


def test_it_finds_a_deleted_middle_row(trail):
    assert_verifies_before_tampering()
    with triggers_bypassed():
        AuditEvent.objects.filter(pk=acme_events()[3].pk).delete()
    problem = verify_fails("--org", "acme")
    assert "event #4 removed: the chain jumps from #3 to #5" in problem
    # The walk counts the events it could vouch for: those before the gap.
    acme = Organization.objects.get(slug="acme")
    assert verify_chain(acme.pk).events == 3


@pytest.mark.parametrize("first", [1, 3, 5])
def test_it_finds_two_events_swapped(trail, first):
    """Swap the seq of two neighbours, through a free seq to dodge the unique constraint."""
    assert_verifies_before_tampering()
    events = acme_events()
    a, b = events[first - 1], events[first]
    with triggers_bypassed():
        AuditEvent.objects.filter(pk=a.pk).update(seq=-1)
        AuditEvent.objects.filter(pk=b.pk).update(seq=a.seq)
        AuditEvent.objects.filter(pk=a.pk).update(seq=b.seq)
    problem = verify_fails("--org", "acme")
    assert "reordered" in problem
    assert f"the event at #{first} (id {b.pk}) was written as #{first + 1}" in problem


def test_it_finds_an_event_moved_further(trail):
    assert_verifies_before_tampering()
    events = acme_events()
    a, b = events[1], events[4]
    with triggers_bypassed():
        AuditEvent.objects.filter(pk=a.pk).update(seq=-1)
        AuditEvent.objects.filter(pk=b.pk).update(seq=a.seq)
        AuditEvent.objects.filter(pk=a.pk).update(seq=b.seq)
    problem = verify_fails("--org", "acme")
    assert f"reordered: the event at #2 (id {b.pk}) was written as #5" in problem


def move(events: list[AuditEvent], moves: dict[int, int]) -> None:
    """Give events new seqs ({old seq: new seq}), through free seqs for the unique index."""
    with triggers_bypassed():
        for old in moves:
            AuditEvent.objects.filter(pk=events[old - 1].pk).update(seq=-old)
        for old, new in moves.items():
            AuditEvent.objects.filter(pk=events[old - 1].pk).update(seq=new)


def test_it_finds_the_last_event_moved_to_the_front(trail):
    # Nothing follows the last event: only its predecessor tells where it was written.
    assert_verifies_before_tampering()
    events = acme_events()
    move(events, {2: 6, 6: 2})
    problem = verify_fails("--org", "acme")
    assert f"reordered: the event at #2 (id {events[5].pk}) was written as #6" in problem


def test_it_finds_an_event_moved_far_from_its_deleted_predecessor(trail):
    # The predecessor is gone: only its successor tells where the event was written.
    assert_verifies_before_tampering()
    events = acme_events()
    with triggers_bypassed():
        AuditEvent.objects.filter(pk=events[3].pk).delete()
    move(events, {2: 5, 5: 2})
    problem = verify_fails("--org", "acme")
    assert f"reordered: the event at #2 (id {events[4].pk}) was written as #5" in problem


def test_it_finds_the_first_event_replayed_at_the_end(trail):
    assert_verifies_before_tampering()
    first, last = acme_events()[0], acme_events()[-1]
    with triggers_bypassed():
        first.pk, first.seq = None, last.seq + 1
        first.save(force_insert=True)
    set_head("acme", first.seq, first.hash)
    problem = verify_fails("--org", "acme")
    assert f"reordered: the event at #{first.seq} (id {first.pk}) was written as #1" in problem


def test_it_finds_the_first_event_pushed_back_behind_a_forged_start(trail):
    # The forger writes two events of their own at #1 and #2, hashed afresh, pushes the
    # real first event back to #3 and deletes what linked to it. Nothing links to it and
    # nothing it links to is left: only its link to the start of every chain tells where
    # it was written.
    assert_verifies_before_tampering()
    events = acme_events()
    real_first = events[0]
    with triggers_bypassed():
        AuditEvent.objects.filter(pk__in=[events[1].pk, events[2].pk]).delete()
        AuditEvent.objects.filter(pk=real_first.pk).update(seq=3)
        prev = real_first.prev_hash
        for seq in (1, 2):
            forged = AuditEvent(
                org=real_first.org,
                seq=seq,
                occurred_at=real_first.occurred_at,
                actor_type=real_first.actor_type,
                actor_label="mallory@acme.test",
                action="access_key.created",
                prev_hash=prev,
            )
            forged.hash = event_hash(forged)
            forged.save(force_insert=True)
            prev = forged.hash
    problem = verify_fails("--org", "acme")
    assert problem == (
        f"FAIL org acme: events reordered: the event at #3 (id {real_first.pk}) was written as #1\n"
    )
    assert walked("acme") == 2


def test_it_finds_an_event_replaced_by_one_hashed_afresh(trail):
    # The forger recomputes the replacement's own hash, but cannot change what the next
    # event links to.
    assert_verifies_before_tampering()
    victim = acme_events()[2]
    victim.actor_label = "mallory@acme.test"
    victim.hash = event_hash(victim)
    with triggers_bypassed():
        AuditEvent.objects.filter(pk=victim.pk).update(
            actor_label=victim.actor_label, hash=victim.hash
        )
    problem = verify_fails("--org", "acme")
    assert "event #3 altered or inserted: event #4 links to a different predecessor" in problem
    assert walked("acme") == 3


def test_it_finds_the_last_event_replaced_by_one_hashed_afresh(trail):
    # No event links to the last one: the chain head, written with it, tells.
    assert_verifies_before_tampering()
    victim = acme_events()[-1]
    victim.actor_label = "mallory@acme.test"
    victim.hash = event_hash(victim)
    with triggers_bypassed():
        AuditEvent.objects.filter(pk=victim.pk).update(
            actor_label=victim.actor_label, hash=victim.hash
        )
    problem = verify_fails("--org", "acme")
    assert problem == "FAIL org acme: event #6 does not match the chain head\n"
    assert walked("acme") == 6


def test_it_finds_a_deleted_tail_after_a_checkpoint(trail):
    sign_checkpoints()
    assert_verifies_before_tampering()
    events = acme_events()
    kept = events[3]
    with triggers_bypassed():
        AuditEvent.objects.filter(pk__in=[e.pk for e in events[4:]]).delete()
    # The chain head is rolled back too, so only the signed checkpoint can tell.
    set_head("acme", kept.seq, kept.hash)
    problem = verify_fails("--org", "acme")
    checkpoint = AuditCheckpoint.objects.get(org__slug="acme")
    assert problem == (
        "FAIL org acme: events #5–#6 removed from the end: "
        f"the checkpoint signed {signed(checkpoint)} covers #6\n"
    )
    assert walked("acme") == 4


def test_it_finds_a_deleted_tail_from_the_chain_head_alone(trail):
    assert_verifies_before_tampering()
    events = acme_events()
    with triggers_bypassed():
        AuditEvent.objects.filter(pk=events[-1].pk).delete()
    assert verify_fails("--org", "acme") == (
        "FAIL org acme: event #6 removed from the end of the chain\n"
    )
    assert walked("acme") == 5
    with triggers_bypassed():
        AuditEvent.objects.filter(pk=events[-2].pk).delete()
    assert verify_fails("--org", "acme") == (
        "FAIL org acme: events #5–#6 removed from the end of the chain\n"
    )
    assert walked("acme") == 4


def test_it_finds_an_event_inserted_past_the_chain_head(trail):
    """A forger who appends a well-formed event but leaves the chain head alone."""
    assert_verifies_before_tampering()
    last = acme_events()[-1]
    forged = AuditEvent(
        org=last.org,
        seq=last.seq + 1,
        occurred_at=last.occurred_at,
        actor_type=last.actor_type,
        actor_label="mallory@acme.test",
        action="access_key.created",
        prev_hash=last.hash,
    )
    forged.hash = event_hash(forged)
    forged.save(force_insert=True)
    problem = verify_fails("--org", "acme")
    assert problem == f"FAIL org acme: event #{forged.seq} inserted past the end of the chain\n"
    assert walked("acme") == 7


def test_it_refuses_floats_in_details(owner):
    with pytest.raises(TypeError), transaction.atomic():
        record(Actor.for_user(owner.user), "test.float", org=owner.org, details={"n": 0.5})
    assert not AuditEvent.objects.filter(action="test.float").exists()


def rewrite_history(events: list[AuditEvent], start: int, **edit) -> None:
    """Edit one event and recompute every hash after it, as a careful forger would."""
    prev = events[start - 1].hash if start else events[0].prev_hash
    with triggers_bypassed():
        for event in events[start:]:
            if event is events[start]:
                for name, value in edit.items():
                    setattr(event, name, value)
            event.prev_hash = prev
            event.hash = event_hash(event)
            event.save()
            prev = event.hash
    set_head("acme", events[-1].seq, events[-1].hash)


def test_it_finds_history_rewritten_with_every_hash_recomputed(trail):
    sign_checkpoints()
    assert_verifies_before_tampering()
    events = acme_events()
    rewrite_history(events, 2, actor_label="mallory@acme.test")
    # The chain itself is consistent again: only the checkpoint can tell.
    assert all(event_hash(e) == e.hash for e in acme_events())
    problem = verify_fails("--org", "acme")
    checkpoint = AuditCheckpoint.objects.get(org__slug="acme")
    assert problem == (
        "FAIL org acme: event #6 or an earlier one was rewritten: it does not match "
        f"the checkpoint signed {signed(checkpoint)}\n"
    )
    assert walked("acme") == 6


def test_it_needs_a_checkpoint_to_find_rewritten_history(trail):
    # Without a checkpoint a consistent rewrite cannot be told from the truth: this is
    # why checkpoints are signed every hour.
    rewrite_history(acme_events(), 2, actor_label="mallory@acme.test")
    assert verify("--org", "acme") == "OK 6 events\n"


def forge_with_another_key(cp: AuditCheckpoint) -> None:
    forger = Ed25519PrivateKey.generate()
    message = signing.checkpoint_message(cp.org_id, cp.seq, cp.hash, cp.signed_at)
    AuditCheckpoint.objects.create(
        org_id=cp.org_id,
        seq=cp.seq,
        hash=cp.hash,
        signed_at=cp.signed_at,
        key_id="f" * 16,
        signature=forger.sign(message).hex(),
    )


def forge_under_the_real_key_id(cp: AuditCheckpoint) -> None:
    forger = Ed25519PrivateKey.generate()
    message = signing.checkpoint_message(cp.org_id, cp.seq, cp.hash, cp.signed_at)
    AuditCheckpoint.objects.create(
        org_id=cp.org_id,
        seq=cp.seq,
        hash=cp.hash,
        signed_at=cp.signed_at,
        key_id=cp.key_id,
        signature=forger.sign(message).hex(),
    )


def edit_the_signature(cp: AuditCheckpoint) -> None:
    flipped = ("0" if cp.signature[0] != "0" else "1") + cp.signature[1:]
    with triggers_bypassed():
        AuditCheckpoint.objects.filter(pk=cp.pk).update(signature=flipped)


def move_the_signed_time(cp: AuditCheckpoint) -> None:
    with triggers_bypassed():
        AuditCheckpoint.objects.filter(pk=cp.pk).update(signed_at=cp.signed_at - timedelta(days=1))


@pytest.mark.parametrize(
    "forge",
    [forge_with_another_key, forge_under_the_real_key_id, edit_the_signature, move_the_signed_time],
)
def test_it_finds_a_forged_checkpoint(trail, forge):
    sign_checkpoints()
    assert_verifies_before_tampering()
    acme = Organization.objects.get(slug="acme")
    forge(AuditCheckpoint.objects.get(org=acme))
    problem = verify_fails("--org", "acme")
    # The one checkpoint, or the real one and the forgery, signed at the same moment.
    (when,) = {signed(cp) for cp in AuditCheckpoint.objects.filter(org=acme)}
    assert problem == f"FAIL org acme: checkpoint at #6 signed {when} has an invalid signature\n"
    assert walked("acme") == 6


def test_it_finds_a_forged_checkpoint_over_rewritten_history(trail):
    # The forger rewrites history and replaces the checkpoint with one of their own,
    # naming our key but signed with theirs.
    sign_checkpoints()
    assert_verifies_before_tampering()
    real = AuditCheckpoint.objects.get(org__slug="acme")
    events = acme_events()
    rewrite_history(events, 0, details={"forged": True})
    with triggers_bypassed():
        AuditCheckpoint.objects.filter(pk=real.pk).delete()
    forge_under_the_real_key_id(
        AuditCheckpoint(
            org_id=real.org_id,
            seq=real.seq,
            hash=events[-1].hash,
            signed_at=timezone.now(),
            key_id=real.key_id,
        )
    )
    assert "checkpoint at #6 signed" in verify_fails("--org", "acme")


# Addresses whose text PostgreSQL writes in its own way: IPv6 in any spelling, IPv4-mapped,
# and the old IPv4-compatible form (::a.b.c.d), which PostgreSQL writes with a dotted quad.
ADDRESSES = [
    "192.0.2.1",
    "2001:DB8:0:0:0:0:0:1",
    "2001:db8::1:0:0:1",
    "::1",
    "::",
    "fe80::1%eth0",
    "::ffff:192.0.2.1",
    "::FFFF:c000:0201",
    "::ffff:0:c000:201",
    "::192.0.2.1",
    "::1:2",
    "::ffff:1:2",
    "64:ff9b::192.0.2.1",
]


def test_it_verifies_events_with_unicode_ipv6_and_nested_details(org):
    records = []
    with transaction.atomic():
        for n, ip in enumerate(ADDRESSES):
            actor = Actor(
                type="user",
                label=f"Zoë 🦄 <zoë@bücher.example> #{n}\x00",
                user_id=None,
                ip=ip,
                user_agent='Mozilla/5.0 (X11) ✓ ünïcödé \x00 \u2028 "quoted" \\ back',
                request_id=f"req-{n:08d}",
            )
            details = {
                "name": "ключ-🔑",
                "nested": {"list": [1, -2, 10**15, None, True, False, "", {"deep": ["ü", []]}]},
                "big": 2**62,
                "zero\x00key": "a\x00b",
                "empty": {},
                "quote": "\"'\\/<>&",
            }
            records.append(record(actor, "test.unicode", org=org, details=details))
    for written in records:
        read = AuditEvent.objects.get(pk=written.pk)
        # The hash computed at insert matches the one recomputed from what the database returns.
        assert read.source_ip == written.source_ip
        assert event_hash(read) == written.hash == read.hash
    stored = {e.source_ip for e in AuditEvent.objects.filter(org=org)}
    assert None not in stored
    assert verify("--org", "acme") == f"OK {len(ADDRESSES)} events\n"


def test_it_stores_every_ipv6_address_as_postgresql_writes_it(org):
    # Every combination of a few telling 16-bit groups in the last three positions,
    # behind zeros and behind a prefix: each must round-trip to the same text.
    groups = [0, 1, 0xFFFF, 0x0102]
    addresses = []
    for prefix, tail in itertools.product(
        [0, 0x20010DB8 << 96], itertools.product(groups, repeat=3)
    ):
        value = prefix | (tail[0] << 32) | (tail[1] << 16) | tail[2]
        addresses.append(str(ipaddress.IPv6Address(value)))
    with transaction.atomic():
        written = [
            record(Actor("user", "ipv6", ip=ip), "test.ipv6", org=org).source_ip for ip in addresses
        ]
    read = list(
        AuditEvent.objects.filter(org=org).order_by("seq").values_list("source_ip", flat=True)
    )
    assert read == written
    assert verify_chain(org.pk).problem is None


# 3. Appends to one org are serialized.

THREADS = 8
EVENTS_PER_THREAD = 4


@pytest.mark.django_db(transaction=True)
def test_it_serializes_concurrent_appends_to_one_org():
    org = Organization.objects.create(slug="acme", name="Acme")
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def append_events(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(EVENTS_PER_THREAD):
                with transaction.atomic():
                    record(
                        Actor.system(f"thread {n}"), "test.concurrent", org=org, details={"i": i}
                    )
                    # Hold the transaction open a moment, so appends truly overlap.
                    time.sleep(0.005)
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=append_events, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not [t for t in threads if t.is_alive()]
    assert errors == []
    total = THREADS * EVENTS_PER_THREAD
    seqs = sorted(AuditEvent.objects.filter(org=org).values_list("seq", flat=True))
    assert seqs == list(range(1, total + 1))
    assert verify_chain(org.pk).problem is None
    assert verify_chain(org.pk).events == total
    head = AuditChainHead.objects.get(chain=chain_name(org.pk))
    assert (head.seq, head.hash) == (total, AuditEvent.objects.get(org=org, seq=total).hash)


# 4. Checkpoints.


def test_it_signs_a_checkpoint_for_each_chain_that_moved(trail):
    chains = AuditChainHead.objects.filter(seq__gt=0).count()
    assert chains == 3  # acme, globex, and sign-ins outside any org
    assert sign_checkpoints() == chains
    assert sign_checkpoints() == 0
    assert AuditCheckpoint.objects.count() == chains
    new_key(trail["member"], "later")
    assert sign_checkpoints() == 1
    latest = AuditCheckpoint.objects.order_by("-id").first()
    assert (latest.org.slug, latest.seq) == ("acme", 7)
    assert latest.hash == acme_events()[-1].hash
    assert verify() == f"OK {AuditEvent.objects.count()} events\n"


def test_it_schedules_checkpoints_every_hour():
    from excloud_portal.celery import app

    schedule = {entry["task"]: entry["schedule"] for entry in app.conf.beat_schedule.values()}
    assert schedule["audit.tasks.sign_checkpoints"] == settings.AUDIT_CHECKPOINT_INTERVAL
    if not os.environ.get("EXCLOUD_AUDIT_CHECKPOINT_SECONDS"):
        assert settings.AUDIT_CHECKPOINT_INTERVAL == 3600
    # What a worker does as it starts (autodiscovery), whether or not a test imported the
    # tasks module before this one.
    app.loader.import_default_modules()
    assert "audit.tasks.sign_checkpoints" in app.tasks


def database_url() -> str:
    s = connection.settings_dict
    password = f":{s['PASSWORD']}" if s["PASSWORD"] else ""
    return f"postgres://{s['USER']}{password}@{s['HOST']}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.mark.stack
@pytest.mark.django_db(transaction=True)
def test_it_signs_checkpoints_in_a_celery_worker(tmp_path):
    from audit.tasks import sign_checkpoints as task
    from excloud_portal.celery import app

    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        pytest.skip("REDIS_URL is not set: this test needs the Redis broker (make test sets it)")
    org = Organization.objects.create(slug="acme", name="Acme")
    with transaction.atomic():
        for i in range(3):
            last = record(Actor.system(), "test.checkpoint", org=org, details={"i": i})
    app.control.purge()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        # The worker signs with the key this test verifies with.
        "EXCLOUD_AUDIT_SIGNING_KEY": settings.EXCLOUD_AUDIT_SIGNING_KEY,
    }
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [
                CELERY,
                "-A",
                "excloud_portal",
                "worker",
                "--concurrency=1",
                "--pool=solo",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=INFO",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        task.delay()
        deadline = time.monotonic() + WORKER_TIMEOUT
        while not AuditCheckpoint.objects.filter(org=org).exists():
            assert worker.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.2)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    checkpoint = AuditCheckpoint.objects.get(org=org)
    assert (checkpoint.seq, checkpoint.hash) == (3, last.hash)
    assert verify_chain(org.pk).problem is None
    assert "audit.tasks.sign_checkpoints" in log_path.read_text(errors="replace")
