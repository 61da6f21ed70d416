from __future__ import annotations

from django.urls import include, path, re_path

from accounts import device_views
from accounts import views as accounts
from audit import views as audit
from excloud_portal.api import api
from excloud_portal.api import not_found as api_not_found
from excloud_portal.health import healthz, readyz
from excloud_portal.metrics import metrics
from gateway import verify_api
from gateway import views as gateway_views
from keys import policy_views as key_policy_views
from keys import usage_views
from keys import views as keys

org_patterns = [
    path("keys/", keys.key_list, name="key_list"),
    path("keys/new/", keys.key_create, name="key_create"),
    path("key-policy/", key_policy_views.key_policy, name="key_policy"),
    path("usage/", usage_views.org_usage, name="org_usage"),
    path("credential-report/", usage_views.credential_report, name="credential_report"),
    path(
        "credential-report/<uuid:report_id>.csv",
        usage_views.credential_report_download,
        {"fmt": "csv"},
        name="credential_report_csv",
    ),
    path(
        "credential-report/<uuid:report_id>.json",
        usage_views.credential_report_download,
        {"fmt": "json"},
        name="credential_report_json",
    ),
    path("buckets/", gateway_views.bucket_list, name="bucket_list"),
    path("keys/<str:key_id>/", keys.key_detail, name="key_detail"),
    path("keys/<str:key_id>/deactivate/", keys.key_deactivate, name="key_deactivate"),
    path("keys/<str:key_id>/reactivate/", keys.key_reactivate, name="key_reactivate"),
    path("keys/<str:key_id>/revoke/", keys.key_revoke, name="key_revoke"),
    path("keys/<str:key_id>/rotate/", keys.key_rotate, name="key_rotate"),
    path("keys/<str:key_id>/scope/", keys.key_scope, name="key_scope"),
    path("members/", accounts.member_list, name="member_list"),
    path("members/invite/", accounts.member_invite, name="member_invite"),
    path("members/<int:user_id>/role/", accounts.member_role, name="member_role"),
    path("members/<int:user_id>/remove/", accounts.member_remove, name="member_remove"),
    path("two-factor/", accounts.org_two_factor, name="org_two_factor"),
    path(
        "invitations/<int:invitation_id>/revoke/",
        accounts.invitation_revoke,
        name="invitation_revoke",
    ),
    path("tokens/", accounts.token_list, name="token_list"),
    path("tokens/<int:token_id>/revoke/", accounts.token_revoke, name="token_revoke"),
    path("audit/", audit.audit_list, name="audit_list"),
    path("audit/export.csv", audit.audit_export, {"fmt": "csv"}, name="audit_export_csv"),
    path("audit/export.jsonl", audit.audit_export, {"fmt": "jsonl"}, name="audit_export_jsonl"),
]

handler500 = "excloud_portal.errors.server_error"

urlpatterns = [
    path("", accounts.home, name="home"),
    # For load balancers and Prometheus; answered ahead of the other middleware
    # (excloud_portal.health.OperationsMiddleware).
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("api/v1/", api.urls),
    re_path(r"^api/v1/", api_not_found),
    # For other S3 front ends, with a service token; see gateway/verify_api.py.
    path("internal/v1/s3/verify", verify_api.verify, name="s3_verify"),
    path("accounts/signup/", accounts.signup, name="signup"),
    # The two-step sign-in, re-authentication and the Security page.
    path("accounts/", include("mfa.urls")),
    # Before the stock auth URLs, so these audited or limited versions answer at the same
    # paths.
    path(
        "accounts/password_change/",
        accounts.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password_reset/",
        accounts.PasswordResetView.as_view(),
        name="password_reset",
    ),
    path(
        "accounts/reset/<uidb64>/<token>/",
        accounts.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("accounts/", include("django.contrib.auth.urls")),
    path("device/", device_views.device_login_page, name="device_login"),
    path("device/confirm/", device_views.device_confirm, name="device_confirm"),
    path("invitations/<str:token>/", accounts.accept_invitation, name="accept_invitation"),
    path("orgs/", accounts.org_list, name="org_list"),
    path("orgs/<slug:slug>/", include(org_patterns)),
]
