"""The only code that changes Bucket records. Each change and its audit event share one
transaction, and every name written satisfies S3's bucket naming rules.

A bucket is claimed for an org before CreateBucket is forwarded to the object store, so
two orgs racing for one name cannot both get it, and the claim is released if the store
refuses. A bucket that exists in the store without an owner is never handed over by
CreateBucket; an operator assigns it with ``manage.py adopt_bucket``.
"""

from __future__ import annotations

from enum import StrEnum

from django.db import IntegrityError, transaction

from accounts.models import Organization
from audit.models import AuditAction, TargetType
from audit.trail import Actor, record
from keys import revocation
from keys.models import AccessKey

from .models import Bucket
from .names import bucket_name_problem


class Claim(StrEnum):
    CLAIMED = "claimed"  # the name is now this org's
    OWNED = "owned"  # the org held it already
    TAKEN = "taken"  # another org holds it


class InvalidBucketName(ValueError):
    """A name that breaks S3's bucket naming rules; never written."""


def _check_name(name: str) -> None:
    problem = bucket_name_problem(name)
    if problem is not None:
        raise InvalidBucketName(f"{name!r}: {problem}")


def claim_bucket(key: AccessKey, name: str, actor: Actor) -> Claim:
    """Claim bucket ``name`` for the key's org before the store is asked to create it."""
    _check_name(name)
    held = _held(key, name)
    if held is not None:
        return held
    try:
        with transaction.atomic():
            # Gateways cache only owned names, so claiming one needs no announcement.
            Bucket.objects.create(name=name, org_id=key.org_id, created_by_key=key)
            record(
                actor,
                AuditAction.BUCKET_CREATED,
                org=key.org,
                target_type=TargetType.BUCKET,
                target_id=name,
                details={"name": name, "access_key": key.id},
            )
    except IntegrityError:
        # Another request claimed the name between the look and the insert.
        return _held(key, name) or Claim.TAKEN
    return Claim.CLAIMED


def _held(key: AccessKey, name: str) -> Claim | None:
    """OWNED or TAKEN when some org holds ``name``, None when none does."""
    holder = Bucket.objects.filter(name=name).values_list("org_id", flat=True).first()
    if holder is None:
        return None
    return Claim.OWNED if holder == key.org_id else Claim.TAKEN


def release_bucket_claim(key: AccessKey, name: str, actor: Actor, status: int) -> bool:
    """Give back a claim the object store refused to create (it answered ``status``)."""
    rows = Bucket.objects.filter(name=name, org_id=key.org_id, created_by_key=key)
    return _forget(key, name, actor, rows, reason="creation_refused", status=status)


def bucket_deleted(key: AccessKey, name: str, actor: Actor) -> bool:
    """Forget bucket ``name`` of the key's org; False when the org held no such bucket."""
    return _forget(key, name, actor, Bucket.objects.filter(name=name, org_id=key.org_id))


def _forget(key: AccessKey, name: str, actor: Actor, rows, **details: object) -> bool:
    with transaction.atomic():
        deleted, _ = rows.delete()
        if not deleted:
            return False
        # Gateways cache bucket owners: the name may go to another org next.
        revocation.announce_change(buckets=[name])
        record(
            actor,
            AuditAction.BUCKET_DELETED,
            org=key.org,
            target_type=TargetType.BUCKET,
            target_id=name,
            details={"name": name, "access_key": key.id, **details},
        )
    return True


def set_bucket_cors(key: AccessKey, name: str, rules: list | None, actor: Actor) -> bool:
    """Store (or, with None, remove) the CORS rules of the key's org's bucket ``name``;
    False when the org holds no such bucket."""
    with transaction.atomic():
        changed = Bucket.objects.filter(name=name, org_id=key.org_id).update(cors=rules)
        if not changed:
            return False
        record(
            actor,
            AuditAction.BUCKET_CORS_CHANGED,
            org=key.org,
            target_type=TargetType.BUCKET,
            target_id=name,
            details={"name": name, "access_key": key.id, "rules": len(rules or [])},
        )
    return True


def adopt_bucket(org, name: str, actor: Actor) -> Bucket:
    """Assign a bucket that already exists in the store to ``org`` (an operator's act).

    Raises InvalidBucketName, or ValueError when some org already holds the name.
    """
    _check_name(name)
    try:
        with transaction.atomic():
            bucket = Bucket.objects.create(name=name, org=org)
            record(
                actor,
                AuditAction.BUCKET_ADOPTED,
                org=org,
                target_type=TargetType.BUCKET,
                target_id=name,
                details={"name": name},
            )
    except IntegrityError:
        holder = Bucket.objects.filter(name=name).select_related("org").first()
        raise ValueError(
            f"bucket {name!r} already belongs to {holder.org.slug if holder else 'an org'}"
        ) from None
    return bucket


def remove_invalid_buckets(actor: Actor) -> int:
    """Delete every Bucket row whose name breaks the naming rules, one audit event each in
    the org that held it; return how many went. Such rows predate the rules' enforcement:
    their names could stand for another org's bucket once the store read them.

    Migration gateway.0003 runs this: it reads only the columns that migration knows, so
    later columns of Bucket do not break it on an older database.
    """
    removed = 0
    rows = Bucket.objects.order_by("pk").values_list("pk", "name", "org_id")
    for pk, name, org_id in rows:
        problem = bucket_name_problem(name)
        if problem is None:
            continue
        with transaction.atomic():
            deleted, _ = Bucket.objects.filter(pk=pk).delete()
            if not deleted:
                continue
            # Migration gateway.0003 runs this before keys.CacheChange exists; gateways
            # still see the Redis bump, and restart with the deploy that migrates.
            revocation.announce_change(buckets=[name], recorded=False)
            record(
                actor,
                AuditAction.BUCKET_DELETED,
                org=Organization(pk=org_id),
                target_type=TargetType.BUCKET,
                target_id=name,
                details={"name": name, "reason": "invalid_name", "problem": problem},
            )
        removed += 1
    return removed
