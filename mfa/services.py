"""Enrolling, using and removing second factors. Each change writes its audit event in
the same transaction; no secret (seed, code) goes into an event."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import Membership, User
from accounts.services import record_account_event
from audit.models import AuditAction, TargetType
from audit.trail import Actor, record
from keys.credentials import keyring

from .models import (
    RECOVERY_CODE_COUNT,
    TOTP_CODE_RE,
    FactorKind,
    Passkey,
    RecoveryCode,
    RecoveryDevice,
    TotpDevice,
    hash_recovery_code,
    new_recovery_code,
    new_totp_seed,
)
from .passkeys import PasskeyError

TOTP_ISSUER = "Excloud"
RESEAL_BATCH = 500


class FactorError(Exception):
    """A second-factor change that cannot be carried out, with the reason."""


@dataclass(frozen=True)
class PendingTotp:
    device: TotpDevice
    # The base32 seed: shown on the enrolment page only, never stored in the clear.
    secret: str = field(repr=False)

    @property
    def config_url(self) -> str:
        label = quote(f"{TOTP_ISSUER}:{self.device.user.email}")
        query = urlencode({"secret": self.secret, "issuer": TOTP_ISSUER, "digits": 6, "period": 30})
        return f"otpauth://totp/{label}?{query}"


@dataclass(frozen=True)
class Verification:
    """The outcome of a second factor at sign-in or confirmation."""

    device: TotpDevice | RecoveryDevice | None
    error: str = ""
    codes_left: int | None = None


def primary_factors(user: User) -> list[TotpDevice | Passkey]:
    """The user's confirmed authenticator apps and passkeys, oldest first."""
    apps = list(TotpDevice.objects.filter(user=user, confirmed=True).order_by("created_at"))
    keys = list(Passkey.objects.filter(user=user, confirmed=True).order_by("created_at"))
    return apps + keys


def has_factor(user: User) -> bool:
    return (
        TotpDevice.objects.filter(user=user, confirmed=True).exists()
        or Passkey.objects.filter(user=user, confirmed=True).exists()
    )


def recovery_device(user: User) -> RecoveryDevice | None:
    return RecoveryDevice.objects.filter(user=user, confirmed=True).first()


def orgs_requiring_two_factor(user: User) -> list[str]:
    return list(
        Membership.objects.filter(user=user, org__require_two_factor=True)
        .order_by("org__name")
        .values_list("org__name", flat=True)
    )


def _record(request: HttpRequest, user: User, action: AuditAction, **details: Any) -> None:
    record_account_event(request, user, action, details=details)


# Enrolment


def start_totp(user: User) -> PendingTotp:
    """A new, unconfirmed authenticator app for the user, replacing any earlier unconfirmed one.

    It signs nobody in until ``confirm_totp`` has seen a code from it.
    """
    secret = new_totp_seed()
    with transaction.atomic():
        TotpDevice.objects.filter(user=user, confirmed=False).delete()
        device = TotpDevice(user=user, name="Authenticator app", confirmed=False)
        device.set_seed(secret)
        device.save()
    return PendingTotp(device, secret)


def pending_totp(user: User) -> PendingTotp | None:
    device = TotpDevice.objects.filter(user=user, confirmed=False).select_related("user").first()
    return PendingTotp(device, device.seed()) if device else None


def confirm_totp(request: HttpRequest, user: User, code: str, name: str) -> list[str] | None:
    """Activate the pending authenticator app once a code from it checks out.

    Returns the new recovery codes when the user had none (shown once), else None.
    Raises FactorError when there is no pending app or the code is wrong.
    """
    with transaction.atomic():
        device = TotpDevice.objects.select_for_update().filter(user=user, confirmed=False).first()
        if device is None:
            raise FactorError("Start again: the setup expired.")
        if not device.verify_token(code):
            raise FactorError("That code is not right. Enter the 6 digits the app shows now.")
        device.confirmed = True
        device.name = name or "Authenticator app"
        device.save(update_fields=["confirmed", "name"])
        _record(
            request,
            user,
            AuditAction.USER_MFA_ENROLLED,
            kind=FactorKind.TOTP.value,
            name=device.name,
        )
        return _first_recovery_codes(request, user)


def _first_recovery_codes(request: HttpRequest, user: User) -> list[str] | None:
    if recovery_device(user) is not None:
        return None
    return _replace_recovery_codes(request, user, AuditAction.USER_MFA_ENROLLED)


def _replace_recovery_codes(request: HttpRequest, user: User, action: AuditAction) -> list[str]:
    codes = [new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    RecoveryDevice.objects.filter(user=user).delete()
    device = RecoveryDevice.objects.create(user=user, name="Recovery codes", confirmed=True)
    RecoveryCode.objects.bulk_create(
        RecoveryCode(device=device, code_hash=hash_recovery_code(code)) for code in codes
    )
    if action == AuditAction.USER_MFA_ENROLLED:
        _record(request, user, action, kind=FactorKind.RECOVERY.value, name=device.name)
    else:
        _record(request, user, action, codes=len(codes))
    return codes


def regenerate_recovery_codes(request: HttpRequest, user: User) -> list[str]:
    """Ten new recovery codes; the old ones stop working. Returned once, stored as hashes."""
    if not has_factor(user):
        raise FactorError("Add an authenticator app or a passkey first.")
    with transaction.atomic():
        return _replace_recovery_codes(request, user, AuditAction.USER_RECOVERY_CODES_REGENERATED)


def add_passkey(
    request: HttpRequest,
    user: User,
    name: str,
    credential_id: str,
    public_key: bytes,
    sign_count: int,
    transports: list[str],
) -> tuple[Passkey, list[str] | None]:
    with transaction.atomic():
        if Passkey.objects.filter(credential_id=credential_id).exists():
            # A registration may name a credential already registered (by this user or,
            # crafted, by another): refused, not stored twice.
            raise PasskeyError("This passkey is already registered.")
        passkey = Passkey.objects.create(
            user=user,
            name=name or "Passkey",
            confirmed=True,
            credential_id=credential_id,
            public_key=public_key,
            sign_count=sign_count,
            transports=transports,
        )
        _record(
            request,
            user,
            AuditAction.USER_MFA_ENROLLED,
            kind=FactorKind.PASSKEY.value,
            name=passkey.name,
        )
        return passkey, _first_recovery_codes(request, user)


# Removal


def remove_factor(request: HttpRequest, user: User, device: TotpDevice | Passkey) -> None:
    """Remove an authenticator app or passkey; with the last one go the recovery codes.

    The last factor stays while an organisation of the user requires two-factor sign-in.
    """
    with transaction.atomic():
        # Lock the user's row so two removals cannot both see 'another factor left'.
        User.objects.select_for_update().filter(pk=user.pk).first()
        others = [d for d in primary_factors(user) if d != device]
        if not others:
            required_by = orgs_requiring_two_factor(user)
            if required_by:
                raise FactorError(
                    f"{', '.join(required_by)} requires two-factor sign-in: add another "
                    "authenticator app or passkey before removing this one."
                )
        type(device).objects.filter(pk=device.pk, user=user).delete()
        _record(
            request, user, AuditAction.USER_MFA_REMOVED, kind=device.kind.value, name=device.name
        )
        if not others:
            removed, _ = RecoveryDevice.objects.filter(user=user).delete()
            if removed:
                _record(
                    request,
                    user,
                    AuditAction.USER_MFA_REMOVED,
                    kind=FactorKind.RECOVERY.value,
                    name="Recovery codes",
                )


# Verification at sign-in and confirmation


def verify_code(request: HttpRequest, user: User, code: str) -> Verification:
    """Check a code from an authenticator app (6 digits) or a recovery code.

    Failures are throttled per device (each failure doubles the wait before the next try)
    and audited.
    """
    code = (code or "").strip()
    is_totp = bool(TOTP_CODE_RE.match(code.replace(" ", "")))
    kind = FactorKind.TOTP if is_totp else FactorKind.RECOVERY
    with transaction.atomic():
        model = TotpDevice if is_totp else RecoveryDevice
        devices = list(
            model.objects.select_for_update().filter(user=user, confirmed=True).order_by("pk")
        )
        throttled = False
        for device in devices:
            allowed, _ = device.verify_is_allowed()
            if not allowed:
                throttled = True
                continue
            if device.verify_token(code):
                if is_totp:
                    return Verification(device)
                left = device.codes_left()
                _record(request, user, AuditAction.USER_RECOVERY_CODE_USED, codes_left=left)
                return Verification(device, codes_left=left)
        reason = "throttled" if throttled else "wrong code"
        _record(request, user, AuditAction.USER_MFA_FAILED, kind=kind.value, reason=reason)
    if reason == "throttled":
        return Verification(None, "Too many wrong codes. Wait a few seconds and try again.")
    if not devices:
        return Verification(None, f"You have no {kind.label.lower()} set up.")
    return Verification(None, "That code is not right. Try the current one.")


def record_failure(request: HttpRequest, user: User, kind: str, reason: str) -> None:
    with transaction.atomic():
        _record(request, user, AuditAction.USER_MFA_FAILED, kind=kind, reason=reason)


def record_reauthentication(request: HttpRequest, user: User, method: str) -> None:
    with transaction.atomic():
        _record(request, user, AuditAction.USER_REAUTHENTICATED, method=method)


def passkey_used(passkey: Passkey, sign_count: int) -> None:
    Passkey.objects.filter(pk=passkey.pk).update(sign_count=sign_count, last_used_at=timezone.now())


def rp_name() -> str:
    return getattr(settings, "MFA_RP_NAME", "Excloud")


def reseal_totp_seeds(actor: Actor) -> int:
    """Re-seal every TOTP seed under the newest key-encryption key; return the count.

    In batches, each its own transaction with the rows locked, so it can be interrupted
    and re-run; seeds already under the newest key are skipped.
    """
    current = keyring().current_id
    total = 0
    while True:
        with transaction.atomic():
            batch = list(
                TotpDevice.objects.exclude(seed_kek_id=current)
                .select_for_update()
                .only("id", "uid", "seed_kek_id", "seed_sealed")
                .order_by("id")[:RESEAL_BATCH]
            )
            if not batch:
                break
            for device in batch:
                device.reseal()
            TotpDevice.objects.bulk_update(batch, ["seed_kek_id", "seed_sealed"])
            record(
                actor,
                AuditAction.TOTP_SEEDS_RESEALED,
                target_type=TargetType.KEY_ENCRYPTION_KEY,
                target_id=current,
                details={"count": len(batch)},
            )
            total += len(batch)
    return total
