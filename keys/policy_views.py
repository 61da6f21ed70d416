"""The org's key policy page (owners and admins)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.access import membership_for
from audit.trail import Actor
from mfa.reauth import reauth_required

from .forms import KeyPolicyForm
from .policy import POLICY_FIELDS, policy_for, update_policy


@require_http_methods(["GET", "POST"])
@login_required
@reauth_required(methods=("POST",))
def key_policy(request: HttpRequest, slug: str) -> HttpResponse:
    membership = membership_for(request, slug)
    if not membership.is_manager:
        raise PermissionDenied("Only owners and admins can change the key policy.")
    policy = policy_for(membership.org)
    initial = {name: getattr(policy, name) for name in POLICY_FIELDS}
    form = KeyPolicyForm(request.POST if request.method == "POST" else None, initial=initial)
    if request.method == "POST" and form.is_valid():
        update_policy(membership, Actor.from_request(request), **form.cleaned_data)
        messages.success(request, "Key policy saved.")
        return redirect("key_policy", membership.org.slug)
    context = {"membership": membership, "org": membership.org, "form": form}
    return render(request, "keys/key_policy.html", context, status=400 if form.errors else 200)
