"""Second factors: authenticator apps (TOTP), passkeys (WebAuthn) and recovery codes.

They are django-otp devices, so ``django_otp.login`` and ``user.is_verified()`` work with
them, but unlike django-otp's stock devices nothing secret is stored in the clear: a TOTP
seed is sealed with AES-256-GCM (bound to its device), a recovery code is kept as its
SHA-256, and a passkey is only its public key.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone
from django_otp.models import Device, ThrottlingMixin
from django_otp.oath import TOTP

from keys.credentials import seal, unseal

TOTP_DIGITS = 6
TOTP_STEP = 30
# A code from the step before or after the current one is accepted too: phone clocks drift.
TOTP_TOLERANCE = 1
TOTP_SEED_BYTES = 20
TOTP_CODE_RE = re.compile(r"^\d{6}$")
RECOVERY_CODE_COUNT = 10
RECOVERY_CODE_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # no 0/o, 1/l
RECOVERY_CODE_GROUPS = 4
RECOVERY_CODE_GROUP_LENGTH = 4


class FactorKind(models.TextChoices):
    TOTP = "totp", "Authenticator app"
    PASSKEY = "passkey", "Passkey"
    RECOVERY = "recovery", "Recovery code"


# The wait after a wrong code doubles up to this many failures in a row and then stays:
# with the default factor, about 34 minutes between guesses (some 40 a day against a
# million codes), while someone who knows the password and keeps failing on purpose
# cannot lock the owner out of their own factor for longer than that after stopping.
THROTTLE_MAX_FAILURES = 12


class _ThrottledDevice(ThrottlingMixin, Device):
    """A device whose failed verifications make the next one wait longer: 1 s, 2 s, 4 s...
    up to THROTTLE_MAX_FAILURES doublings."""

    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta(Device.Meta):
        abstract = True

    def get_throttle_factor(self) -> int:
        return getattr(settings, "OTP_TOTP_THROTTLE_FACTOR", 1)

    def throttle_increment(self, commit: bool = True) -> None:
        super().throttle_increment(commit=False)
        self.throttling_failure_count = min(self.throttling_failure_count, THROTTLE_MAX_FAILURES)
        if commit:
            self.save()


class TotpDevice(_ThrottledDevice):
    """An authenticator app: a sealed seed and the last time step it verified."""

    kind = FactorKind.TOTP
    # The device's identity in the seal: a sealed seed copied onto another row does not open.
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    seed_kek_id = models.CharField(max_length=16)
    seed_sealed = models.BinaryField()
    # The time step of the last accepted code; a code is accepted once, and never an older one.
    last_t = models.BigIntegerField(default=-1)

    class Meta(_ThrottledDevice.Meta):
        verbose_name = "authenticator app"

    @property
    def sealing_context(self) -> str:
        return f"mfa.totp:{self.uid}"

    def set_seed(self, seed: str) -> None:
        self.seed_kek_id, self.seed_sealed = seal(seed, self.sealing_context)

    def seed(self) -> str:
        """The base32 seed, as the authenticator app was given it."""
        return unseal(self.seed_kek_id, self.seed_sealed, self.sealing_context)

    def reseal(self) -> None:
        """Seal the seed again under the newest key-encryption key."""
        self.set_seed(self.seed())

    def _totp(self) -> TOTP:
        totp = TOTP(base64.b32decode(self.seed()), TOTP_STEP, 0, TOTP_DIGITS, 0)
        totp.time = time.time()
        return totp

    def verify_token(self, token) -> bool:
        """Check a code; the caller holds the row locked (select_for_update)."""
        allowed, _ = self.verify_is_allowed()
        if not allowed:
            return False
        token = str(token or "").replace(" ", "")
        verified = False
        if TOTP_CODE_RE.match(token):
            totp = self._totp()
            verified = totp.verify(int(token), TOTP_TOLERANCE, self.last_t + 1)
        if verified:
            self.last_t = totp.t()
            self.last_used_at = timezone.now()
            self.throttle_reset(commit=False)
            self.save()
        else:
            self.throttle_increment(commit=True)
        return verified


def new_totp_seed() -> str:
    return base64.b32encode(secrets.token_bytes(TOTP_SEED_BYTES)).decode()


def normalize_recovery_code(code: str) -> str:
    return "".join(ch for ch in str(code or "").lower() if ch.isalnum())


def hash_recovery_code(code: str) -> str:
    return hashlib.sha256(normalize_recovery_code(code).encode()).hexdigest()


def new_recovery_code() -> str:
    groups = (
        "".join(secrets.choice(RECOVERY_CODE_ALPHABET) for _ in range(RECOVERY_CODE_GROUP_LENGTH))
        for _ in range(RECOVERY_CODE_GROUPS)
    )
    return "-".join(groups)


class RecoveryDevice(_ThrottledDevice):
    """A user's set of recovery codes; each works once."""

    kind = FactorKind.RECOVERY

    class Meta(_ThrottledDevice.Meta):
        verbose_name = "recovery codes"

    def codes_left(self) -> int:
        return self.codes.filter(used_at__isnull=True).count()

    def verify_token(self, token) -> bool:
        """Spend one unused code; the caller holds the row locked (select_for_update)."""
        allowed, _ = self.verify_is_allowed()
        if not allowed:
            return False
        digest = hash_recovery_code(token)
        # Conditional, so a code raced by two requests is spent by one of them only.
        spent = self.codes.filter(code_hash=digest, used_at__isnull=True).update(
            used_at=timezone.now()
        )
        if spent:
            self.last_used_at = timezone.now()
            self.throttle_reset(commit=False)
            self.save()
        else:
            self.throttle_increment(commit=True)
        return bool(spent)


class RecoveryCode(models.Model):
    device = models.ForeignKey(RecoveryDevice, models.CASCADE, related_name="codes")
    # SHA-256 of the code (lower case, separators removed); the code is shown once only.
    code_hash = models.CharField(max_length=64)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["device", "code_hash"], name="recoverycode_device_hash_unique"
            )
        ]

    def __str__(self) -> str:
        return f"recovery code of {self.device.user_id}"


class Passkey(Device):
    """A WebAuthn credential: its ID, public key, signature counter and transports."""

    kind = FactorKind.PASSKEY
    credential_id = models.CharField(max_length=1400, unique=True)  # base64url
    public_key = models.BinaryField()
    sign_count = models.PositiveBigIntegerField(default=0)
    transports = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta(Device.Meta):
        verbose_name = "passkey"

    def verify_token(self, token) -> bool:
        # Passkeys answer a WebAuthn challenge (mfa.services), never a typed code.
        return False
