"""The two unauthenticated endpoints of device login (RFC 8628 §3.1 and §3.4).

Answers follow the RFC's field names, and its errors are ``{"error": …}`` with status 400
(429 when an address asks for too many codes), so any device-grant client can use them.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from ninja import Field, Router, Schema

from audit.trail import client_ip, client_source
from excloud_portal.api_schema import Error

from . import device_login

router = Router(tags=["device login"], auth=None)
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"


class CodeIn(Schema):
    device_name: str = Field("", max_length=200, description="What the device calls itself")


class TokenIn(Schema):
    device_code: str = Field(max_length=200)
    grant_type: str = Field(GRANT_TYPE, description=GRANT_TYPE)


class DeviceCodeOut(Schema):
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int


class DeviceOrgOut(Schema):
    slug: str
    name: str


class DeviceTokenOut(Schema):
    access_token: str
    token_type: str
    expires_at: str
    org: DeviceOrgOut
    user: str


class DeviceError(Schema):
    error: str = Field(
        description="authorization_pending, slow_down, access_denied, expired_token, "
        "invalid_grant or unsupported_grant_type (RFC 8628 §3.5)"
    )
    error_description: str


def _error(status: int, code: str, message: str, **headers: str) -> JsonResponse:
    response = JsonResponse({"error": code, "error_description": message}, status=status)
    response["Cache-Control"] = "no-store"
    for name, value in headers.items():
        response[name] = value
    return response


@router.post(
    "/code",
    response={200: DeviceCodeOut, 422: Error, 429: DeviceError},
    summary="Start a device login",
)
def device_code(request: HttpRequest, body: CodeIn):
    """A device code to poll with and a user code for its user to type in the portal."""
    try:
        started = device_login.start(body.device_name, client_source(request), client_ip(request))
    except device_login.TooManyRequests as e:
        return _error(429, "slow_down", str(e), **{"Retry-After": str(e.retry_after)})
    page = request.build_absolute_uri(reverse("device_login"))
    user_code = device_login.format_user_code(started.user_code)
    response = JsonResponse(
        {
            "device_code": started.device_code,
            "user_code": user_code,
            "verification_uri": page,
            "verification_uri_complete": f"{page}?code={user_code}",
            "expires_in": int(device_login.DEVICE_CODE_LIFETIME.total_seconds()),
            "interval": started.login.interval,
        }
    )
    response["Cache-Control"] = "no-store"
    return response


@router.post(
    "/token",
    response={200: DeviceTokenOut, 400: DeviceError, 422: Error},
    summary="Collect the device's API token",
)
def device_token(request: HttpRequest, body: TokenIn):
    """The API token once the device's user approved it; until then an RFC 8628 error."""
    if body.grant_type != GRANT_TYPE:
        return _error(400, "unsupported_grant_type", f"grant_type must be {GRANT_TYPE}.")
    try:
        created, membership = device_login.redeem(body.device_code)
    except device_login.DeviceLoginError as e:
        return _error(400, e.code, str(e))
    response = JsonResponse(
        {
            "access_token": created.plaintext,
            "token_type": "Bearer",
            "expires_at": created.token.expires_at.isoformat(),
            "org": {"slug": membership.org.slug, "name": membership.org.name},
            "user": membership.user.email,
        }
    )
    response["Cache-Control"] = "no-store"
    return response
