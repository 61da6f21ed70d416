from __future__ import annotations

import hashlib
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

INVITATION_LIFETIME = timedelta(days=7)


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **extra)

    def get_by_natural_key(self, username: str) -> User:
        # Addresses are stored lowercased; an exact match on the lowercased input, not a
        # case-insensitive one: the database folds some non-ASCII letters to ASCII ones
        # (U+017F "ſ" to "S"), which would let each spelling of an address sign in to it
        # under a lockout count of its own.
        return self.get(email=username.strip().lower())


class User(AbstractBaseUser, PermissionsMixin):
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]

    def __str__(self) -> str:
        return self.email

    @property
    def label(self) -> str:
        return self.name or self.email


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    AUDITOR = "auditor", "Auditor"


class Organization(models.Model):
    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now)
    # Members must have a second factor (authenticator app or passkey) to open its pages.
    require_two_factor = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    org = models.ForeignKey(Organization, models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["org", "user"], name="membership_org_user_unique")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.org} ({self.role})"

    # What each role may do. Owners and admins manage everything; members create keys
    # and change the keys they created; auditors read everything and change nothing.

    @property
    def is_manager(self) -> bool:
        return self.role in (Role.OWNER, Role.ADMIN)

    @property
    def can_create_keys(self) -> bool:
        return self.role != Role.AUDITOR

    def can_change_key(self, key) -> bool:
        return self.is_manager or (self.role == Role.MEMBER and key.created_by_id == self.user_id)

    def can_rotate_key(self, key) -> bool:
        # A rotation creates the replacement key, so it takes both rights.
        return self.can_create_keys and self.can_change_key(key)

    def can_reactivate_key(self, key) -> bool:
        # A member may undo their own deactivation, not one made by an owner or admin.
        return self.is_manager or (
            self.can_change_key(key) and key.status_changed_by_id == self.user_id
        )

    @property
    def can_read_audit(self) -> bool:
        return self.role in (Role.OWNER, Role.ADMIN, Role.AUDITOR)

    @property
    def can_read_usage(self) -> bool:
        """The org-wide usage pages: every key's traffic, the buckets, the credential report."""
        return self.role in (Role.OWNER, Role.ADMIN, Role.AUDITOR)

    @property
    def can_manage_members(self) -> bool:
        return self.is_manager

    def can_manage_member(self, other: Membership) -> bool:
        """Owners manage everyone; admins manage everyone but owners."""
        if self.role == Role.OWNER:
            return True
        return self.role == Role.ADMIN and other.role != Role.OWNER

    def assignable_roles(self) -> list[tuple[str, str]]:
        if self.role == Role.OWNER:
            return list(Role.choices)
        if self.role == Role.ADMIN:
            return [c for c in Role.choices if c[0] != Role.OWNER]
        return []


class InvitationQuerySet(models.QuerySet["Invitation"]):
    def pending(self) -> InvitationQuerySet:
        return self.filter(
            accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
        )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Invitation(models.Model):
    org = models.ForeignKey(Organization, models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices)
    # Only the SHA-256 of the token is kept; the token itself travels in the email alone.
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = InvitationQuerySet.as_manager()

    def __str__(self) -> str:
        return f"Invitation of {self.email} to {self.org}"

    @property
    def is_pending(self) -> bool:
        return (
            self.accepted_at is None
            and self.revoked_at is None
            and self.expires_at > timezone.now()
        )


API_TOKEN_PREFIX = "exc_"
# How stale a token's last-used time may get: it is written at most this often, so a busy
# token costs one UPDATE a minute rather than one per request.
API_TOKEN_LAST_USED_GRANULARITY = timedelta(minutes=1)


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def for_org(self, org) -> ApiTokenQuerySet:
        return self.filter(org=org)

    def active(self) -> ApiTokenQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiToken(models.Model):
    """An Excloud bearer token: acts as its user, with that user's role in its org.

    Only the SHA-256 of the token is stored; the token itself is shown once, on creation.
    ``prefix`` is the token's first characters, enough to tell tokens apart in a list.
    """

    org = models.ForeignKey(Organization, models.CASCADE, related_name="api_tokens")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=64)
    token_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=16)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["org", "user", "-created_at"], name="apitoken_list_idx")]

    def __str__(self) -> str:
        return f"token {self.name} of {self.user}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.is_expired else "active"


class DeviceLoginStatus(models.TextChoices):
    PENDING = "pending", "Waiting for approval"
    APPROVED = "approved", "Approved"
    DENIED = "denied", "Denied"
    REDEEMED = "redeemed", "Token issued"


class DeviceLogin(models.Model):
    """A terminal asking for an API token (OAuth 2.0 device authorization grant, RFC 8628).

    The device holds the long device code and polls with it; the person types the short
    user code in the portal and approves for one of their organisations. Only hashes of
    both codes are stored. The token is made when the device collects it, so its plaintext
    exists only in that one response.
    """

    device_code_hash = models.CharField(max_length=64, unique=True)
    user_code_hash = models.CharField(max_length=64, db_index=True)
    device_name = models.CharField(max_length=64)
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    status = models.CharField(
        max_length=10, choices=DeviceLoginStatus.choices, default=DeviceLoginStatus.PENDING
    )
    interval = models.PositiveSmallIntegerField()
    last_polled_at = models.DateTimeField(null=True, blank=True)
    membership = models.ForeignKey(
        Membership, models.CASCADE, null=True, blank=True, related_name="+"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    token = models.ForeignKey(ApiToken, models.SET_NULL, null=True, blank=True, related_name="+")

    def __str__(self) -> str:
        return f"device login of {self.device_name}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()
