from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from .names import BUCKET_NAME_MAX_LENGTH, bucket_name_problem


def validate_bucket_name(name: str) -> None:
    problem = bucket_name_problem(name)
    if problem is not None:
        raise ValidationError(problem, code="invalid_bucket_name")


class BucketQuerySet(models.QuerySet["Bucket"]):
    def for_org(self, org) -> BucketQuerySet:
        return self.filter(org=org)


class Bucket(models.Model):
    """A bucket in the object store and the organisation that owns it.

    Claimed before CreateBucket is forwarded upstream (gateway.services) and removed when
    DeleteBucket succeeds; a bucket name is global, so no two organisations can hold the
    same one, and it always satisfies S3's naming rules.
    """

    name = models.CharField(
        max_length=BUCKET_NAME_MAX_LENGTH, unique=True, validators=[validate_bucket_name]
    )
    org = models.ForeignKey("accounts.Organization", models.PROTECT, related_name="buckets")
    created_at = models.DateTimeField(default=timezone.now)
    created_by_key = models.ForeignKey(
        "keys.AccessKey", models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The bucket's CORS rules (gateway.cors.to_json), answered by the gateway; None: none.
    cors = models.JSONField(null=True, blank=True)

    objects = BucketQuerySet.as_manager()

    def __str__(self) -> str:
        return self.name


class SigningKeyGrant(models.Model):
    """How many signing keys of one access key the verify API handed to one service token
    in one hour: each allowed call carries one, and with it the front end can sign as the
    key for that day and region.

    ``token_label`` is a fingerprint of the token (gateway.verify_api.token_label), so
    the counts name a front end without storing what would let anyone act as it.
    """

    token_label = models.CharField(max_length=32)
    access_key = models.ForeignKey(
        "keys.AccessKey", models.CASCADE, related_name="signing_key_grants"
    )
    hour = models.DateTimeField()
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["token_label", "access_key", "hour"], name="signingkeygrant_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.token_label}: {self.access_key_id} {self.hour:%Y-%m-%d %H}:00"


class UsageBatch(models.Model):
    """A gateway's usage batch (gateway.usage) that has been added to the counts.

    Written in the transaction that adds the batch up, so a batch delivered twice (sent
    again after a send that seemed to fail, or redelivered after a worker died) counts
    once. Rows older than USAGE_BATCH_RETENTION are deleted as new batches arrive:
    nothing is redelivered that late.
    """

    id = models.UUIDField(primary_key=True)
    applied_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"usage batch {self.id} applied {self.applied_at:%Y-%m-%d %H:%M:%S}"
