"""Signed checkpoints: the signed (seq, hash) of each chain that moved since the last one.

A checkpoint fixes the chain up to that point. Rewriting history before it (even with
every hash recomputed) or cutting events off the end shows up in ``audit_verify``.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from . import signing
from .models import AuditChainHead, AuditCheckpoint


def sign_checkpoints() -> int:
    """Sign a checkpoint for every chain with events since its last checkpoint."""
    signed = 0
    heads = AuditChainHead.objects.filter(seq__gt=0).order_by("chain")
    for head in heads:
        with transaction.atomic():
            head = AuditChainHead.objects.select_for_update().get(pk=head.pk)
            org_id = _org_id(head.chain)
            last = checkpoints_of(org_id).first()
            if last is not None and last.seq >= head.seq:
                continue
            signed_at = timezone.now()
            key_id, signature = signing.sign(
                signing.checkpoint_message(org_id, head.seq, head.hash, signed_at)
            )
            AuditCheckpoint.objects.create(
                org_id=org_id,
                seq=head.seq,
                hash=head.hash,
                signed_at=signed_at,
                key_id=key_id,
                signature=signature,
            )
            signed += 1
    return signed


def _org_id(chain: str) -> int | None:
    return int(chain.removeprefix("org:")) if chain.startswith("org:") else None


def checkpoints_of(org_id: int | None):
    """The chain's checkpoints, newest first."""
    qs = (
        AuditCheckpoint.objects.filter(org_id=org_id)
        if org_id
        else AuditCheckpoint.objects.filter(org__isnull=True)
    )
    return qs.order_by("-seq", "-id")
