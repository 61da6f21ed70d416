from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from accounts.access import TwoFactorRequired

from .reauth import come_back_to, confirm_url, send_to


class TwoFactorRequiredMiddleware:
    """Sends a member of an org that requires two-factor sign-in to enrolment (no second
    factor yet) or to the confirm page (signed in without it), with a way back to the
    page they asked for."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, TwoFactorRequired):
            return None
        org = exception.membership.org
        back = come_back_to(request, reverse("key_list", args=[org.slug]))
        if exception.enrolled:
            target = confirm_url(back, second_factor=True)
            messages.warning(
                request, f"{org.name} requires two-factor sign-in. Confirm with your second factor."
            )
        else:
            target = reverse("mfa_security") + "?" + urlencode({"next": back})
            messages.warning(
                request,
                f"{org.name} requires two-factor sign-in. Set up an authenticator app or a "
                "passkey to continue.",
            )
        return send_to(request, target)
