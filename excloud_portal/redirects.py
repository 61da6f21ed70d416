"""The one check every user-supplied return URL passes before a page links to it or a
view redirects to it."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme

NEXT_FIELD = "next"


def safe_next(request: HttpRequest, fallback: str = "", *, field: str = NEXT_FIELD) -> str:
    """The URL the request names in ``field`` (its form data, else its query string) if it
    leads back into this site, else ``fallback``.

    A return URL comes from whoever wrote the link, so ``javascript:`` URLs, other hosts
    (``//evil.example``, ``/\\evil.example``) and, on an HTTPS request, plain-HTTP URLs are
    all refused: rendered into an ``href`` or followed by a redirect, any of them hands the
    signed-in user to someone else's code or site.
    """
    candidate = (request.POST.get(field) or request.GET.get(field) or "").strip()
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return fallback
