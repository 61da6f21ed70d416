"""The access key endpoints of the REST API: /api/v1/keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal, get_args

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from ninja import Field, Query, Router, Schema
from ninja import Status as Answer

from excloud_portal.api_schema import KEY_ERRORS, actor, membership
from excloud_portal.text import PlainText

from . import services
from .credentials import ACCESS_KEY_ID_RE
from .cursors import InvalidCursor, page_of
from .models import NAME_MAX_LENGTH, AccessKey, CreatedVia
from .scope import (
    ADMIN,
    DEFAULT_SCOPE,
    MAX_BUCKETS,
    MAX_NETWORKS,
    MAX_PREFIX_BYTES,
    PERMISSIONS,
    Scope,
)

PAGE_SIZE_MAX = 500
# PostgreSQL text cannot hold NUL, so a filter with one is refused before it reaches a query.
NO_NUL = r"^[^\x00]*$"

router = Router(tags=["keys"])

Status = Literal["active", "inactive", "revoked", "expired"]
Permission = Literal["read-only", "read-write", "admin"]
assert set(get_args(Permission)) == set(PERMISSIONS)


class BucketGrant(Schema):
    name: str = Field(max_length=63, description="A bucket of the organisation")
    prefix: str = Field(
        "",
        max_length=MAX_PREFIX_BYTES,
        description="Only object names that start with this; empty for the whole bucket",
    )


class KeyScope(Schema):
    """What a key may do: its permission, on which buckets, from which addresses."""

    permission: Permission = Field(
        ADMIN,
        description="read-only: get, head, list; read-write: also put, delete, multipart, "
        "copy; admin: also create and delete buckets and change their settings",
    )
    buckets: list[BucketGrant] | None = Field(
        None,
        max_length=MAX_BUCKETS,
        description="null for all of the organisation's buckets, or the buckets the key may "
        "touch, each optionally narrowed to an object-name prefix",
    )
    networks: list[str] = Field(
        default_factory=list,
        max_length=MAX_NETWORKS,
        description="Source addresses or CIDRs (IPv4 or IPv6) requests may come from; "
        "empty for any",
    )

    def to_scope(self) -> Scope:
        """The Scope; ScopeError (answered 422) when a part is not one a key can have."""
        return Scope.build(
            permission=self.permission,
            buckets=None
            if self.buckets is None
            else [(grant.name, grant.prefix) for grant in self.buckets],
            networks=self.networks,
        )


class KeyOut(Schema):
    id: str
    name: str
    status: Status
    created_at: datetime
    created_by: str | None
    created_via: str
    status_changed_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None
    replaces: str | None = Field(None, description="The key this one replaced by rotation")
    scope: KeyScope


class KeyCreated(KeyOut):
    # Present in this one response only; the portal cannot show it again.
    secret_access_key: str


class KeyPage(Schema):
    items: list[KeyOut]
    next_cursor: str | None


class KeyName(Schema):
    # Longer than a name may be, so an over-long name gets the same message as on the page.
    name: PlainText = Field(max_length=NAME_MAX_LENGTH + 200, description=services.NAME_RULES)


class KeyCreateIn(KeyName):
    expires_at: datetime | None = Field(
        None,
        description="When the key stops working (within the org's maximum key age); "
        "a time without a zone is UTC",
    )
    scope: KeyScope | None = Field(
        None, description="What the key may do; by default admin on all buckets, from anywhere"
    )


class KeyFilter(Schema):
    status: Status | None = None
    name: PlainText | None = Field(
        None, max_length=100, pattern=NO_NUL, description="Part of the key's name or ID"
    )
    limit: int = Field(100, ge=1, le=PAGE_SIZE_MAX)
    after: str | None = Field(None, description="next_cursor")


def _out(key: AccessKey) -> dict:
    return {
        "id": key.id,
        "name": key.name,
        "status": key.status,
        "created_at": key.created_at,
        "created_by": key.created_by.email if key.created_by else None,
        "created_via": key.created_via,
        "status_changed_at": key.status_changed_at,
        "expires_at": key.expires_at,
        "last_used_at": key.last_used_at,
        "replaces": key.rotated_from_id,
        "scope": key.key_scope.as_api(),
    }


def _get_key(request: HttpRequest, key_id: str) -> AccessKey:
    """The token's org's key with this ID; malformed or another org's is 404."""
    if not ACCESS_KEY_ID_RE.match(key_id):
        raise Http404
    return get_object_or_404(AccessKey.objects.for_table(), org=membership(request).org, pk=key_id)


@router.get("", response={200: KeyPage, **KEY_ERRORS}, summary="List keys")
def list_keys(request: HttpRequest, filters: Query[KeyFilter]):
    """The org's keys, newest first, without secrets. Follow next_cursor for more."""
    keys = AccessKey.objects.for_org(membership(request).org).for_table()
    if filters.status:
        keys = keys.filter(status=filters.status)
    if filters.name:
        keys = keys.matching(filters.name)
    try:
        page = page_of(keys, filters.limit, filters.after or "")
    except InvalidCursor as e:
        raise services.AccessKeyError("That cursor is not one this API gave out.") from e
    return {"items": [_out(k) for k in page.keys], "next_cursor": page.next_cursor}


@router.post("", response={201: KeyCreated, **KEY_ERRORS}, summary="Create a key")
def create_key(request: HttpRequest, body: KeyCreateIn, response: HttpResponse):
    """A new key; the response holds its secret, which is never shown again."""
    expires_at = body.expires_at
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    created = services.create_key(
        membership(request),
        actor(request),
        body.name,
        via=CreatedVia.API,
        expires_at=expires_at,
        scope=body.scope.to_scope() if body.scope is not None else DEFAULT_SCOPE,
    )
    # The one response that holds the secret must not be kept by any cache.
    response["Cache-Control"] = "no-store"
    created.key.created_by = membership(request).user
    return Answer(201, {**_out(created.key), "secret_access_key": created.secret})


@router.get("/{key_id}", response={200: KeyOut, **KEY_ERRORS}, summary="Get a key")
def get_key(request: HttpRequest, key_id: str):
    return _out(_get_key(request, key_id))


@router.patch("/{key_id}", response={200: KeyOut, **KEY_ERRORS}, summary="Rename a key")
def rename_key(request: HttpRequest, key_id: str, body: KeyName):
    key = _get_key(request, key_id)
    return _out(services.rename_key(membership(request), actor(request), key, body.name))


@router.delete("/{key_id}", response={200: KeyOut, **KEY_ERRORS}, summary="Revoke a key")
def revoke_key(request: HttpRequest, key_id: str):
    """Revoke the key: requests signed with it fail from now on. This cannot be undone."""
    key = _get_key(request, key_id)
    return _out(services.revoke_key(membership(request), actor(request), key))


class RotateIn(Schema):
    overlap_hours: int = Field(
        24, ge=1, le=720, description="How long the old key keeps working (1 hour to 30 days)"
    )
    name: PlainText | None = Field(
        None,
        max_length=NAME_MAX_LENGTH + 200,
        description="The new key's name; by default the old name with a dated suffix",
    )


class KeyRotated(KeyCreated):
    previous: KeyOut = Field(description="The old key, now with its expiry")


@router.post("/{key_id}/rotate", response={201: KeyRotated, **KEY_ERRORS}, summary="Rotate a key")
def rotate_key(request: HttpRequest, key_id: str, body: RotateIn, response: HttpResponse):
    """A replacement key, whose secret is in this response only; the old key keeps working
    for the overlap and then stops."""
    key = _get_key(request, key_id)
    created = services.rotate_key(
        membership(request),
        actor(request),
        key,
        overlap=timedelta(hours=body.overlap_hours),
        name=body.name,
    )
    response["Cache-Control"] = "no-store"
    created.key.created_by = membership(request).user
    old = _get_key(request, key_id)
    return Answer(
        201,
        {**_out(created.key), "secret_access_key": created.secret, "previous": _out(old)},
    )


@router.post(
    "/{key_id}/deactivate", response={200: KeyOut, **KEY_ERRORS}, summary="Deactivate a key"
)
def deactivate_key(request: HttpRequest, key_id: str):
    key = _get_key(request, key_id)
    return _out(services.deactivate_key(membership(request), actor(request), key))


@router.post(
    "/{key_id}/reactivate", response={200: KeyOut, **KEY_ERRORS}, summary="Reactivate a key"
)
def reactivate_key(request: HttpRequest, key_id: str):
    key = _get_key(request, key_id)
    return _out(services.reactivate_key(membership(request), actor(request), key))


@router.put("/{key_id}/scope", response={200: KeyOut, **KEY_ERRORS}, summary="Narrow a key's scope")
def narrow_scope(request: HttpRequest, key_id: str, body: KeyScope):
    """Give a live key a narrower scope, from its next request on. A scope that allows
    anything the current one does not is refused with 409: make a new key instead."""
    key = _get_key(request, key_id)
    scope = body.to_scope()
    return _out(services.narrow_key_scope(membership(request), actor(request), key, scope))
