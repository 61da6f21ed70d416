"""Sign-in lockout: django-axes, with one limit per account and another per client address.

Axes counts failed sign-ins in the database (so every web process, on SQLite or
PostgreSQL, sees the same counts, with or without Redis) and refuses a locked sign-in in
its authentication backend, before the password is checked. This module gives it what
the portal needs on top: two limits instead of one, a successful sign-in that clears only
its own account's failures, the audit event of a lockout, and the page that explains it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_username, get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import Max, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from excloud_portal.redirects import safe_next

from .forms import EmailAuthenticationForm
from .services import record_lockout

EMAIL_MAX = 254
# Axes' names for what it counts by, in the order of AXES_LOCKOUT_PARAMETERS, and ours.
LOCKED = {"username": "account", "ip_address": "ip"}


@dataclass(frozen=True)
class Lockout:
    """What is locked ("account", "ip" or both) and until when."""

    locked: tuple[str, ...]
    until: datetime

    @property
    def minutes_left(self) -> int:
        return max(1, math.ceil((self.until - timezone.now()).total_seconds() / 60))


def email_tried(request: HttpRequest | None, credentials: dict | None) -> str | None:
    """The address a sign-in named, as Axes files its failures: stripped and lowercased,
    so "Owner@Example.test" and "owner@example.test" count against one account."""
    source = credentials if credentials is not None else getattr(request, "POST", {})
    value = source.get("username") or source.get("email") or ""
    return str(value).strip().lower()[:EMAIL_MAX] or None


def _limits() -> dict[str, int]:
    return {
        "username": settings.EXCLOUD_LOGIN_FAILURE_LIMIT,
        "ip_address": settings.EXCLOUD_LOGIN_IP_FAILURE_LIMIT,
    }


class LockoutHandler(AxesDatabaseHandler):
    """Axes' database handler with a failure limit per account and another per address."""

    def _counts(self, request, credentials) -> dict[str, tuple[int, datetime | None]]:
        """Failures within the lockout period, and the latest, for each thing counted."""
        attempts = self.get_user_attempts(request, credentials)
        counts = {}
        for parameter, rows in zip(settings.AXES_LOCKOUT_PARAMETERS, attempts, strict=True):
            found = rows.aggregate(failures=Sum("failures_since_start"), last=Max("attempt_time"))
            counts[parameter] = (found["failures"] or 0, found["last"])
        return counts

    def get_failures(self, request, credentials: dict | None = None) -> int:
        # Axes locks when this reaches AXES_FAILURE_LIMIT, the account limit. Counting how
        # far the closest limit is from being reached, from the account limit down, makes
        # reaching either limit read as reaching that one.
        limits = _limits()
        headroom = min(
            limits[parameter] - failures
            for parameter, (failures, _) in self._counts(request, credentials).items()
        )
        return settings.AXES_FAILURE_LIMIT - headroom

    def lockout(self, request, credentials: dict | None = None) -> Lockout | None:
        """The lockout this sign-in is under, if any."""
        limits, cool_off = _limits(), get_cool_off(request)
        reached = {
            parameter: last
            for parameter, (failures, last) in self._counts(request, credentials).items()
            if failures >= limits[parameter] and last is not None
        }
        if not reached:
            return None
        return Lockout(
            locked=tuple(LOCKED[parameter] for parameter in reached),
            until=max(reached.values()) + cool_off,
        )

    def user_login_failed(self, sender, credentials: dict, request=None, **kwargs) -> None:
        # Axes marks a sign-in refused for an existing lockout before this runs; one that is
        # not marked before but is after is the failure that started a lockout.
        already_locked = bool(getattr(request, "axes_locked_out", False))
        super().user_login_failed(sender, credentials, request, **kwargs)
        if request is None or already_locked or not getattr(request, "axes_locked_out", False):
            return
        lockout = self.lockout(request, credentials)
        if lockout is not None:
            record_lockout(request, email_tried(request, credentials) or "", lockout.locked)

    def reset_user_attempts(self, request, credentials: dict | None = None) -> int:
        # A successful sign-in clears its account's failures, and with them their share of
        # the address's count, but not the address's failures at other accounts: signing
        # in to one's own account must not reset a password spray.
        username = get_client_username(request, credentials)
        count, _ = AccessAttempt.objects.filter(username=username).delete()
        return count


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    """The sign-in page again, saying what is locked and for how long, with 429."""
    context = dict(getattr(original_response, "context_data", None) or {})
    email = email_tried(request, credentials) or ""
    context["form"] = EmailAuthenticationForm(request, initial={"username": email})
    # Rendered back into the form: only a return URL that leads into this site.
    context["next"] = safe_next(request)
    lockout = AxesProxyHandler.get_implementation().lockout(request, credentials)
    minutes = lockout.minutes_left if lockout else settings.EXCLOUD_LOGIN_LOCKOUT_MINUTES
    context["lockout"] = {
        "minutes": minutes,
        "account": lockout is None or "account" in lockout.locked,
        "ip": lockout is not None and "ip" in lockout.locked,
    }
    response = render(request, "registration/login.html", context, status=429)
    response["Retry-After"] = str(minutes * 60)
    return response
