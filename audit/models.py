from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ActorType(models.TextChoices):
    USER = "user", "User"
    SYSTEM = "system", "System"


class AuditEvent(models.Model):
    org = models.ForeignKey(
        "accounts.Organization", models.PROTECT, null=True, blank=True, related_name="+"
    )
    occurred_at = models.DateTimeField(default=timezone.now)
    actor_type = models.CharField(max_length=10, choices=ActorType.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The label is kept as it was at the time, so the trail reads the same after renames.
    actor_label = models.CharField(max_length=254)
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=32, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["org", "-occurred_at", "-id"], name="audit_org_time_idx"),
            models.Index(fields=["target_type", "target_id"], name="audit_target_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.occurred_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action}"
