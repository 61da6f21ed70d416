"""Caching rules for what the portal answers."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

# Paths whose every answer is private whoever asks: the APIs, and the pages whose URLs or
# forms carry one-time tokens (sign-in, password reset, invitations).
PRIVATE_PREFIXES = ("/api/", "/internal/", "/accounts/", "/invitations/")


class NoStoreMiddleware:
    """``Cache-Control: no-store`` on everything a browser or proxy cache must not keep.

    That is every response to a signed-in user (keys, tokens, audit data and exports,
    members, security settings) and everything under ``PRIVATE_PREFIXES``. One rule for
    all views, so a new page cannot forget it. Static files never get here: WhiteNoise
    answers them earlier, with their own long-lived caching.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        private = request.path_info.startswith(PRIVATE_PREFIXES) or (
            user is not None and user.is_authenticated
        )
        # A view that already said no-store (the verify API) is left as it answered.
        if private and "no-store" not in response.get("Cache-Control", ""):
            add_never_cache_headers(response)
        return response
