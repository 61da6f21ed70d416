from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from audit.models import AuditAction
from audit.trail import Actor, client_source
from mfa.reauth import reauth_required

from . import services, throttle, tokens
from .access import membership_for
from .forms import (
    ApiTokenForm,
    ChangePasswordForm,
    InviteForm,
    NewPasswordForm,
    RoleForm,
    SignUpForm,
    TwoFactorRequirementForm,
)
from .models import ApiToken, Invitation, Membership, Organization, Role, User


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect("login")
    first = (
        Membership.objects.filter(user=request.user)
        .select_related("org")
        .order_by("created_at")
        .first()
    )
    if first is None:
        return redirect("org_list")
    return redirect("key_list", slug=first.org.slug)


def _sign_up_and_in(
    request: HttpRequest,
    form: SignUpForm,
    sign_up: Callable[[], tuple[User, Organization]],
    welcome: str,
) -> HttpResponse | None:
    """Create the account with sign_up(), sign its user in and send them to the keys of
    their organisation (named by {org} in the welcome); or put the reason it failed on the
    form and answer None."""
    try:
        user, org = sign_up()
    except IntegrityError:
        # Another sign-up with the same address won a race past the form's check.
        form.add_error("email", "An account with this email exists. Sign in instead.")
    except services.MembershipError as e:
        form.add_error(None, str(e))
    else:
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, welcome.format(org=org.name))
        return redirect("key_list", slug=org.slug)
    return None


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    form = SignUpForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        verdict = throttle.sign_ups_per_ip().hit(client_source(request) or "")
        if not verdict.allowed:
            minutes = -(-verdict.retry_after // 60)
            form.add_error(
                None,
                "Too many accounts were created from your network recently. "
                f"Try again in {minutes} minute{pluralize(minutes)}.",
            )
            return render(request, "accounts/signup.html", {"form": form}, status=429)
        signed_up = _sign_up_and_in(
            request,
            form,
            lambda: services.sign_up(data["email"], data["password"], data["org_name"], request),
            "Welcome to Excloud. You own {org}; create its first key.",
        )
        if signed_up:
            return signed_up
    return render(
        request, "accounts/signup.html", {"form": form}, status=400 if form.errors else 200
    )


@require_GET
@login_required
def org_list(request: HttpRequest) -> HttpResponse:
    memberships = (
        Membership.objects.filter(user=request.user).select_related("org").order_by("org__name")
    )
    return render(request, "accounts/org_list.html", {"memberships": memberships})


def _members_context(membership: Membership, invite_form: InviteForm | None = None) -> dict:
    org = membership.org
    members = list(org.memberships.select_related("user").order_by("user__email"))
    for m in members:
        m.manageable = membership.can_manage_member(m) and m.pk != membership.pk
    invitations = org.invitations.pending().select_related("invited_by").order_by("-created_at")
    roles = membership.assignable_roles()
    return {
        "membership": membership,
        "org": org,
        "members": members,
        "invitations": invitations if membership.can_manage_members else [],
        "invite_form": invite_form or InviteForm(roles=roles),
        "roles": roles,
        "two_factor_form": TwoFactorRequirementForm(
            initial={"require_two_factor": org.require_two_factor}
        )
        if membership.role == Role.OWNER
        else None,
    }


@require_GET
@login_required
def member_list(request: HttpRequest, slug: str) -> HttpResponse:
    membership = membership_for(request, slug)
    return render(request, "accounts/members.html", _members_context(membership))


@require_POST
@login_required
@reauth_required(back="member_list")
def member_invite(request: HttpRequest, slug: str) -> HttpResponse:
    membership = membership_for(request, slug)
    if not membership.can_manage_members:
        raise PermissionDenied
    form = InviteForm(request.POST, roles=membership.assignable_roles())
    if form.is_valid():
        try:
            services.invite(
                membership,
                Actor.from_request(request),
                form.cleaned_data["email"],
                form.cleaned_data["role"],
            )
        except services.MembershipError as e:
            form.add_error("email", str(e))
        else:
            messages.success(
                request,
                f"Invitation sent to {form.cleaned_data['email']}. The link works for 7 days.",
            )
            return redirect("member_list", slug=slug)
    return render(request, "accounts/members.html", _members_context(membership, form), status=400)


def _target_membership(membership: Membership, user_id: int) -> Membership:
    return get_object_or_404(
        Membership.objects.select_related("user"), org=membership.org, user_id=user_id
    )


@require_POST
@login_required
@reauth_required(back="member_list")
def member_role(request: HttpRequest, slug: str, user_id: int) -> HttpResponse:
    membership = membership_for(request, slug)
    target = _target_membership(membership, user_id)
    if not membership.can_manage_member(target):
        raise PermissionDenied
    form = RoleForm(request.POST, roles=membership.assignable_roles())
    if not form.is_valid():
        messages.error(request, "Choose one of the roles offered.")
        return redirect("member_list", slug=slug)
    try:
        services.change_role(
            membership, Actor.from_request(request), target, form.cleaned_data["role"]
        )
    except services.MembershipError as e:
        messages.error(request, str(e))
    else:
        messages.success(request, f"{target.user.email} is now {form.cleaned_data['role']}.")
    return redirect("member_list", slug=slug)


@require_http_methods(["GET", "POST"])
@login_required
@reauth_required(methods=("POST",), back="member_list")
def member_remove(request: HttpRequest, slug: str, user_id: int) -> HttpResponse:
    membership = membership_for(request, slug)
    target = _target_membership(membership, user_id)
    if not membership.can_manage_member(target):
        raise PermissionDenied
    if request.method == "GET":
        return render(
            request,
            "accounts/member_remove.html",
            {"membership": membership, "org": membership.org, "target": target},
        )
    try:
        services.remove_member(membership, Actor.from_request(request), target)
    except services.MembershipError as e:
        messages.error(request, str(e))
    else:
        messages.success(request, f"{target.user.email} was removed from {membership.org.name}.")
    return redirect("member_list", slug=slug)


@require_POST
@login_required
@reauth_required(back="member_list")
def org_two_factor(request: HttpRequest, slug: str) -> HttpResponse:
    membership = membership_for(request, slug)
    if membership.role != Role.OWNER:
        raise PermissionDenied
    form = TwoFactorRequirementForm(request.POST)
    required = form.is_valid() and form.cleaned_data["require_two_factor"]
    try:
        changed = services.set_two_factor_requirement(
            membership, Actor.from_request(request), required
        )
    except services.MembershipError as e:
        messages.error(request, str(e))
    else:
        if not changed:
            messages.info(request, "Nothing changed.")
        elif required:
            messages.success(
                request,
                f"{membership.org.name} now requires two-factor sign-in: members without it "
                "set it up before they see the organisation's pages.",
            )
        else:
            messages.success(
                request, f"{membership.org.name} no longer requires two-factor sign-in."
            )
    return redirect("member_list", slug=slug)


@require_POST
@login_required
def invitation_revoke(request: HttpRequest, slug: str, invitation_id: int) -> HttpResponse:
    membership = membership_for(request, slug)
    invitation = get_object_or_404(Invitation, org=membership.org, pk=invitation_id)
    if not membership.can_manage_members:
        raise PermissionDenied
    try:
        services.revoke_invitation(membership, Actor.from_request(request), invitation)
    except services.MembershipError as e:
        messages.error(request, str(e))
    else:
        messages.success(request, f"The invitation for {invitation.email} was withdrawn.")
    return redirect("member_list", slug=slug)


@require_http_methods(["GET", "POST"])
def accept_invitation(request: HttpRequest, token: str) -> HttpResponse:
    invitation = services.find_invitation(token)
    context = {"invitation": invitation, "token": token}
    if invitation is None or not invitation.is_pending:
        return render(request, "accounts/invitation_invalid.html", context, status=404)

    if not request.user.is_authenticated:
        form = SignUpForm(
            request.POST if request.method == "POST" else None, invited_email=invitation.email
        )
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            signed_up = _sign_up_and_in(
                request,
                form,
                lambda: services.sign_up_by_invitation(
                    data["email"], data["password"], token, request
                ),
                "Welcome to {org}.",
            )
            if signed_up:
                return signed_up
        context["form"] = form
        context["login_url"] = reverse("login") + "?" + urlencode({"next": request.path}, safe="/")
        return render(
            request, "accounts/invitation.html", context, status=400 if form.errors else 200
        )

    if request.method == "POST":
        try:
            membership = services.accept_invitation(
                token, request.user, Actor.from_request(request)
            )
        except services.MembershipError as e:
            messages.error(request, str(e))
            return render(request, "accounts/invitation.html", context, status=400)
        messages.success(
            request, f"You joined {membership.org.name} as {membership.get_role_display().lower()}."
        )
        return redirect("key_list", slug=membership.org.slug)
    return render(request, "accounts/invitation.html", context)


class PasswordResetView(auth_views.PasswordResetView):
    """Asking for a password reset link by email, at most so often per address and per
    client.

    Past either limit the page answers exactly as when a link is sent, and sends none, so
    it tells no one whether an address has an account or has reached its limit.

    The link is built from SITE_URL: the Host header and scheme of the request are whatever
    the client (or a proxy in front of us) sent, and must not decide where a link that
    carries a reset token points.
    """

    def form_valid(self, form) -> HttpResponse:
        source = client_source(self.request)
        if not throttle.allow_password_reset(form.cleaned_data["email"], source):
            return HttpResponseRedirect(self.get_success_url())
        site = urlsplit(settings.SITE_URL)
        # The email's context takes these over the request's own.
        self.extra_email_context = {"protocol": site.scheme, "domain": site.netloc}
        return super().form_valid(form)


class _AuditedPasswordMixin:
    """Saves the new password, its audit event and, if asked, the revocation of the user's
    API tokens in one transaction.

    Django's session auth hash changes with the password, so every other session of the
    user ends; a change keeps the session it was made in, a reset keeps none.
    """

    audit_action: AuditAction
    # What the revoked tokens' audit events give as the reason.
    token_revoke_reason: str

    def form_valid(self, form) -> HttpResponse:
        with transaction.atomic():
            response = super().form_valid(form)
            services.record_account_event(self.request, form.user, self.audit_action)
            if form.cleaned_data.get("revoke_api_tokens"):
                tokens.revoke_user_api_tokens(
                    form.user,
                    Actor.from_request(self.request, user=form.user),
                    reason=self.token_revoke_reason,
                )
        return response


class PasswordResetConfirmView(_AuditedPasswordMixin, auth_views.PasswordResetConfirmView):
    """Setting a new password from an emailed link."""

    form_class = NewPasswordForm
    audit_action = AuditAction.USER_PASSWORD_RESET
    token_revoke_reason = "password_reset"


class PasswordChangeView(_AuditedPasswordMixin, auth_views.PasswordChangeView):
    """A signed-in user changing their password."""

    form_class = ChangePasswordForm
    audit_action = AuditAction.USER_PASSWORD_CHANGED
    token_revoke_reason = "password_changed"

    def get_form_kwargs(self) -> dict:
        return {**super().get_form_kwargs(), "request": self.request}


def _tokens_context(membership: Membership, form: ApiTokenForm, created=None) -> dict:
    visible = ApiToken.objects.for_org(membership.org).select_related("user")
    if not membership.is_manager:
        visible = visible.filter(user=membership.user)
    return {
        "membership": membership,
        "org": membership.org,
        "tokens": visible.order_by("-created_at", "-pk")[:200],
        "form": form,
        "created": created,
    }


# The page that shows a new token must not be kept by any cache, the browser's included.
@never_cache
@require_http_methods(["GET", "POST"])
@login_required
@reauth_required(methods=("POST",))
def token_list(request: HttpRequest, slug: str) -> HttpResponse:
    membership = membership_for(request, slug)
    form = ApiTokenForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        days = form.cleaned_data["expires_in"]
        expires_at = timezone.now() + timedelta(days=int(days)) if days else None
        try:
            created = tokens.create_api_token(
                membership, Actor.from_request(request), form.cleaned_data["name"], expires_at
            )
        except tokens.ApiTokenError as e:
            form.add_error("name", str(e))
        else:
            return render(
                request,
                "accounts/tokens.html",
                _tokens_context(membership, ApiTokenForm(), created=created),
            )
    status = 400 if form.errors else 200
    return render(request, "accounts/tokens.html", _tokens_context(membership, form), status=status)


@require_POST
@login_required
def token_revoke(request: HttpRequest, slug: str, token_id: int) -> HttpResponse:
    membership = membership_for(request, slug)
    token = get_object_or_404(
        ApiToken.objects.select_related("user"), org=membership.org, pk=token_id
    )
    if not tokens.can_revoke_api_token(membership, token):
        # Members do not see each other's tokens; one that isn't theirs does not exist.
        raise Http404
    try:
        tokens.revoke_api_token(membership, Actor.from_request(request), token)
    except tokens.ApiTokenError as e:
        messages.error(request, str(e))
    else:
        messages.success(request, f"Token “{token.name}” is revoked; requests using it now fail.")
    return redirect("token_list", slug=slug)
