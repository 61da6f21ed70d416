"""The only code that creates or changes access keys.

Views, API handlers, tasks and management commands call these functions. Each change
and its audit event are written in one transaction; status changes are conditional
updates, so of two concurrent revokes exactly one succeeds and the other is told why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts.models import Membership
from audit.models import AuditAction, TargetType
from audit.trail import Actor, record
from excloud_portal.text import UnsafeText, check_text

from . import credentials, revocation
from .models import NAME_MAX_LENGTH, AccessKey, CreatedVia, KeyStatus
from .policy import policy_for
from .scope import DEFAULT_SCOPE, Scope

NAME_RE = re.compile(r"^[A-Za-z0-9 ._-]+$")
NAME_RULES = (
    f"Use 1–{NAME_MAX_LENGTH} characters: letters, digits, spaces, dots, underscores and hyphens."
)
RESEAL_BATCH = 500
ROTATION_OVERLAP_MIN = timedelta(hours=1)
ROTATION_OVERLAP_MAX = timedelta(days=30)
ROTATION_OVERLAP_DEFAULT = timedelta(hours=24)
# Why a rotation is refused: the same words from the rotate page and from the API.
MAY_NOT_ROTATE = "Only owners, admins and the key's creator can rotate it."
EXPIRY_MIN_AHEAD = timedelta(minutes=5)
# Far enough for any real plan, and far enough from the last year a datetime can hold that
# no date arithmetic on an expiry overflows.
EXPIRY_MAX_AHEAD = timedelta(days=100 * 365)
EXPIRY_RANGE_MESSAGE = "Choose an expiry date within the next 100 years."


class AccessKeyError(Exception):
    """A request to create or change a key that cannot be carried out, with the reason."""


class KeyNameTaken(AccessKeyError):
    pass


class InvalidKeyState(AccessKeyError):
    pass


class InvalidExpiry(AccessKeyError):
    pass


class ScopeWidened(AccessKeyError):
    pass


@dataclass(frozen=True)
class CreatedKey:
    key: AccessKey
    # The plaintext secret, present only when this call created the key. A repeated
    # submission of the same form gets the existing key and no secret. Kept out of repr()
    # so that no log line or error report that prints this object carries the secret.
    secret: str | None = field(repr=False)

    @property
    def is_new(self) -> bool:
        return self.secret is not None


def clean_key_name(name: str) -> str:
    """Return the name with outer spaces removed, or raise AccessKeyError saying why not."""
    name = (name or "").strip()
    if not name:
        raise AccessKeyError("Give the key a name.")
    _check_text(name, "Key names")
    if len(name) > NAME_MAX_LENGTH:
        raise AccessKeyError(f"Names are at most {NAME_MAX_LENGTH} characters. " + NAME_RULES)
    if not NAME_RE.match(name):
        raise AccessKeyError("That name has characters we don't allow. " + NAME_RULES)
    return name


def _check_text(value: str, what: str) -> None:
    try:
        check_text(value, what)
    except UnsafeText as e:
        raise AccessKeyError(str(e)) from None


def _name_taken_error(name: str) -> KeyNameTaken:
    return KeyNameTaken(f"A live key named “{name}” already exists. Choose another name.")


@sensitive_variables("secret")
def _insert_key(
    membership: Membership,
    name: str,
    via: str,
    *,
    creation_token: str | None = None,
    rotated_from: AccessKey | None = None,
    expires_at: datetime | None = None,
    scope: Scope = DEFAULT_SCOPE,
) -> tuple[AccessKey, str]:
    """Insert a key with a fresh ID and sealed secret, in a savepoint.

    Raises IntegrityError when a concurrent request took the name, the form's token or
    (for a rotation) the old key's one replacement first.
    """
    key_id = credentials.new_access_key_id()
    secret = credentials.new_secret()
    kek_id, sealed = credentials.seal(secret, key_id)
    with transaction.atomic():
        key = AccessKey.objects.create(
            id=key_id,
            org=membership.org,
            name=name,
            secret_sealed=sealed,
            secret_kek_id=kek_id,
            created_by_id=membership.user_id,
            created_via=via,
            creation_token=creation_token or None,
            rotated_from=rotated_from,
            expires_at=expires_at,
            scope=scope.to_json(),
        )
    return key, secret


def _check_name_free(org, name: str) -> None:
    if AccessKey.objects.for_org(org).live().filter(name__iexact=name).exists():
        raise _name_taken_error(name)


@sensitive_variables("secret")
def create_key(
    membership: Membership,
    actor: Actor,
    name: str,
    *,
    via: str = CreatedVia.WEB,
    creation_token: str | None = None,
    expires_at: datetime | None = None,
    scope: Scope = DEFAULT_SCOPE,
) -> CreatedKey:
    """A new key with a fresh secret (shown once, from the answer). ``scope`` limits what
    it may do (keys/scope.py); the default is admin on all the org's buckets."""
    if not membership.can_create_keys:
        raise PermissionDenied("Auditors cannot create keys.")
    name = clean_key_name(name)
    org = membership.org
    if expires_at is not None:
        expires_at = _checked_expiry(org, expires_at)
    with transaction.atomic():
        if creation_token:
            existing = AccessKey.objects.filter(org=org, creation_token=creation_token).first()
            if existing is not None:
                return CreatedKey(existing, None)
        _check_name_free(org, name)
        try:
            key, secret = _insert_key(
                membership,
                name,
                via,
                creation_token=creation_token,
                expires_at=expires_at,
                scope=scope,
            )
        except IntegrityError:
            # A concurrent request won: the same form submitted twice, or the same name.
            if creation_token:
                existing = AccessKey.objects.filter(org=org, creation_token=creation_token).first()
                if existing is not None:
                    return CreatedKey(existing, None)
            raise _name_taken_error(name) from None
        record(
            actor,
            AuditAction.ACCESS_KEY_CREATED,
            org=org,
            target_type=TargetType.ACCESS_KEY,
            target_id=key.id,
            details={"name": key.name, "via": via, "scope": scope.as_api()}
            | ({"expires_at": expires_at.isoformat()} if expires_at else {}),
        )
    return CreatedKey(key, secret)


def _checked_expiry(org, expires_at: datetime) -> datetime:
    """The chosen expiry in UTC, if it is in the future and within the org's maximum key
    age; InvalidExpiry otherwise."""
    try:
        # An offset such as -23:59 on the last day of year 9999 has no UTC equivalent.
        expires_at = expires_at.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidExpiry(EXPIRY_RANGE_MESSAGE) from None
    now = timezone.now()
    if expires_at <= now + EXPIRY_MIN_AHEAD:
        raise InvalidExpiry("Choose an expiry date in the future.")
    if expires_at > now + EXPIRY_MAX_AHEAD:
        raise InvalidExpiry(EXPIRY_RANGE_MESSAGE)
    max_age = policy_for(org).max_age_days
    if max_age and expires_at > now + timedelta(days=max_age):
        limit = now + timedelta(days=max_age)
        raise InvalidExpiry(
            f"This organisation keeps keys at most {max_age} day{'s' if max_age != 1 else ''}: "
            f"choose a date on or before {limit:%Y-%m-%d}."
        )
    return expires_at


def _rotation_name(key: AccessKey, today: date) -> str:
    """The old name with a dated suffix, numbered if that is taken too."""
    base = f"{key.name[: NAME_MAX_LENGTH - 20]}-rotated-{today:%Y%m%d}"
    live = AccessKey.objects.for_org(key.org_id).live()
    name, n = base, 1
    while live.filter(name__iexact=name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


@sensitive_variables("secret")
def rotate_key(
    membership: Membership,
    actor: Actor,
    key: AccessKey,
    *,
    overlap: timedelta = ROTATION_OVERLAP_DEFAULT,
    name: str | None = None,
) -> CreatedKey:
    """Replace a live key with a new one; the old key keeps working for ``overlap``.

    The old key's expiry is brought forward to now + overlap (never pushed later), so
    both keys work while the new secret is deployed and the old one then stops by itself.
    One event, ``access_key.rotated`` on the old key, names the replacement.
    """
    if not membership.can_rotate_key(key):
        raise PermissionDenied(MAY_NOT_ROTATE)
    if not ROTATION_OVERLAP_MIN <= overlap <= ROTATION_OVERLAP_MAX:
        raise AccessKeyError("Choose an overlap between 1 hour and 30 days.")
    if name is not None:
        name = clean_key_name(name)
    with transaction.atomic():
        key = AccessKey.objects.select_for_update().get(pk=key.pk)
        if not key.is_live:
            raise InvalidKeyState(
                f"Key “{key.name}” is {key.get_status_display().lower()}; it cannot be rotated."
            )
        replacement = AccessKey.objects.filter(rotated_from=key).first()
        if replacement is not None:
            raise InvalidKeyState(
                f"Key “{key.name}” was already rotated; its replacement is {replacement.id}."
            )
        now = timezone.now()
        name = name if name is not None else _rotation_name(key, now.date())
        _check_name_free(key.org_id, name)
        try:
            # The replacement may do exactly what the key it replaces could.
            new, secret = _insert_key(
                membership, name, CreatedVia.ROTATION, rotated_from=key, scope=key.key_scope
            )
        except IntegrityError:
            raise _name_taken_error(name) from None
        expires_at = now + overlap
        if key.expires_at is not None and key.expires_at < expires_at:
            expires_at = key.expires_at
        AccessKey.objects.filter(pk=key.pk).update(expires_at=expires_at)
        key.expires_at = expires_at
        revocation.announce_change(keys=[key.id])
        record(
            actor,
            AuditAction.ACCESS_KEY_ROTATED,
            org=key.org,
            target_type=TargetType.ACCESS_KEY,
            target_id=key.id,
            details={
                "name": key.name,
                "replacement": new.id,
                "replacement_name": new.name,
                "expires_at": expires_at.isoformat(),
            },
        )
    return CreatedKey(new, secret)


def _change_status(
    key: AccessKey,
    actor: Actor,
    *,
    allowed_from: tuple[str, ...],
    to: str,
    action: AuditAction,
    reason: str = "",
) -> AccessKey:
    with transaction.atomic():
        now = timezone.now()
        changed = AccessKey.objects.filter(pk=key.pk, status__in=allowed_from).update(
            status=to,
            status_changed_at=now,
            status_changed_by_id=actor.user_id,
            status_reason=reason,
        )
        key.refresh_from_db()
        if not changed:
            raise InvalidKeyState(
                f"Key “{key.name}” is {key.get_status_display().lower()}; nothing was changed."
            )
        revocation.announce_change(keys=[key.id])
        details = {"name": key.name, "from": list(allowed_from), "to": to}
        if reason:
            details["reason"] = reason
        record(
            actor,
            action,
            org=key.org,
            target_type=TargetType.ACCESS_KEY,
            target_id=key.id,
            details=details,
        )
    return key


def deactivate_key(membership: Membership, actor: Actor, key: AccessKey) -> AccessKey:
    if not membership.can_change_key(key):
        raise PermissionDenied("Only owners, admins and the key's creator can deactivate it.")
    return _change_status(
        key,
        actor,
        allowed_from=(KeyStatus.ACTIVE,),
        to=KeyStatus.INACTIVE,
        action=AuditAction.ACCESS_KEY_DEACTIVATED,
    )


def reactivate_key(membership: Membership, actor: Actor, key: AccessKey) -> AccessKey:
    if not membership.can_reactivate_key(key):
        raise PermissionDenied("Only owners and admins can reactivate this key.")
    return _change_status(
        key,
        actor,
        allowed_from=(KeyStatus.INACTIVE,),
        to=KeyStatus.ACTIVE,
        action=AuditAction.ACCESS_KEY_REACTIVATED,
    )


def revoke_key(membership: Membership, actor: Actor, key: AccessKey, reason: str = "") -> AccessKey:
    if not membership.can_change_key(key):
        raise PermissionDenied("Only owners, admins and the key's creator can revoke it.")
    _check_text(reason, "Reasons")
    return _change_status(
        key,
        actor,
        allowed_from=(KeyStatus.ACTIVE, KeyStatus.INACTIVE),
        to=KeyStatus.REVOKED,
        action=AuditAction.ACCESS_KEY_REVOKED,
        reason=reason.strip()[:200],
    )


def check_narrowing(key: AccessKey, scope: Scope) -> None:
    """ScopeWidened, with the message for the user, when ``scope`` allows anything the
    key's current scope does not (for forms that confirm before they narrow)."""
    current = key.key_scope
    if not scope.within(current):
        raise ScopeWidened(
            f"A key's scope can only be narrowed. Key “{key.name}” may do "
            f"{current.describe()}; make a new key for wider access."
        )


def narrow_key_scope(
    membership: Membership, actor: Actor, key: AccessKey, scope: Scope
) -> AccessKey:
    """Give a live key a narrower scope; it takes effect on the key's next request at
    every gateway. A scope that allows anything the key's current one does not is
    refused (ScopeWidened): make a new key for wider access. The same scope changes
    nothing and records nothing."""
    if not membership.can_change_key(key):
        raise PermissionDenied("Only owners, admins and the key's creator can change its scope.")
    with transaction.atomic():
        key = AccessKey.objects.select_for_update().get(pk=key.pk)
        if not key.is_live:
            raise InvalidKeyState(
                f"Key “{key.name}” is {key.get_status_display().lower()}; its scope cannot "
                "be changed."
            )
        current = key.key_scope
        if scope == current:
            return key
        check_narrowing(key, scope)
        key.scope = scope.to_json()
        AccessKey.objects.filter(pk=key.pk).update(scope=key.scope)
        revocation.announce_change(keys=[key.id])
        record(
            actor,
            AuditAction.ACCESS_KEY_SCOPE_NARROWED,
            org=key.org,
            target_type=TargetType.ACCESS_KEY,
            target_id=key.id,
            details={"name": key.name, "from": current.as_api(), "to": scope.as_api()},
        )
    return key


def rename_key(membership: Membership, actor: Actor, key: AccessKey, name: str) -> AccessKey:
    """Give a live key a new name, under the same rules as a new key's name.

    Renaming to the name it already has changes nothing and records nothing.
    """
    if not membership.can_change_key(key):
        raise PermissionDenied("Only owners, admins and the key's creator can rename it.")
    name = clean_key_name(name)
    with transaction.atomic():
        key = AccessKey.objects.select_for_update().get(pk=key.pk)
        if not key.is_live:
            raise InvalidKeyState(
                f"Key “{key.name}” is {key.get_status_display().lower()}; it cannot be renamed."
            )
        if key.name == name:
            return key
        taken = AccessKey.objects.for_org(key.org).live().filter(name__iexact=name)
        if taken.exclude(pk=key.pk).exists():
            raise _name_taken_error(name)
        old = key.name
        try:
            with transaction.atomic():
                AccessKey.objects.filter(pk=key.pk).update(name=name)
        except IntegrityError:
            raise _name_taken_error(name) from None
        key.name = name
        record(
            actor,
            AuditAction.ACCESS_KEY_RENAMED,
            org=key.org,
            target_type=TargetType.ACCESS_KEY,
            target_id=key.id,
            details={"name": name, "from": old},
        )
    return key


def reseal_secrets(actor: Actor) -> int:
    """Re-seal every stored secret under the newest key-encryption key; return the count.

    Runs in batches, each its own transaction with the rows locked, so it can be
    interrupted and re-run; rows already under the newest key are skipped.
    """
    current = credentials.keyring().current_id
    total = 0
    while True:
        with transaction.atomic():
            batch = list(
                AccessKey.objects.exclude(secret_kek_id=current)
                .select_for_update()
                .only("id", "secret_sealed", "secret_kek_id")
                .order_by("id")[:RESEAL_BATCH]
            )
            if not batch:
                break
            for key in batch:
                secret = credentials.unseal(key.secret_kek_id, key.secret_sealed, key.id)
                key.secret_kek_id, key.secret_sealed = credentials.seal(secret, key.id)
                del secret
            AccessKey.objects.bulk_update(batch, ["secret_kek_id", "secret_sealed"])
            record(
                actor,
                AuditAction.SECRET_KEYS_RESEALED,
                target_type=TargetType.KEY_ENCRYPTION_KEY,
                target_id=current,
                details={"count": len(batch)},
            )
            total += len(batch)
    return total


def note_last_use(
    access_key_id: str,
    at: datetime,
    ip: str | None,
    operation: str,
    bucket: str,
    user_agent: str = "",
) -> bool:
    """Record a key's latest use as the gateways reported it; older reports change nothing.

    Not audited: it is an observation of traffic, not a change anyone made, and it arrives
    once a minute per gateway for every key in use.
    """
    return bool(
        AccessKey.objects.filter(pk=access_key_id)
        .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=at))
        .update(
            last_used_at=at,
            last_used_ip=ip or None,
            last_used_operation=operation[:64],
            last_used_bucket=bucket[:63],
            last_used_user_agent=user_agent[:200],
        )
    )
