"""The portal's side of device login: type the code a terminal shows, then approve it for
one of your organisations, or deny it. See accounts/device_login.py."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from audit.trail import Actor
from mfa.reauth import reauth_required

from . import device_login
from .access import membership_for
from .models import DeviceLogin, DeviceLoginStatus, Membership

SESSION_KEY = "device_login_id"
TEMPLATE = "accounts/device_login.html"


def _pending_from_session(request: HttpRequest) -> DeviceLogin | None:
    login_id = request.session.get(SESSION_KEY)
    if not isinstance(login_id, int):
        return None
    return DeviceLogin.objects.filter(pk=login_id, status=DeviceLoginStatus.PENDING).first()


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def device_login_page(request: HttpRequest) -> HttpResponse:
    """Where a user types the code their terminal shows."""
    code = request.POST.get("user_code", "") if request.method == "POST" else ""
    error = ""
    if request.method == "POST":
        if device_login.lookups_left(request.user.pk):
            error = "Too many codes tried. Wait a few minutes and try again."
        else:
            found = device_login.find_pending(request.user.pk, code)
            if found is not None and not found.is_expired:
                request.session[SESSION_KEY] = found.pk
                return redirect("device_confirm")
            error = "That code is unknown, used or expired. Check the code in your terminal."
    else:
        code = request.GET.get("code", "")[:20]
    return render(
        request,
        TEMPLATE,
        {"step": "code", "code": code, "error": error},
        status=400 if error else 200,
    )


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
@reauth_required(methods=("GET", "POST"), back="device_confirm")
def device_confirm(request: HttpRequest) -> HttpResponse:
    """Which device asks, from where; approve it for one organisation, or deny it."""
    login = _pending_from_session(request)
    if login is None or login.is_expired:
        request.session.pop(SESSION_KEY, None)
        return render(request, TEMPLATE, {"step": "gone"}, status=410)
    memberships = list(
        Membership.objects.filter(user=request.user).select_related("org").order_by("org__name")
    )
    if request.method == "POST":
        slug = request.POST.get("org")
        decision = request.POST.get("decision")
        if any(m.org.slug == slug for m in memberships) and decision in ("approve", "deny"):
            # Through the one gate of org pages, so an org that requires two-factor sign-in
            # gives no token to a session that has not used a second factor.
            membership = membership_for(request, slug)
            actor = Actor.from_request(request)
            decide = device_login.approve if decision == "approve" else device_login.deny
            done = decide(login, membership, actor)
            request.session.pop(SESSION_KEY, None)
            step = ("approved" if decision == "approve" else "denied") if done else "gone"
            context = {"step": step, "login": login, "membership": membership}
            return render(request, TEMPLATE, context, status=200 if done else 410)
    return render(
        request, TEMPLATE, {"step": "confirm", "login": login, "memberships": memberships}
    )
