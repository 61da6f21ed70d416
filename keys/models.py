from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

NAME_MAX_LENGTH = 64


class KeyStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    INACTIVE = "inactive", "Inactive"
    REVOKED = "revoked", "Revoked"
    EXPIRED = "expired", "Expired"


LIVE_STATUSES = (KeyStatus.ACTIVE, KeyStatus.INACTIVE)
RETIRED_STATUSES = (KeyStatus.REVOKED, KeyStatus.EXPIRED)


class CreatedVia(models.TextChoices):
    WEB = "web", "Dashboard"
    API = "api", "API"
    ROTATION = "rotation", "Rotation"


class AccessKeyQuerySet(models.QuerySet["AccessKey"]):
    def for_org(self, org) -> AccessKeyQuerySet:
        return self.filter(org=org)

    def live(self) -> AccessKeyQuerySet:
        return self.filter(status__in=LIVE_STATUSES)

    def retired(self) -> AccessKeyQuerySet:
        return self.filter(status__in=RETIRED_STATUSES)

    def matching(self, text: str) -> AccessKeyQuerySet:
        """Keys whose name contains the text or whose ID starts with it."""
        text = text.strip()
        if not text:
            return self
        return self.filter(models.Q(name__icontains=text) | models.Q(id__istartswith=text))

    def newest_first(self) -> AccessKeyQuerySet:
        return self.order_by("-created_at", "-id")

    def for_table(self) -> AccessKeyQuerySet:
        return self.select_related("created_by").defer("secret_sealed")


class AccessKey(models.Model):
    id = models.CharField(primary_key=True, max_length=20)
    org = models.ForeignKey("accounts.Organization", models.PROTECT, related_name="access_keys")
    name = models.CharField(max_length=NAME_MAX_LENGTH)
    # The secret, sealed: nonce + AES-256-GCM ciphertext under the named key-encryption key.
    secret_sealed = models.BinaryField()
    secret_kek_id = models.CharField(max_length=16)

    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_via = models.CharField(max_length=10, choices=CreatedVia.choices)
    # A random token from the create form: submitting the same form twice makes one key.
    # NULL, not "", for keys made without a form, so the unique constraint ignores them.
    creation_token = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001

    status = models.CharField(max_length=10, choices=KeyStatus.choices, default=KeyStatus.ACTIVE)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    status_changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status_reason = models.CharField(max_length=200, blank=True)

    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)
    last_used_operation = models.CharField(max_length=64, blank=True)
    last_used_bucket = models.CharField(max_length=63, blank=True)

    objects = AccessKeyQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                "org",
                Lower("name"),
                condition=models.Q(status__in=LIVE_STATUSES),
                name="accesskey_live_name_unique",
                violation_error_message="A live key with this name already exists.",
            ),
            models.UniqueConstraint(
                fields=["org", "creation_token"], name="accesskey_creation_token_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=KeyStatus.values), name="accesskey_status_valid"
            ),
        ]
        # The keys page reads one tab of one org newest first; a partial index per tab
        # serves it in order, so a page costs the same whatever the org's size.
        indexes = [
            models.Index(
                fields=["org", "-created_at", "-id"],
                condition=models.Q(status__in=LIVE_STATUSES),
                name="accesskey_live_list_idx",
            ),
            models.Index(
                fields=["org", "-created_at", "-id"],
                condition=models.Q(status__in=RETIRED_STATUSES),
                name="accesskey_retired_list_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"

    @property
    def is_live(self) -> bool:
        return self.status in LIVE_STATUSES
