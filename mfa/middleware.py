from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django_htmx.http import HttpResponseClientRedirect

from accounts.access import TwoFactorRequired

from .reauth import confirm_url


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
        back = (
            request.get_full_path()
            if request.method == "GET"
            else reverse("key_list", args=[org.slug])
        )
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
        if getattr(request, "htmx", False):
            return HttpResponseClientRedirect(target)
        return redirect(target)
