"""Who may see what: the one place a view turns an org slug into the user's membership."""

from __future__ import annotations

from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404
from django_otp import user_has_device

from .models import Membership


class TwoFactorRequired(Exception):
    """The org requires two-factor sign-in, and this session has not used a second factor:
    the user has none yet (``enrolled`` False) or signed in without it.

    ``mfa.middleware.TwoFactorRequiredMiddleware`` answers it with enrolment or the
    confirm page.
    """

    def __init__(self, membership: Membership, enrolled: bool) -> None:
        super().__init__(f"{membership.org.slug} requires two-factor sign-in")
        self.membership = membership
        self.enrolled = enrolled


def membership_for(request: HttpRequest, slug: str) -> Membership:
    """The signed-in user's membership of the org, or 404 for anyone else's org.

    In an org that requires two-factor sign-in, a member gets no further than enrolment
    until they have a second factor, and than the confirm page until this session used it.
    """
    if not request.user.is_authenticated:
        raise Http404
    membership = get_object_or_404(
        Membership.objects.select_related("org", "user"), org__slug=slug, user=request.user
    )
    if membership.org.require_two_factor:
        if not user_has_device(membership.user):
            raise TwoFactorRequired(membership, enrolled=False)
        # Set by django-otp's OTPMiddleware: this session proved a second factor.
        if not request.user.is_verified():
            raise TwoFactorRequired(membership, enrolled=True)
    return membership
