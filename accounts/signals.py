"""Sign-ins and sign-outs in the audit trail, with the address and browser they came from."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db import transaction
from django.dispatch import receiver

from audit.models import AuditAction, TargetType
from audit.trail import Actor, record

from .services import record_account_event

EMAIL_MAX = 254


@receiver(user_logged_in, dispatch_uid="audit_user_logged_in")
def audit_login(sender, request, user, **kwargs) -> None:
    record_account_event(request, user, AuditAction.USER_LOGIN)


@receiver(user_logged_out, dispatch_uid="audit_user_logged_out")
def audit_logout(sender, request, user, **kwargs) -> None:
    if user is not None:
        record_account_event(request, user, AuditAction.USER_LOGOUT)


@receiver(user_login_failed, dispatch_uid="audit_user_login_failed")
def audit_login_failed(sender, credentials, request=None, **kwargs) -> None:
    # Django masks the password in `credentials`; only the address tried is kept.
    tried = str(credentials.get("username") or credentials.get("email") or "")[:EMAIL_MAX]
    actor = Actor.unauthenticated(request, tried or "unknown")
    with transaction.atomic():
        record(
            actor,
            AuditAction.USER_LOGIN_FAILED,
            target_type=TargetType.USER,
            target_id=tried[:64],
            details={"email": tried},
        )
