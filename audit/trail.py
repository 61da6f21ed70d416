"""Writing audit events.

Service functions call ``record()`` inside the transaction that makes the change, so an
event exists exactly when its change does: if the insert fails, the change rolls back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.http import HttpRequest

from .models import ActorType, AuditEvent

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
        return cls(
            type=ActorType.USER,
            label=user.email,
            user_id=user.pk,
            ip=client_ip(request),
            user_agent=request.headers.get("User-Agent", "")[:USER_AGENT_MAX],
            request_id=getattr(request, "request_id", ""),
        )

    @classmethod
    def for_user(cls, user) -> Actor:
        """A user acting outside a request, such as a management command run for them."""
        return cls(type=ActorType.USER, label=user.email, user_id=user.pk)

    @classmethod
    def system(cls, label: str = "system") -> Actor:
        return cls(type=ActorType.SYSTEM, label=label)


def client_ip(request: HttpRequest) -> str | None:
    # REMOTE_ADDR is the only address we can trust without knowing the proxies in front;
    # deployments behind a proxy set it from X-Forwarded-For in the proxy layer.
    return request.META.get("REMOTE_ADDR") or None


def record(
    actor: Actor,
    action: str,
    *,
    org=None,
    target_type: str = "",
    target_id: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event. Must run inside the transaction of the change it describes."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit.record() must be called inside the change's transaction")
    return AuditEvent.objects.create(
        org=org,
        actor_type=actor.type,
        actor_user_id=actor.user_id,
        actor_label=actor.label,
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        source_ip=actor.ip,
        user_agent=actor.user_agent,
        request_id=actor.request_id,
        details=details or {},
    )
