from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from .scope import Scope

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

    def older_than(self, created_at: datetime, key_id: str) -> AccessKeyQuerySet:
        """Keys that come after this one newest first: the keyset the list pages by."""
        return self.filter(
            models.Q(created_at__lt=created_at) | models.Q(created_at=created_at, id__lt=key_id)
        )

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
    # The key this one replaced by rotation; a key is replaced at most once.
    rotated_from = models.OneToOneField(
        "self", models.SET_NULL, null=True, blank=True, related_name="replacement"
    )
    # What the key may do, where and from where (keys/scope.py); {} is the default scope:
    # admin on all of the org's buckets, from any address. Narrowed only, never widened.
    scope = models.JSONField(default=dict, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)
    last_used_operation = models.CharField(max_length=64, blank=True)
    last_used_bucket = models.CharField(max_length=63, blank=True)
    last_used_user_agent = models.CharField(max_length=200, blank=True)

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

    @property
    def key_scope(self) -> Scope:
        return Scope.from_json(self.scope)


# Defaults for an org that never saved a policy. Zero days means "off".
DEFAULT_INACTIVITY_DAYS = 90
DEFAULT_MAX_AGE_DAYS = 0
DEFAULT_WARNING_DAYS = 7


class ExpiryReason(models.TextChoices):
    STALE = "stale", "Unused for too long"
    PAST_EXPIRY = "past_expiry", "Past its expiry date"
    TOO_OLD = "too_old", "Older than the maximum key age"


class KeyPolicy(models.Model):
    """An org's rules for expiring keys; an org without a row uses the defaults above."""

    org = models.OneToOneField(
        "accounts.Organization", models.CASCADE, primary_key=True, related_name="key_policy"
    )
    # A key unused for this many days is expired; a never-used key counts from creation.
    inactivity_days = models.PositiveIntegerField(default=DEFAULT_INACTIVITY_DAYS)
    max_age_days = models.PositiveIntegerField(default=DEFAULT_MAX_AGE_DAYS)
    warning_days = models.PositiveIntegerField(default=DEFAULT_WARNING_DAYS)
    # The key's creator is always warned; the org's owners and admins too unless this is off.
    warn_admins = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"key policy of {self.org_id}"


class KeyWarning(models.Model):
    """One warning that a key is about to expire. The unique constraint is what makes a
    second run of the warning task (or two at once) send nothing more for the same window."""

    key = models.ForeignKey(AccessKey, models.CASCADE, related_name="warnings")
    reason = models.CharField(max_length=12, choices=ExpiryReason.choices)
    due_at = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["key", "reason", "due_at"], name="keywarning_key_reason_due_unique"
            )
        ]

    def __str__(self) -> str:
        return f"warning for {self.key_id}: {self.reason} at {self.due_at}"


class KeyUsageQuerySet(models.QuerySet["KeyUsage"]):
    def recent(self, key, hours: int) -> KeyUsageQuerySet:
        since = timezone.now() - timedelta(hours=hours)
        return self.filter(access_key=key, hour__gte=since).order_by("-hour")


class KeyUsage(models.Model):
    """What one access key did in one hour, as the gateways counted it.

    Gateways count in memory and send their totals through Celery about once a minute
    (gateway.tasks.record_usage adds them up here), so no S3 request writes to the
    database. ``denied`` counts requests made with the key while it was revoked, inactive
    or expired; ``errors`` counts answers of 400 and above. The rows live in the keys app,
    whose pages show them: the gateway writes them, and keys imports nothing of the gateway.
    """

    access_key = models.ForeignKey("keys.AccessKey", models.CASCADE, related_name="usage")
    hour = models.DateTimeField()
    requests = models.BigIntegerField(default=0)
    bytes_in = models.BigIntegerField(default=0)
    bytes_out = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    denied = models.BigIntegerField(default=0)

    objects = KeyUsageQuerySet.as_manager()

    class Meta:
        # The table keeps the name it had when the model lived in the gateway app.
        db_table = "gateway_keyusage"
        constraints = [
            models.UniqueConstraint(fields=["access_key", "hour"], name="keyusage_key_hour_unique")
        ]
        # The rollup (keys.rollups) finds the rows older than its cutoff by hour alone.
        indexes = [models.Index(fields=["hour"], name="keyusage_hour_idx")]

    def __str__(self) -> str:
        return f"{self.access_key_id} {self.hour:%Y-%m-%d %H}:00"


class KeyUsageDay(models.Model):
    """What one access key did in one UTC day: the hourly rows (KeyUsage) of days older
    than two days, added up by keys.rollups, so a year of traffic is 365 rows per key.

    A day can have both a daily row and hourly rows (an hourly total that arrived late,
    after its day was rolled up, until the next rollup); the readers in keys.usage add
    both, so a day counts the same before, during and after its rollup.
    """

    access_key = models.ForeignKey("keys.AccessKey", models.CASCADE, related_name="daily_usage")
    day = models.DateField()
    requests = models.BigIntegerField(default=0)
    bytes_in = models.BigIntegerField(default=0)
    bytes_out = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    denied = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["access_key", "day"], name="keyusageday_key_day_unique")
        ]
        indexes = [models.Index(fields=["day"], name="keyusageday_day_idx")]

    def __str__(self) -> str:
        return f"{self.access_key_id} {self.day:%Y-%m-%d}"


class DeniedUseAlert(models.Model):
    """The day's alert to an org's owners and admins that a key which is revoked,
    inactive or expired is still being used. The unique constraint is what makes a second
    sweep (or two at once) send nothing more for the same key that day."""

    key = models.ForeignKey(AccessKey, models.CASCADE, related_name="+")
    day = models.DateField()
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "day"], name="deniedusealert_key_day_unique")
        ]

    def __str__(self) -> str:
        return f"denied-use alert for {self.key_id} on {self.day:%Y-%m-%d}"


class KeyBucketDay(models.Model):
    """What one access key did in one bucket in one UTC day: requests let in, and bytes
    in and out, as the gateways counted them. An empty ``bucket`` gathers what a gateway
    could not keep apart under a flood of distinct names."""

    access_key = models.ForeignKey("keys.AccessKey", models.CASCADE, related_name="+")
    bucket = models.CharField(max_length=63, blank=True)
    day = models.DateField()
    requests = models.BigIntegerField(default=0)
    bytes_in = models.BigIntegerField(default=0)
    bytes_out = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["access_key", "bucket", "day"], name="keybucketday_unique"
            )
        ]
        # The buckets page reads an org's buckets' last 30 days by name.
        indexes = [models.Index(fields=["bucket", "day"], name="keybucketday_bucket_day_idx")]

    def __str__(self) -> str:
        return f"{self.access_key_id} in {self.bucket or '?'} {self.day:%Y-%m-%d}"


class KeySourceDay(models.Model):
    """Requests one access key made from one source IP in one UTC day (let in only). An
    empty ``source_ip`` gathers what a gateway could not keep apart."""

    access_key = models.ForeignKey("keys.AccessKey", models.CASCADE, related_name="+")
    source_ip = models.CharField(max_length=45, blank=True)
    day = models.DateField()
    requests = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["access_key", "source_ip", "day"], name="keysourceday_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.access_key_id} from {self.source_ip or '?'} {self.day:%Y-%m-%d}"


class DeniedAttempt(models.Model):
    """Requests that named an access key ID and were refused, per claimed ID, source IP,
    hour, and whether they were signed with the key's secret.

    ``signed`` False: the request did not authenticate (unknown key or bad signature);
    naming a key proves nothing, so these never count as the key's use. ``signed`` True:
    the request carried a correct signature for a key that was revoked, inactive or
    expired, so whoever sent it holds the key's secret. ``org`` is the org of the named
    key when such a key exists; an empty ``access_key_id`` gathers what a gateway could
    not keep apart under a flood. The gateway writes the rows (gateway.tasks); they live
    here, beside KeyUsage, because the keys pages show them.
    """

    access_key_id = models.CharField(max_length=32, blank=True)
    org = models.ForeignKey(
        "accounts.Organization", models.CASCADE, null=True, blank=True, related_name="+"
    )
    source_ip = models.CharField(max_length=45, blank=True)
    hour = models.DateTimeField()
    signed = models.BooleanField(default=False)
    count = models.BigIntegerField(default=0)

    class Meta:
        # The table keeps the name it had when the model lived in the gateway app.
        db_table = "gateway_deniedattempt"
        constraints = [
            models.UniqueConstraint(
                fields=["access_key_id", "source_ip", "hour", "signed"],
                name="deniedattempt_unique_signed",
            )
        ]
        indexes = [models.Index(fields=["org", "hour"], name="deniedattempt_org_hour_idx")]

    def __str__(self) -> str:
        who = f"{self.access_key_id or '?'} from {self.source_ip or '?'}"
        return f"{who} {self.hour:%Y-%m-%d %H}:00"


class ReportStatus(models.TextChoices):
    PENDING = "pending", "Queued"
    RUNNING = "running", "Generating"
    DONE = "done", "Ready"
    FAILED = "failed", "Failed"


class CredentialReport(models.Model):
    """One credential report of an org: a row per access key (keys.reports), built by a
    worker (keys.tasks.build_credential_report) with its progress in ``done`` of ``total``
    keys, and downloaded as CSV or JSON."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey("accounts.Organization", models.CASCADE, related_name="+")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(
        max_length=10, choices=ReportStatus.choices, default=ReportStatus.PENDING
    )
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The report's rows, once done: a list of objects with the columns of keys.reports.
    rows = models.JSONField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["org", "-requested_at"], name="credreport_org_time_idx")]

    def __str__(self) -> str:
        return f"credential report {self.id} of {self.org_id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (ReportStatus.DONE, ReportStatus.FAILED)

    @property
    def percent(self) -> int:
        return 100 if not self.total else min(100, self.done * 100 // self.total)


class CachedKind(models.TextChoices):
    KEY = "key", "Access key"
    BUCKET = "bucket", "Bucket"


class CacheChange(models.Model):
    """A key or bucket that gateways may hold cached and that changed: written in the
    transaction of the change, and read by every gateway every few seconds, so a change
    whose Redis version bump was lost still reaches them (keys/revocation.py)."""

    kind = models.CharField(max_length=8, choices=CachedKind.choices)
    name = models.CharField(max_length=64)
    changed_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"
