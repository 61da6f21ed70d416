"""The hash chain: the canonical form of an event and appending to a chain.

The canonical form is JSON with sorted keys and no whitespace, over every field a reader
relies on, including the previous event's hash. Changing any of them, or the order of
events, changes the hashes from there on.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from django.utils import timezone

from .models import GENESIS_HASH, AuditChainHead, AuditEvent

CANONICAL_VERSION = 1
GLOBAL_CHAIN = "global"


def chain_name(org_id: int | None) -> str:
    return f"org:{org_id}" if org_id is not None else GLOBAL_CHAIN


def canonical(event: AuditEvent, seq: int | None = None) -> bytes:
    """The bytes that ``event.hash`` is the SHA-256 of (optionally as if at another seq)."""
    return json.dumps(
        {
            "v": CANONICAL_VERSION,
            "org": event.org_id,
            "seq": event.seq if seq is None else seq,
            "prev": event.prev_hash,
            "time": event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "actor": {
                "type": event.actor_type,
                "user": event.actor_user_id,
                "label": event.actor_label,
            },
            "action": event.action,
            "target": {"type": event.target_type, "id": event.target_id},
            "ip": event.source_ip,
            "ua": event.user_agent,
            "request": event.request_id,
            "details": event.details,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def event_hash(event: AuditEvent, seq: int | None = None) -> str:
    return hashlib.sha256(canonical(event, seq)).hexdigest()


def lock_head(org_id: int | None) -> AuditChainHead:
    """Lock the chain's head row for the rest of the transaction, creating it if new."""
    name = chain_name(org_id)
    head = AuditChainHead.objects.select_for_update().filter(chain=name).first()
    if head is None:
        AuditChainHead.objects.bulk_create(
            [AuditChainHead(chain=name, seq=0, hash=GENESIS_HASH)], ignore_conflicts=True
        )
        head = AuditChainHead.objects.select_for_update().get(chain=name)
    return head


def append(event: AuditEvent, at: datetime | None = None) -> AuditEvent:
    """Give the event the next seq of its chain, link and hash it, and insert it.

    The event is stamped now, under the chain's lock, so time order within a chain follows
    seq order; ``at`` overrides that for tests and benchmarks that need old events.
    """
    head = lock_head(event.org_id)
    event.occurred_at = at or timezone.now()
    event.seq = head.seq + 1
    event.prev_hash = head.hash
    event.hash = event_hash(event)
    event.save(force_insert=True)
    head.seq, head.hash = event.seq, event.hash
    head.save(update_fields=["seq", "hash"])
    return event
