from __future__ import annotations

from django.http import HttpRequest

from .models import Membership


def current_org(request: HttpRequest) -> dict:
    """The user's organisations for the switcher, and the one named in the URL."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}

    def memberships() -> list[Membership]:
        return list(
            Membership.objects.filter(user=request.user).select_related("org").order_by("org__name")
        )

    slug = request.resolver_match.kwargs.get("slug") if request.resolver_match else None
    return {"my_memberships": memberships, "current_slug": slug}
