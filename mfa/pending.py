"""The sign-in between its two steps: a password that checked out, a second factor to come.

Only the user's ID, the time and the authentication backend are kept in the session, and
only for a few minutes; the user is not signed in until the second step succeeds.
"""

from __future__ import annotations

import time

from django.contrib.auth import get_user_model
from django.http import HttpRequest

from accounts.models import User

PENDING_USER_KEY = "mfa_pending_user"
PENDING_AT_KEY = "mfa_pending_at"
PENDING_BACKEND_KEY = "mfa_pending_backend"
PENDING_LIFETIME_SECONDS = 5 * 60


def begin(request: HttpRequest, user: User) -> None:
    # A fresh session key: whoever held the old one learns nothing about this sign-in.
    request.session.cycle_key()
    request.session[PENDING_USER_KEY] = user.pk
    request.session[PENDING_AT_KEY] = int(time.time())
    request.session[PENDING_BACKEND_KEY] = user.backend


def user(request: HttpRequest) -> User | None:
    """The user halfway through signing in, or None when there is none or it expired."""
    pk = request.session.get(PENDING_USER_KEY)
    at = request.session.get(PENDING_AT_KEY)
    if pk is None or not isinstance(at, int):
        return None
    if not 0 <= time.time() - at < PENDING_LIFETIME_SECONDS:
        clear(request)
        return None
    return get_user_model().objects.filter(pk=pk, is_active=True).first()


def backend(request: HttpRequest) -> str:
    return request.session.get(PENDING_BACKEND_KEY, "")


def clear(request: HttpRequest) -> None:
    for key in (PENDING_USER_KEY, PENDING_AT_KEY, PENDING_BACKEND_KEY):
        request.session.pop(key, None)
