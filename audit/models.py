from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Upper
from django.utils import timezone

GENESIS_HASH = "0" * 64


class ActorType(models.TextChoices):
    USER = "user", "User"
    API_TOKEN = "api_token", "API token"
    ACCESS_KEY = "access_key", "Access key"
    SYSTEM = "system", "System"


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def for_org(self, org) -> AuditEventQuerySet:
        return self.filter(org=org)

    def newest_first(self) -> AuditEventQuerySet:
        return self.order_by("-seq")


class AuditEvent(models.Model):
    """One recorded action. Rows are append-only: database triggers refuse UPDATE and DELETE.

    Events form one hash chain per organisation (and one for events outside any
    organisation, such as failed sign-ins): ``seq`` counts from 1, ``prev_hash`` is the
    previous event's ``hash``, and ``hash`` is the SHA-256 of this event's canonical form.
    """

    org = models.ForeignKey(
        "accounts.Organization", models.PROTECT, null=True, blank=True, related_name="+"
    )
    seq = models.BigIntegerField()
    occurred_at = models.DateTimeField(default=timezone.now)
    actor_type = models.CharField(max_length=10, choices=ActorType.choices)
    # No database constraint: the trail keeps the user's ID after the user is deleted,
    # and deleting a user must not try to rewrite audit rows.
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
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
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["org", "seq"],
                condition=models.Q(org__isnull=False),
                name="audit_org_seq_unique",
            ),
            models.UniqueConstraint(
                fields=["seq"],
                condition=models.Q(org__isnull=True),
                name="audit_global_seq_unique",
            ),
        ]
        indexes = [
            models.Index(fields=["org", "action", "-seq"], name="audit_org_action_idx"),
            models.Index(fields=["org", "actor_user", "-seq"], name="audit_org_actor_idx"),
            models.Index(
                fields=["org", "target_type", "target_id", "-seq"], name="audit_org_target_idx"
            ),
            models.Index(fields=["org", "occurred_at"], name="audit_org_time_idx"),
            # The audit page's actor filter: one actor's events in seq order, whatever the
            # case typed. (Its free-text search has trigram indexes; see migration 0003.)
            models.Index(
                models.F("org"),
                Upper("actor_label"),
                models.F("seq").desc(),
                name="audit_org_actor_label_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.occurred_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action}"


class AuditChainHead(models.Model):
    """The last sequence number and hash of one chain; locking it serializes appends."""

    chain = models.CharField(max_length=32, primary_key=True)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self) -> str:
        return f"{self.chain} at #{self.seq}"


class AuditCheckpoint(models.Model):
    """A signed statement that a chain reached (seq, hash) at a time. Append-only too."""

    org = models.ForeignKey(
        "accounts.Organization", models.PROTECT, null=True, blank=True, related_name="+"
    )
    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    signed_at = models.DateTimeField(default=timezone.now)
    key_id = models.CharField(max_length=16)
    signature = models.CharField(max_length=128)

    class Meta:
        indexes = [models.Index(fields=["org", "-seq"], name="audit_checkpoint_org_idx")]

    def __str__(self) -> str:
        return f"checkpoint {self.org_id or 'global'} #{self.seq}"
