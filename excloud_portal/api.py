"""The REST API under /api/v1/: bearer-token auth, JSON errors, rate limit, the routers.

A token belongs to one member of one organisation, so routes name no org: ``/api/v1/keys``
are the keys of the token's org, and another org's key ID answers 404 like a missing one.
Handlers call the same service functions as the dashboard, with an ``api_token`` actor.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer

from accounts import throttle
from accounts.device_api import router as device_router
from accounts.models import Membership
from accounts.tokens import authenticate_api_token, unknown_token_block
from audit.api import router as audit_router
from keys.api import router as keys_router
from keys.scope import ScopeError
from keys.services import AccessKeyError, InvalidKeyState, KeyNameTaken, ScopeWidened

from .api_schema import ERRORS
from .errors import OUTAGES, unavailable
from .text import UnsafeText

UNAUTHORIZED_MESSAGE = (
    "Missing, invalid, expired or revoked API token. "
    "Send one as 'Authorization: Bearer exc_…'; create it on the API tokens page."
)
# The names handlers give their body and query schemas, left out of error messages.
HANDLER_PARAMETERS = {"body", "filters"}
log = logging.getLogger(__name__)
STATUS_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found"}


class RateLimited(Exception):
    def __init__(self, retry_after: int, message: str) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after
        self.message = message


class BearerToken(HttpBearer):
    def __call__(self, request: HttpRequest) -> Membership | None:
        # An address that has sent too many unknown tokens is refused before its token is
        # read, whatever it sends, until the window ends.
        retry_after = unknown_token_block(request)
        if retry_after:
            raise RateLimited(
                retry_after,
                "Too many requests with unknown API tokens from your address; "
                f"try again in {retry_after} seconds.",
            )
        return super().__call__(request)

    def authenticate(self, request: HttpRequest, token: str) -> Membership | None:
        found = authenticate_api_token(token.strip(), request)
        if found is None:
            return None
        api_token, membership = found
        # The hash (not the token) names the counter: unique per token, and useless if read.
        verdict = throttle.api_token_calls().hit(api_token.token_hash)
        if not verdict.allowed:
            raise RateLimited(
                verdict.retry_after,
                f"Too many requests with this token; try again in {verdict.retry_after} seconds.",
            )
        request.api_token = api_token
        return membership


api = NinjaAPI(
    title="Excloud API",
    version="1",
    description=(
        "Manage an Excloud organisation's S3 access keys. Authenticate with an API token "
        "(`Authorization: Bearer exc_…`); it acts with its member's role in its organisation."
    ),
    auth=BearerToken(),
    urls_namespace="api-v1",
    openapi_url="/openapi.json",
    docs_url="/docs",
)


def error(request: HttpRequest, status: int, code: str, message: str, **extra) -> HttpResponse:
    body = {"code": code, "message": message, **extra}
    return api.create_response(request, body, status=status)


@api.exception_handler(AuthenticationError)
def _unauthorized(request: HttpRequest, exc: Exception) -> HttpResponse:
    response = error(request, 401, "unauthorized", UNAUTHORIZED_MESSAGE)
    response["WWW-Authenticate"] = 'Bearer realm="excloud"'
    return response


@api.exception_handler(RateLimited)
def _rate_limited(request: HttpRequest, exc: RateLimited) -> HttpResponse:
    response = error(request, 429, "rate_limited", exc.message)
    response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(PermissionDenied)
def _forbidden(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error(request, 403, "forbidden", str(exc) or "Your role does not allow this.")


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error(request, 404, "not_found", "No such object in your organisation.")


@api.exception_handler(KeyNameTaken)
def _name_taken(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error(request, 409, "name_taken", str(exc))


@api.exception_handler(InvalidKeyState)
def _invalid_state(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error(request, 409, "invalid_state", str(exc))


@api.exception_handler(ScopeWidened)
def _scope_widened(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error(request, 409, "scope_widened", str(exc))


@api.exception_handler(ScopeError)
def _invalid_scope(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error(request, 422, "invalid_scope", str(exc))


@api.exception_handler(AccessKeyError)
def _invalid_key_request(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error(request, 422, "invalid", str(exc))


@api.exception_handler(UnsafeText)
def _unsafe_text(request: HttpRequest, exc: Exception) -> HttpResponse:
    return error(request, 422, "invalid", str(exc))


@api.exception_handler(ValidationError)
def _invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    details = [
        {"loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())], "msg": e["msg"]}
        for e in exc.errors
    ]
    if not details:
        return error(request, 422, "validation_error", "Invalid request.")
    # ("body", "body", "name") names the body parameter too; people want just "name".
    where = [p for p in details[0]["loc"][1:] if p not in HANDLER_PARAMETERS]
    field = ".".join(str(p) for p in where) or str(details[0]["loc"][0])
    message = f"{field}: {details[0]['msg']}"
    return error(request, 422, "validation_error", message, details=details)


def _unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
    log.error("API call failed: a service is unavailable", exc_info=exc)
    return unavailable(request)


for _outage in OUTAGES:
    api.add_exception_handler(_outage, _unavailable)


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    code = STATUS_CODES.get(exc.status_code, "error")
    return error(request, exc.status_code, code, str(exc))


class OrgOut(Schema):
    slug: str
    name: str


class TokenOut(Schema):
    name: str
    prefix: str
    expires_at: datetime | None


class ConfigOut(Schema):
    s3_endpoint: str
    region: str
    org: OrgOut
    user: str
    role: str
    token: TokenOut


@api.get("/config", response={200: ConfigOut, **ERRORS}, tags=["config"])
def config(request: HttpRequest):
    """Where the organisation's S3 endpoint is, and who this token acts as."""
    membership: Membership = request.auth
    return {
        "s3_endpoint": settings.EXCLOUD_S3_ENDPOINT,
        "region": settings.EXCLOUD_S3_REGION,
        "org": {"slug": membership.org.slug, "name": membership.org.name},
        "user": membership.user.email,
        "role": membership.role,
        "token": {
            "name": request.api_token.name,
            "prefix": request.api_token.prefix,
            "expires_at": request.api_token.expires_at,
        },
    }


def not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any other path under /api/v1/ answers in JSON too."""
    return JsonResponse(
        {"code": "not_found", "message": "No such API endpoint. See /api/v1/openapi.json."},
        status=404,
    )


api.add_router("/keys", keys_router)
api.add_router("/audit", audit_router)
api.add_router("/device", device_router)
