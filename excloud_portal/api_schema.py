"""What every API module shares: the error body, the error responses, the acting member."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Schema

from accounts.models import Membership
from audit.trail import Actor


class ErrorDetail(Schema):
    loc: list[str | int]
    msg: str


class Error(Schema):
    """Every error: a stable machine-readable code and a sentence for people."""

    code: str
    message: str
    details: list[ErrorDetail] | None = None


# The errors any authenticated operation may answer with, for the OpenAPI document.
ERRORS: dict[int, Any] = {400: Error, 401: Error, 403: Error, 422: Error, 429: Error}
KEY_ERRORS: dict[int, Any] = {**ERRORS, 404: Error, 409: Error}


def membership(request: HttpRequest) -> Membership:
    """The member the request's token acts for."""
    return request.auth


def actor(request: HttpRequest) -> Actor:
    return Actor.for_api_token(request.api_token, request)
