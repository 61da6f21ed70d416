"""Fresh sign-in for sensitive actions: a password or second factor in the last 10 minutes.

The time of the last proof is kept in the session. It is stamped at every sign-in (a
``user_logged_in`` receiver, see ``mfa.signals``) and at each confirmation on the
confirm page.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django_htmx.http import HttpResponseClientRedirect

from .services import has_factor

REAUTH_SESSION_KEY = "mfa_reauth_at"
REAUTH_WINDOW_SECONDS = 10 * 60


def stamp(request: HttpRequest) -> None:
    request.session[REAUTH_SESSION_KEY] = int(time.time())


def is_recent(request: HttpRequest) -> bool:
    at = request.session.get(REAUTH_SESSION_KEY)
    return isinstance(at, int) and 0 <= time.time() - at < REAUTH_WINDOW_SECONDS


def confirm_url(next_url: str, second_factor: bool = False) -> str:
    query = {"next": next_url, **({"factor": "required"} if second_factor else {})}
    return reverse("mfa_confirm") + "?" + urlencode(query)


def come_back_to(request: HttpRequest, fallback: str) -> str:
    """Where to return after a detour: this page for a GET, else ``fallback`` (a POST
    cannot be replayed by following a link)."""
    return request.get_full_path() if request.method == "GET" else fallback


def send_to(request: HttpRequest, target: str) -> HttpResponse:
    """Redirect as the client follows it: htmx by HX-Redirect, a browser by Location."""
    if getattr(request, "htmx", False):
        return HttpResponseClientRedirect(target)
    return redirect(target)


def reauth_required(
    view: Callable | None = None, *, methods: tuple[str, ...] = ("GET", "POST"), back: str = ""
):
    """Send the user to the confirm page unless they proved who they are recently.

    ``methods`` are the requests that need it; ``back`` names the page (a URL name taking
    the view's ``slug``, if it has one) to return to when the view itself answers POST only.
    """

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method in methods and not is_recent(request):
                if back:
                    next_url = reverse(
                        back, kwargs={"slug": kwargs["slug"]} if "slug" in kwargs else None
                    )
                else:
                    next_url = come_back_to(request, request.path)
                return send_to(request, confirm_url(next_url))
            return view(request, *args, **kwargs)

        return wrapped

    return decorate(view) if view is not None else decorate


def existing_factor_required(view: Callable) -> Callable:
    """For adding a second factor: a user who already has one must have used it in this
    session, so neither a password alone nor a session signed in without it can add
    someone else's authenticator (and with it, pass every later check)."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if has_factor(request.user) and not request.user.is_verified():
            next_url = come_back_to(request, reverse("mfa_security"))
            return send_to(request, confirm_url(next_url, second_factor=True))
        return view(request, *args, **kwargs)

    return wrapped
