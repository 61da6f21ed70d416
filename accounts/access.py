"""Who may see what: the one place a view turns an org slug into the user's membership."""

from __future__ import annotations

from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404

from .models import Membership


def membership_for(request: HttpRequest, slug: str) -> Membership:
    """The signed-in user's membership of the org, or 404 for anyone else's org."""
    if not request.user.is_authenticated:
        raise Http404
    return get_object_or_404(
        Membership.objects.select_related("org", "user"), org__slug=slug, user=request.user
    )
