"""The only code that changes Bucket records: the gateway calls these after the object
store has created or deleted the bucket. Each change and its audit event share one
transaction."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from audit.trail import Actor, record
from keys import revocation
from keys.models import AccessKey

from .models import Bucket


def bucket_created(key: AccessKey, name: str, actor: Actor) -> Bucket | None:
    """Record that ``key`` created bucket ``name``; None when another org already holds it."""
    try:
        with transaction.atomic():
            bucket = Bucket.objects.create(name=name, org_id=key.org_id, created_by_key=key)
            record(
                actor,
                "bucket.created",
                org=key.org,
                target_type="bucket",
                target_id=name,
                details={"name": name, "access_key": key.id},
            )
    except IntegrityError:
        return None
    return bucket


def bucket_deleted(key: AccessKey, name: str, actor: Actor) -> bool:
    """Forget bucket ``name`` of the key's org; False when the org held no such bucket."""
    with transaction.atomic():
        deleted, _ = Bucket.objects.filter(name=name, org_id=key.org_id).delete()
        if not deleted:
            return False
        # Gateways cache bucket owners: the name may go to another org next.
        revocation.announce_change()
        record(
            actor,
            "bucket.deleted",
            org=key.org,
            target_type="bucket",
            target_id=name,
            details={"name": name, "access_key": key.id},
        )
    return True
