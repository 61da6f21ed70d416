"""Writing audit events.

Service functions call ``record()`` inside the transaction that makes the change, so an
event exists exactly when its change does: if the insert fails, the change rolls back.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any, Literal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest

from .chain import append
from .models import ActorType, AuditAction, AuditEvent, TargetType

USER_AGENT_MAX = 512


@dataclass(frozen=True)
class Actor:
    """Who did something, and from where."""

    type: str
    label: str
    user_id: int | None = None
    ip: str | None = None
    user_agent: str = ""
    request_id: str = ""

    @classmethod
    def from_request(cls, request: HttpRequest, user=None) -> Actor:
        user = user if user is not None else request.user
        return cls(type=ActorType.USER, label=user.email, user_id=user.pk, **_origin(request))

    @classmethod
    def unauthenticated(cls, request: HttpRequest | None, label: str) -> Actor:
        """Someone not signed in, such as a failed sign-in, named by what they claimed."""
        return cls(type=ActorType.USER, label=label, **_origin(request))

    @classmethod
    def for_api_token(cls, token, request: HttpRequest | None = None) -> Actor:
        """A member acting through one of their API tokens, which the label names."""
        return cls(
            type=ActorType.API_TOKEN,
            label=f"token {token.name} of {token.user.email}",
            user_id=token.user_id,
            **_origin(request),
        )

    @classmethod
    def for_user(cls, user) -> Actor:
        """A user acting outside a request, such as a management command run for them."""
        return cls(type=ActorType.USER, label=user.email, user_id=user.pk)

    @classmethod
    def for_access_key(cls, key, ip: str | None = None, request_id: str = "") -> Actor:
        """A request to the S3 gateway, made with this access key."""
        return cls(type=ActorType.ACCESS_KEY, label=key.id, ip=ip, request_id=request_id)

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls(type=ActorType.SYSTEM, label=label)


def _origin(request: HttpRequest | None) -> dict[str, Any]:
    if request is None:
        return {}
    return {
        "ip": client_ip(request),
        "user_agent": request.headers.get("User-Agent", "")[:USER_AGENT_MAX],
        "request_id": getattr(request, "request_id", ""),
    }


def client_ip(request: HttpRequest) -> str | None:
    # REMOTE_ADDR is the only address we can trust without knowing the proxies in front;
    # deployments behind a proxy set it from X-Forwarded-For in the proxy layer.
    return request.META.get("REMOTE_ADDR") or None


def client_source(request: HttpRequest) -> str | None:
    """The client as limits count it: its IPv4 address, or the first address of its IPv6
    /64 (one host usually holds a whole /64, and could otherwise try again from a fresh
    address every time). The audit trail keeps the exact address (client_ip)."""
    ip = client_ip(request)
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return ip
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.ip_network(f"{address}/64", strict=False).network_address)


def record(
    actor: Actor,
    action: AuditAction,
    *,
    org=None,
    target_type: TargetType | Literal[""] = "",
    target_id: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event. Must run inside the transaction of the change it describes."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit.record() must be called inside the change's transaction")
    event = AuditEvent(
        org=org,
        actor_type=actor.type,
        actor_user_id=actor.user_id,
        actor_label=_text(actor.label)[:254],
        action=action,
        target_type=target_type,
        target_id=_text(str(target_id))[:64],
        source_ip=_normalized_ip(actor.ip),
        user_agent=_text(actor.user_agent)[:USER_AGENT_MAX],
        request_id=actor.request_id,
        # Through JSON and back, so the hash covers exactly what the database returns.
        details=json.loads(json.dumps(_clean(details or {}))),
    )
    return append(event)


def _text(value: str) -> str:
    # PostgreSQL stores no NUL in text or JSON; client-supplied text may carry one.
    return value.replace("\x00", "\ufffd")


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        # A float may not come back from the database as the same text (1e16 returns as
        # an integer), which would break the event's hash. Details carry no floats.
        raise TypeError("audit details take strings, integers, booleans, lists and dicts")
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, dict):
        return {_text(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _normalized_ip(ip: str | None) -> str | None:
    """The address as the database will give it back, so the stored hash still matches."""
    if not ip:
        return None
    try:
        value = AuditEvent._meta.get_field("source_ip").get_prep_value(ip)
    except (ValueError, ValidationError):
        return None
    address = ipaddress.ip_address(value)
    if address.version == 6 and int(address) >> 32 == 0 and (int(address) >> 16) & 0xFFFF:
        # An IPv4-compatible address (::a.b.c.d): PostgreSQL writes it with a dotted quad
        # where Python writes hex (::102:304). Anything else both write alike.
        return f"::{ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)}"
    return value
