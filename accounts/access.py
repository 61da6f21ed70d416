"""Who may see what: the one place a view turns an org slug into the user's membership."""

from __future__ import annotations

from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404
from django_otp import user_has_device

from .models import Membership


class TwoFactorRequired(Exception):
    """The org requires a second factor and the user has none yet.

    ``mfa.middleware.TwoFactorRequiredMiddleware`` answers it with the enrolment page.
    """

    def __init__(self, membership: Membership) -> None:
        super().__init__(f"{membership.org.slug} requires two-factor sign-in")
        self.membership = membership


def membership_for(request: HttpRequest, slug: str) -> Membership:
    """The signed-in user's membership of the org, or 404 for anyone else's org.

    In an org that requires two-factor sign-in, a member without a second factor gets
    no further than enrolment.
    """
    if not request.user.is_authenticated:
        raise Http404
    membership = get_object_or_404(
        Membership.objects.select_related("org", "user"), org__slug=slug, user=request.user
    )
    if membership.org.require_two_factor and not user_has_device(membership.user):
        raise TwoFactorRequired(membership)
    return membership
