"""Every sign-in counts as a fresh proof of identity for the re-authentication window."""

from __future__ import annotations

from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from .reauth import stamp


@receiver(user_logged_in, dispatch_uid="mfa_stamp_reauth")
def stamp_on_login(sender, request, user, **kwargs) -> None:
    if request is not None and hasattr(request, "session"):
        stamp(request)
