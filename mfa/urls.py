from __future__ import annotations

from django.urls import path

from . import views

# Mounted under /accounts/.
urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("login/verify/", views.verify, name="mfa_verify"),
    path("login/passkey/", views.verify_passkey, name="mfa_verify_passkey"),
    path("confirm/", views.confirm, name="mfa_confirm"),
    path("confirm/passkey/", views.confirm_passkey, name="mfa_confirm_passkey"),
    path("security/", views.security, name="mfa_security"),
    path("security/totp/", views.totp_setup, name="mfa_totp_setup"),
    path("security/passkeys/", views.passkey_add, name="mfa_passkey_add"),
    path(
        "security/recovery-codes/",
        views.recovery_codes_regenerate,
        name="mfa_recovery_codes",
    ),
    path(
        "security/<str:kind>/<int:device_id>/remove/",
        views.factor_remove,
        name="mfa_factor_remove",
    ),
]
