from __future__ import annotations

from urllib.parse import urlencode

import django_otp
import segno
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render, resolve_url
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.forms import EmailAuthenticationForm
from excloud_portal.redirects import safe_next

from . import passkeys, pending, reauth, services
from .forms import (
    CodeForm,
    PasskeyAnswerForm,
    PasskeyForm,
    PasswordConfirmForm,
    TotpConfirmForm,
)
from .models import FactorKind, Passkey, TotpDevice

FACTOR_MODELS = {FactorKind.TOTP.value: TotpDevice, FactorKind.PASSKEY.value: Passkey}


def _with_next(url: str, next_url: str) -> str:
    return f"{url}?{urlencode({'next': next_url})}" if next_url else url


def _page(request: HttpRequest, template: str, context: dict, status: int = 200) -> HttpResponse:
    # The base template looks these up; a failed lookup is logged with the whole context,
    # which on these pages may hold a seed or recovery codes.
    base = {"org": None, "membership": None, "next": "", "recovery_codes": None}
    return render(request, template, {**base, **context}, status=status)


# Sign-in


class LoginView(auth_views.LoginView):
    """The password step. A user with a second factor is not signed in by it: they go on to
    the second step, with only their ID and the time kept in the session meanwhile."""

    authentication_form = EmailAuthenticationForm
    redirect_authenticated_user = True

    def form_valid(self, form) -> HttpResponse:
        user = form.get_user()
        if not services.has_factor(user):
            return super().form_valid(form)
        pending.begin(self.request, user)
        return redirect(_with_next(reverse("mfa_verify"), self.get_redirect_url()))


def _finish_sign_in(request: HttpRequest, user, device, next_url: str) -> HttpResponse:
    backend = pending.backend(request) or settings.AUTHENTICATION_BACKENDS[0]
    pending.clear(request)
    login(request, user, backend=backend)
    django_otp.login(request, device)
    return redirect(next_url or resolve_url(settings.LOGIN_REDIRECT_URL))


def _verify_context(
    request: HttpRequest, user, form, next_url: str, passkey_error: str = ""
) -> dict:
    return {
        "form": form,
        "passkey_error": passkey_error,
        "next": next_url,
        "passkey_options": passkeys.authentication_options(request, user),
        "passkey_form": PasskeyAnswerForm(),
        "has_totp": TotpDevice.objects.filter(user=user, confirmed=True).exists(),
    }


@never_cache
@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    """The second step of signing in: a code, a recovery code or a passkey."""
    user = pending.user(request)
    next_url = safe_next(request)
    if user is None:
        messages.info(request, "Sign in again: the sign-in took too long.")
        return redirect(_with_next(reverse("login"), next_url))
    form = CodeForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        result = services.verify_code(request, user, form.cleaned_data["code"])
        if result.device is not None:
            if result.codes_left is not None:
                messages.warning(
                    request,
                    f"You used a recovery code; {result.codes_left} left. "
                    "Make new ones on the Security page if you are running out.",
                )
            return _finish_sign_in(request, user, result.device, next_url)
        form.add_error("code", result.error)
    context = _verify_context(request, user, form, next_url)
    return _page(request, "mfa/verify.html", context, status=400 if form.errors else 200)


@never_cache
@require_POST
def verify_passkey(request: HttpRequest) -> HttpResponse:
    user = pending.user(request)
    next_url = safe_next(request)
    if user is None:
        messages.info(request, "Sign in again: the sign-in took too long.")
        return redirect(_with_next(reverse("login"), next_url))
    form = PasskeyAnswerForm(request.POST)
    error = "The browser sent no passkey answer."
    if form.is_valid():
        try:
            passkey, sign_count = passkeys.verify_authentication(
                request, user, form.cleaned_data["credential"]
            )
        except passkeys.PasskeyError as e:
            error = str(e)
        else:
            services.passkey_used(passkey, sign_count)
            return _finish_sign_in(request, user, passkey, next_url)
    services.record_failure(request, user, FactorKind.PASSKEY.value, "not verified")
    context = _verify_context(request, user, CodeForm(), next_url, passkey_error=error)
    return _page(request, "mfa/verify.html", context, status=400)


# Confirming identity again before sensitive actions


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def confirm(request: HttpRequest) -> HttpResponse:
    next_url = safe_next(request)
    method = request.POST.get("method", "") if request.method == "POST" else ""
    # An org that requires two-factor sign-in sends members here to use their second
    # factor; a password does not count then.
    factor_only = (request.POST or request.GET).get("factor") == "required"
    if factor_only and method == "password":
        method = ""
    password_form = PasswordConfirmForm(request.POST if method == "password" else None)
    code_form = CodeForm(request.POST if method == "code" else None, prefix="second")
    confirmed = False
    if method == "password" and password_form.is_valid():
        # Through authenticate(), so whatever guards sign-in attempts guards these too.
        user = authenticate(
            request, username=request.user.email, password=password_form.cleaned_data["password"]
        )
        if user is not None and user.pk == request.user.pk:
            confirmed = True
        else:
            password_form.add_error("password", "That is not your password.")
    elif method == "code" and code_form.is_valid():
        result = services.verify_code(request, request.user, code_form.cleaned_data["code"])
        if result.device is not None:
            django_otp.login(request, result.device)
            confirmed = True
        else:
            code_form.add_error("code", result.error)
    if confirmed:
        reauth.stamp(request)
        services.record_reauthentication(request, request.user, method)
        return redirect(next_url or resolve_url(settings.LOGIN_REDIRECT_URL))
    errors = password_form.errors or code_form.errors
    context = _confirm_context(request, password_form, code_form, next_url, factor_only=factor_only)
    return _page(request, "mfa/confirm.html", context, status=400 if errors else 200)


def _confirm_context(
    request: HttpRequest,
    password_form,
    code_form,
    next_url: str,
    passkey_error: str = "",
    factor_only: bool = False,
) -> dict:
    return {
        "factor_only": factor_only,
        "password_form": password_form,
        "code_form": code_form,
        "next": next_url,
        "has_factor": services.has_factor(request.user),
        "passkey_options": passkeys.authentication_options(request, request.user),
        "passkey_form": PasskeyAnswerForm(),
        "passkey_error": passkey_error,
    }


@never_cache
@require_POST
@login_required
def confirm_passkey(request: HttpRequest) -> HttpResponse:
    next_url = safe_next(request)
    form = PasskeyAnswerForm(request.POST)
    error = "The browser sent no passkey answer."
    if form.is_valid():
        try:
            passkey, sign_count = passkeys.verify_authentication(
                request, request.user, form.cleaned_data["credential"]
            )
        except passkeys.PasskeyError as e:
            error = str(e)
        else:
            services.passkey_used(passkey, sign_count)
            django_otp.login(request, passkey)
            reauth.stamp(request)
            services.record_reauthentication(request, request.user, FactorKind.PASSKEY.value)
            return redirect(next_url or resolve_url(settings.LOGIN_REDIRECT_URL))
    services.record_failure(request, request.user, FactorKind.PASSKEY.value, "not verified")
    context = _confirm_context(
        request,
        PasswordConfirmForm(),
        CodeForm(prefix="second"),
        next_url,
        passkey_error=error,
        factor_only=request.POST.get("factor") == "required",
    )
    return _page(request, "mfa/confirm.html", context, status=400)


# The Security page: enrolment and removal


def _security_context(request: HttpRequest) -> dict:
    user = request.user
    recovery = services.recovery_device(user)
    return {
        "totp_devices": TotpDevice.objects.filter(user=user, confirmed=True).order_by("created_at"),
        "passkeys": Passkey.objects.filter(user=user, confirmed=True).order_by("created_at"),
        "recovery_left": recovery.codes_left() if recovery else None,
        "required_by": services.orgs_requiring_two_factor(user),
        "passkey_form": PasskeyForm(),
        "passkey_options": passkeys.registration_options(request, user),
        "next": safe_next(request),
    }


@never_cache
@require_GET
@login_required
def security(request: HttpRequest) -> HttpResponse:
    return _page(request, "mfa/security.html", _security_context(request))


def _qr_svg(data: str) -> str:
    return segno.make(data, error="m").svg_inline(scale=4, border=2, dark="#111", light="#fff")


def _recovery_codes_page(request: HttpRequest, codes: list[str], next_url: str) -> HttpResponse:
    # The only response that ever holds these codes: rendered once, never stored.
    return _page(
        request,
        "mfa/recovery_codes.html",
        {"recovery_codes": codes, "next": next_url},
    )


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
@reauth.reauth_required
@reauth.existing_factor_required
def totp_setup(request: HttpRequest) -> HttpResponse:
    next_url = safe_next(request)
    setup = services.pending_totp(request.user) or services.start_totp(request.user)
    form = TotpConfirmForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            codes = services.confirm_totp(
                request, request.user, form.cleaned_data["code"], form.cleaned_data["name"]
            )
        except services.FactorError as e:
            form.add_error("code", str(e))
        else:
            device = TotpDevice.objects.get(pk=setup.device.pk)
            # The session has now used a second factor; the re-authentication window
            # stays as it was (enrolling proves the new factor, not the person).
            django_otp.login(request, device)
            messages.success(request, "Your authenticator app is set up.")
            if codes:
                return _recovery_codes_page(request, codes, next_url)
            return redirect(next_url or "mfa_security")
    context = {
        "form": form,
        "secret": setup.secret,
        "qr_svg": _qr_svg(setup.config_url),
        "next": next_url,
    }
    return _page(request, "mfa/totp_setup.html", context, status=400 if form.errors else 200)


@never_cache
@require_POST
@login_required
@reauth.reauth_required(back="mfa_security")
@reauth.existing_factor_required
def passkey_add(request: HttpRequest) -> HttpResponse:
    next_url = safe_next(request)
    form = PasskeyForm(request.POST)
    if form.is_valid():
        try:
            verified = passkeys.verify_registration(request, form.cleaned_data["credential"])
            passkey, codes = services.add_passkey(
                request, request.user, form.cleaned_data["name"], **verified
            )
        except passkeys.PasskeyError as e:
            messages.error(request, str(e))
        else:
            django_otp.login(request, passkey)
            messages.success(request, "Your passkey is added.")
            if codes:
                return _recovery_codes_page(request, codes, next_url)
            return redirect(next_url or "mfa_security")
    else:
        messages.error(request, "The browser sent no passkey. Try again.")
    return redirect(_with_next(reverse("mfa_security"), next_url))


@never_cache
@require_POST
@login_required
@reauth.reauth_required(methods=("POST",))
def recovery_codes_regenerate(request: HttpRequest) -> HttpResponse:
    try:
        codes = services.regenerate_recovery_codes(request, request.user)
    except services.FactorError as e:
        messages.error(request, str(e))
        return redirect("mfa_security")
    return _recovery_codes_page(request, codes, "")


@require_http_methods(["GET", "POST"])
@login_required
@reauth.reauth_required
def factor_remove(request: HttpRequest, kind: str, device_id: int) -> HttpResponse:
    model = FACTOR_MODELS.get(kind)
    if model is None:
        raise Http404
    device = get_object_or_404(model, pk=device_id, user=request.user, confirmed=True)
    if request.method == "POST":
        try:
            services.remove_factor(request, request.user, device)
        except services.FactorError as e:
            messages.error(request, str(e))
        else:
            messages.success(request, f"“{device.name}” is removed.")
        return redirect("mfa_security")
    return _page(request, "mfa/factor_remove.html", {"device": device})
