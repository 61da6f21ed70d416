"""An org's key policy: reading it (with defaults) and changing it, audited."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db import transaction

from accounts.models import Membership
from audit.models import AuditAction, TargetType
from audit.trail import Actor, record

from .models import KeyPolicy

POLICY_FIELDS = ("inactivity_days", "max_age_days", "warning_days", "warn_admins")
MAX_DAYS = 3650


def policy_for(org) -> KeyPolicy:
    """The org's saved policy, or an unsaved one holding the defaults."""
    return KeyPolicy.objects.filter(org=org).first() or KeyPolicy(org=org)


def update_policy(membership: Membership, actor: Actor, **values) -> KeyPolicy:
    """Save the org's key policy; one ``org.key_policy_changed`` event lists what changed.

    Saving the values it already has changes nothing and records nothing.
    """
    if not membership.is_manager:
        raise PermissionDenied("Only owners and admins can change the key policy.")
    unknown = set(values) - set(POLICY_FIELDS)
    if unknown:
        raise TypeError(f"not policy fields: {sorted(unknown)}")
    org = membership.org
    with transaction.atomic():
        policy, _ = KeyPolicy.objects.select_for_update().get_or_create(org=org)
        changes = {
            name: {"from": getattr(policy, name), "to": value}
            for name, value in values.items()
            if getattr(policy, name) != value
        }
        if not changes:
            return policy
        for name, value in values.items():
            setattr(policy, name, value)
        policy.save()
        record(
            actor,
            AuditAction.ORG_KEY_POLICY_CHANGED,
            org=org,
            target_type=TargetType.ORG,
            target_id=org.slug,
            details={"changes": changes},
        )
    return policy
