from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils import timezone

# S3 bucket names are 3 to 63 characters.
BUCKET_NAME_MAX_LENGTH = 63


class BucketQuerySet(models.QuerySet["Bucket"]):
    def for_org(self, org) -> BucketQuerySet:
        return self.filter(org=org)


class Bucket(models.Model):
    """A bucket in the object store and the organisation that owns it.

    Written when CreateBucket succeeds upstream and removed when DeleteBucket does; a
    bucket name is global, so no two organisations can hold the same one.
    """

    name = models.CharField(max_length=BUCKET_NAME_MAX_LENGTH, unique=True)
    org = models.ForeignKey("accounts.Organization", models.PROTECT, related_name="buckets")
    created_at = models.DateTimeField(default=timezone.now)
    created_by_key = models.ForeignKey(
        "keys.AccessKey", models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = BucketQuerySet.as_manager()

    def __str__(self) -> str:
        return self.name


class KeyUsageQuerySet(models.QuerySet["KeyUsage"]):
    def recent(self, key, hours: int) -> KeyUsageQuerySet:
        since = timezone.now() - timedelta(hours=hours)
        return self.filter(access_key=key, hour__gte=since).order_by("-hour")


class KeyUsage(models.Model):
    """What one access key did in one hour, as the gateways counted it.

    Gateways count in memory and send their totals through Celery about once a minute
    (gateway.tasks.record_usage adds them up here), so no S3 request writes to the
    database. ``denied`` counts requests made with the key while it was revoked,
    inactive or expired; ``errors`` counts answers of 400 and above.
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
        constraints = [
            models.UniqueConstraint(fields=["access_key", "hour"], name="keyusage_key_hour_unique")
        ]

    def __str__(self) -> str:
        return f"{self.access_key_id} {self.hour:%Y-%m-%d %H}:00"
