"""The audit trail in the REST API: /api/v1/audit/events, with the audit page's filters."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from ninja import Field, Query, Router, Schema
from ninja.errors import ValidationError

from excloud_portal.api_schema import ERRORS, Error, membership
from excloud_portal.text import PlainText

from .forms import AuditFilterForm
from .models import ORG_ACTIONS
from .views import MAX_SEQ

PAGE_SIZE_MAX = 200

router = Router(tags=["audit"])

# The actions the audit page offers, as plain strings so the schema lists their values.
Action = Literal[tuple(action.value for action in ORG_ACTIONS)]  # type: ignore[valid-type]


class EventFilter(Schema):
    actor: PlainText | None = Field(None, description="An email address or the start of one")
    action: Action | None = None
    target: PlainText | None = Field(None, description="An access key ID or a key's name")
    date_from: date | None = Field(None, alias="from", description="First day, UTC")
    date_to: date | None = Field(None, alias="to", description="Last day, UTC")
    q: PlainText | None = Field(None, description="Text anywhere in the event")
    before: int | None = Field(None, ge=1, le=MAX_SEQ, description="next_cursor")
    limit: int = Field(50, ge=1, le=PAGE_SIZE_MAX)


class EventOut(Schema):
    seq: int
    occurred_at: datetime
    actor_type: str
    actor: str
    action: str
    target_type: str
    target_id: str
    source_ip: str | None
    request_id: str
    details: dict[str, Any]
    hash: str


class EventPage(Schema):
    items: list[EventOut]
    next_cursor: int | None


@router.get("/events", response={200: EventPage, **ERRORS, 404: Error}, summary="List events")
def list_events(request: HttpRequest, filters: Query[EventFilter]):
    """The org's audit events, newest first, for owners, admins and auditors."""
    member = membership(request)
    if not member.can_read_audit:
        raise PermissionDenied("Only owners, admins and auditors can read the audit log.")
    data = {
        "actor": filters.actor or "",
        "action": filters.action or "",
        "target": filters.target or "",
        "from": filters.date_from.isoformat() if filters.date_from else "",
        "to": filters.date_to.isoformat() if filters.date_to else "",
        "q": filters.q or "",
    }
    # The page's own form checks the filters, so the API accepts exactly what the page does.
    form = AuditFilterForm(data)
    if not form.is_valid():
        details = [
            {
                "loc": ["query", "from" if n == "date_from" else "to" if n == "date_to" else n],
                "msg": str(m),
            }
            for n, messages in form.errors.items()
            for m in messages
        ]
        raise ValidationError(details)
    events = form.to_filter().events(member.org)
    if filters.before is not None:
        events = events.filter(seq__lt=filters.before)
    page = list(events[: filters.limit + 1])
    more = len(page) > filters.limit
    page = page[: filters.limit]
    return {
        "items": [
            {
                "seq": e.seq,
                "occurred_at": e.occurred_at,
                "actor_type": e.actor_type,
                "actor": e.actor_label,
                "action": e.action,
                "target_type": e.target_type,
                "target_id": e.target_id,
                "source_ip": e.source_ip,
                "request_id": e.request_id,
                "details": e.details if isinstance(e.details, dict) else {},
                "hash": e.hash,
            }
            for e in page
        ],
        "next_cursor": page[-1].seq if more else None,
    }
