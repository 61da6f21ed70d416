"""Walking audit chains and their signed checkpoints to find tampering.

For each chain the walk checks, event by event in sequence order, that sequence numbers
run 1, 2, 3, ... without gaps, that each event links to the previous event's hash, and
that each event's own hash matches its content. Then the chain's end is compared with
its head row and every signed checkpoint, which catches a removed tail and history that
was rewritten with freshly computed hashes.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import signing
from .chain import chain_name, event_hash
from .checkpoints import checkpoints_of
from .models import GENESIS_HASH, AuditChainHead, AuditEvent

CHUNK = 5000


@dataclass(frozen=True)
class ChainResult:
    chain: str
    events: int
    problem: str | None = None


def _range(first: int, last: int) -> str:
    return f"event #{first}" if first == last else f"events #{first}–#{last}"


def _classify_mismatch(events, event: AuditEvent) -> str:
    own_hash_ok = event_hash(event) == event.hash
    if own_hash_ok:
        # The event is intact but links elsewhere: its predecessor was replaced.
        return (
            f"event #{event.seq - 1} altered or inserted: event #{event.seq} "
            "links to a different predecessor"
        )
    written_as = _written_as(events, event)
    if written_as is not None:
        return (
            f"events reordered: the event at #{event.seq} (id {event.pk}) "
            f"was written as #{written_as}"
        )
    return f"event #{event.seq} (id {event.pk}) altered: its content no longer matches its hash"


def _written_as(events, event: AuditEvent) -> int | None:
    """The other seq an intact but moved event was hashed at, judged by its neighbours.

    One after its predecessor if the predecessor stayed put. When two neighbours swap
    places the predecessor moves too, so its successor and its own neighbouring positions
    are tried as well.
    """
    candidates = [event.seq - 1, event.seq + 1]
    if event.prev_hash == GENESIS_HASH:
        candidates.append(1)
    predecessor = events.filter(hash=event.prev_hash).only("seq").first()
    if predecessor is not None:
        candidates.append(predecessor.seq + 1)
    successor = events.filter(prev_hash=event.hash).only("seq").first()
    if successor is not None:
        candidates.append(successor.seq - 1)
    for seq in candidates:
        if seq != event.seq and event_hash(event, seq=seq) == event.hash:
            return seq
    return None


def verify_chain(org_id: int | None) -> ChainResult:
    name = chain_name(org_id)
    events = (
        AuditEvent.objects.filter(org_id=org_id)
        if org_id is not None
        else AuditEvent.objects.filter(org__isnull=True)
    )
    checkpoints = list(checkpoints_of(org_id))
    wanted = {cp.seq for cp in checkpoints}
    hashes_at: dict[int, str] = {}

    expected, prev = 1, GENESIS_HASH
    for event in events.order_by("seq").iterator(chunk_size=CHUNK):
        if event.seq != expected:
            return ChainResult(
                name,
                expected - 1,
                f"{_range(expected, event.seq - 1)} removed: the chain jumps from "
                f"#{expected - 1} to #{event.seq}",
            )
        if event.prev_hash != prev or event_hash(event) != event.hash:
            return ChainResult(name, expected - 1, _classify_mismatch(events, event))
        if event.seq in wanted:
            hashes_at[event.seq] = event.hash
        prev = event.hash
        expected += 1
    last = expected - 1

    head = AuditChainHead.objects.filter(chain=name).first()
    if head is not None and head.seq > last:
        return ChainResult(
            name, last, f"{_range(last + 1, head.seq)} removed from the end of the chain"
        )
    if head is not None and head.seq < last:
        # Appends move the head in the same transaction; rows past it were written around
        # record(), straight into the table.
        return ChainResult(
            name, last, f"{_range(head.seq + 1, last)} inserted past the end of the chain"
        )
    if head is not None and head.seq == last and head.hash != prev:
        return ChainResult(name, last, f"event #{last} does not match the chain head")

    for cp in checkpoints:
        message = signing.checkpoint_message(org_id, cp.seq, cp.hash, cp.signed_at)
        when = f"{cp.signed_at:%Y-%m-%d %H:%M:%S} UTC"
        if not signing.verify(cp.key_id, cp.signature, message):
            return ChainResult(
                name, last, f"checkpoint at #{cp.seq} signed {when} has an invalid signature"
            )
        if cp.seq > last:
            return ChainResult(
                name,
                last,
                f"{_range(last + 1, cp.seq)} removed from the end: "
                f"the checkpoint signed {when} covers #{cp.seq}",
            )
        if hashes_at.get(cp.seq) != cp.hash:
            return ChainResult(
                name,
                last,
                f"event #{cp.seq} or an earlier one was rewritten: it does not match "
                f"the checkpoint signed {when}",
            )
    return ChainResult(name, last)


def verify_all(org_ids: list[int | None]) -> list[ChainResult]:
    return [verify_chain(org_id) for org_id in org_ids]
