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


class AuditAction(models.TextChoices):
    """Every action the trail records, named once.

    ``record()`` calls, the audit page's filter and the API's schema all use these members;
    a test fails when an event is recorded with anything else.
    """

    ACCESS_KEY_CREATED = "access_key.created", "Access key created"
    ACCESS_KEY_ROTATED = "access_key.rotated", "Access key rotated"
    ACCESS_KEY_DEACTIVATED = "access_key.deactivated", "Access key deactivated"
    ACCESS_KEY_REACTIVATED = "access_key.reactivated", "Access key reactivated"
    ACCESS_KEY_REVOKED = "access_key.revoked", "Access key revoked"
    ACCESS_KEY_RENAMED = "access_key.renamed", "Access key renamed"
    ACCESS_KEY_SCOPE_NARROWED = "access_key.scope_narrowed", "Access key scope narrowed"
    ACCESS_KEY_EXPIRED = "access_key.expired", "Access key expired"
    ACCESS_KEY_EXPIRY_WARNED = "access_key.expiry_warned", "Access key owner warned of expiry"
    ACCESS_KEY_DENIED_USE_ALERTED = (
        "access_key.denied_use_alerted",
        "Admins alerted that a stopped key is still used",
    )
    MEMBER_INVITED = "member.invited", "Member invited"
    MEMBER_JOINED = "member.joined", "Member joined"
    MEMBER_ROLE_CHANGED = "member.role_changed", "Member's role changed"
    MEMBER_REMOVED = "member.removed", "Member removed"
    MEMBER_INVITATION_REVOKED = "member.invitation_revoked", "Invitation withdrawn"
    INVITATION_REVOKED = "invitation.revoked", "Invitation revoked"
    ORG_CREATED = "org.created", "Organisation created"
    ORG_TWO_FACTOR_REQUIRED = "org.two_factor_required", "Two-factor sign-in required"
    ORG_TWO_FACTOR_NOT_REQUIRED = "org.two_factor_not_required", "Two-factor sign-in optional"
    ORG_KEY_POLICY_CHANGED = "org.key_policy_changed", "Key policy changed"
    API_TOKEN_CREATED = "api_token.created", "API token created"
    API_TOKEN_REVOKED = "api_token.revoked", "API token revoked"
    API_TOKEN_REJECTED = "api_token.rejected", "API token refused"
    API_TOKEN_UNKNOWN = "api_token.unknown", "Unknown API token presented"
    DEVICE_LOGIN_APPROVED = "device_login.approved", "Device sign-in approved"
    DEVICE_LOGIN_DENIED = "device_login.denied", "Device sign-in denied"
    BUCKET_CREATED = "bucket.created", "Bucket created"
    BUCKET_DELETED = "bucket.deleted", "Bucket deleted"
    BUCKET_CORS_CHANGED = "bucket.cors_changed", "Bucket CORS rules changed"
    BUCKET_ADOPTED = "bucket.adopted", "Bucket adopted"
    AUDIT_EXPORTED = "audit.exported", "Audit trail exported"
    CREDENTIAL_REPORT_REQUESTED = "credential_report.requested", "Credential report requested"
    CREDENTIAL_REPORT_DOWNLOADED = "credential_report.downloaded", "Credential report downloaded"
    USER_SIGNED_UP = "user.signed_up", "Signed up"
    USER_LOGIN = "user.login", "Signed in"
    USER_LOGOUT = "user.logout", "Signed out"
    USER_LOGIN_FAILED = "user.login_failed", "Sign-in failed"
    USER_LOCKED_OUT = "user.locked_out", "Locked out"
    USER_PASSWORD_CHANGED = "user.password_changed", "Password changed"
    USER_PASSWORD_RESET = "user.password_reset", "Password reset"
    USER_MFA_ENROLLED = "user.mfa_enrolled", "Second factor added"
    USER_MFA_REMOVED = "user.mfa_removed", "Second factor removed"
    USER_MFA_FAILED = "user.mfa_failed", "Second factor refused"
    USER_RECOVERY_CODE_USED = "user.recovery_code_used", "Recovery code used"
    USER_RECOVERY_CODES_REGENERATED = (
        "user.recovery_codes_regenerated",
        "Recovery codes replaced",
    )
    USER_REAUTHENTICATED = "user.reauthenticated", "Identity confirmed again"
    SECRET_KEYS_RESEALED = "secret_keys.resealed", "Access key secrets resealed"
    TOTP_SEEDS_RESEALED = "totp_seeds.resealed", "Authenticator seeds resealed"


# Actions recorded outside any organisation: what happens to a user's own account
# (sign-ups, sign-ins, passwords, second factors), API tokens that match no token, and the
# re-sealing of secrets under a new key-encryption key. No organisation's page lists them.
ACCOUNT_ACTIONS = frozenset(
    {
        AuditAction.USER_SIGNED_UP,
        AuditAction.USER_LOGIN,
        AuditAction.USER_LOGOUT,
        AuditAction.USER_LOGIN_FAILED,
        AuditAction.USER_LOCKED_OUT,
        AuditAction.USER_PASSWORD_CHANGED,
        AuditAction.USER_PASSWORD_RESET,
        AuditAction.USER_MFA_ENROLLED,
        AuditAction.USER_MFA_REMOVED,
        AuditAction.USER_MFA_FAILED,
        AuditAction.USER_RECOVERY_CODE_USED,
        AuditAction.USER_RECOVERY_CODES_REGENERATED,
        AuditAction.USER_REAUTHENTICATED,
        AuditAction.API_TOKEN_UNKNOWN,
        AuditAction.SECRET_KEYS_RESEALED,
        AuditAction.TOTP_SEEDS_RESEALED,
    }
)

# Every action that lands in an organisation's trail: the audit page's action filter and
# the API's action parameter offer exactly these, in this order.
ORG_ACTIONS = tuple(action for action in AuditAction if action not in ACCOUNT_ACTIONS)


class TargetType(models.TextChoices):
    """What an event acted on; the event's ``target_id`` says which one.

    Events recorded before this vocabulary existed keep what they say: the key policy's
    events named the organisation ``"organization"`` where every other event says ``"org"``.
    Nothing filters on the organisation target; a filter that did would look for both.
    """

    ACCESS_KEY = "access_key", "Access key"
    API_TOKEN = "api_token", "API token"
    BUCKET = "bucket", "Bucket"
    CREDENTIAL_REPORT = "credential_report", "Credential report"
    DEVICE_LOGIN = "device_login", "Device sign-in"
    INVITATION = "invitation", "Invitation"
    KEY_ENCRYPTION_KEY = "key_encryption_key", "Key-encryption key"
    ORG = "org", "Organisation"
    USER = "user", "User"


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
