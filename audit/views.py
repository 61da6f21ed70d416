from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from accounts.access import membership_for
from accounts.models import Membership

from . import export, export_slots, targets
from .forms import AuditFilterForm
from .models import AuditAction, AuditEvent, TargetType
from .trail import Actor, record

PAGE_SIZE = 50
# Rows the database hands over per fetch of the export's server-side cursor.
EXPORT_FETCH_SIZE = 2000
SUMMARY_MAX_LENGTH = 120
# seq is a bigint; a larger cursor would make PostgreSQL refuse the query.
MAX_SEQ = 2**63 - 1


def _audit_membership(request: HttpRequest, slug: str) -> Membership:
    """The user's membership if it may read the org's trail; 404 for non-members."""
    membership = membership_for(request, slug)
    if not membership.can_read_audit:
        raise PermissionDenied("Only owners, admins and auditors can read the audit log.")
    return membership


def _cursor(value: str) -> int | None:
    """The seq to continue below; anything that is not one means the newest page."""
    try:
        seq = int(value)
    except ValueError:
        return None
    return seq if 1 <= seq <= MAX_SEQ else None


def summary(details: dict[str, Any]) -> str:
    """The details as one short line, "name: laptop · via: web", in the same order whatever
    order the database keeps JSON keys in."""
    parts = []
    for name, value in sorted(details.items()):
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        parts.append(f"{name}: {value}")
    line = " · ".join(parts)
    return line if len(line) <= SUMMARY_MAX_LENGTH else line[: SUMMARY_MAX_LENGTH - 1] + "…"


def _for_table(events: list[AuditEvent], org) -> list[AuditEvent]:
    """Give each event its details line and, for the org's keys, the key's name to link."""
    key_ids = {e.target_id for e in events if e.target_type == TargetType.ACCESS_KEY}
    names = targets.names(org, TargetType.ACCESS_KEY, key_ids)
    for event in events:
        event.summary = (
            summary(targets.in_words(event.target_type, event.details))
            if isinstance(event.details, dict)
            else ""
        )
        event.key_name = (
            names.get(event.target_id) if event.target_type == TargetType.ACCESS_KEY else None
        )
    return events


@require_GET
@login_required
def audit_list(request: HttpRequest, slug: str) -> HttpResponse:
    membership = _audit_membership(request, slug)
    form = AuditFilterForm(request.GET)
    before = _cursor(request.GET.get("before", ""))
    context: dict[str, Any] = {"membership": membership, "org": membership.org, "form": form}
    if form.is_valid():
        audit_filter = form.to_filter()
        events = audit_filter.events(membership.org)
        if before is not None:
            events = events.filter(seq__lt=before)
        page = list(events[: PAGE_SIZE + 1])
        context.update(
            events=_for_table(page[:PAGE_SIZE], membership.org),
            filtered=bool(audit_filter),
            params=urlencode(audit_filter.as_params()),
            next_cursor=page[PAGE_SIZE - 1].seq if len(page) > PAGE_SIZE else None,
            paged=before is not None,
        )
    template = "audit/audit_list.html"
    if request.htmx and request.htmx.target == "audit-table":
        template += "#audit-table"
    status = 400 if form.errors and not request.htmx else 200
    return render(request, template, context, status=status)


def _stream(fmt: str, rows: Iterable[tuple]):
    return export.csv_chunks(rows) if fmt == "csv" else export.jsonl_chunks(rows)


@never_cache
@require_GET
@login_required
def audit_export(request: HttpRequest, slug: str, fmt: str) -> HttpResponse:
    membership = _audit_membership(request, slug)
    org = membership.org
    form = AuditFilterForm(request.GET)
    if not form.is_valid():
        problems = [str(e) for errors in form.errors.values() for e in errors]
        return HttpResponse(
            "Nothing exported: " + " ".join(problems) + "\n",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    audit_filter = form.to_filter()
    slot = export_slots.take(request.user.pk)
    if slot is None:
        response = render(
            request,
            "audit/export_busy.html",
            {
                "membership": membership,
                "org": org,
                "limit": settings.EXCLOUD_AUDIT_EXPORT_CONCURRENCY,
                "retry_after": export_slots.RETRY_AFTER,
            },
            status=429,
        )
        response["Retry-After"] = str(export_slots.RETRY_AFTER)
        return response
    try:
        with transaction.atomic():
            exported = record(
                Actor.from_request(request),
                AuditAction.AUDIT_EXPORTED,
                org=org,
                target_type=TargetType.ORG,
                target_id=org.slug,
                details={"format": fmt, "filters": audit_filter.as_params()},
            )
    except BaseException:
        slot.release()
        raise
    # The export holds the events before its own: what the reader saw when they asked.
    rows = (
        audit_filter.events(org)
        .filter(seq__lt=exported.seq)
        .values_list(*export.FIELDS)
        .iterator(chunk_size=EXPORT_FETCH_SIZE)
    )
    response = StreamingHttpResponse(
        export_slots.Holding(_stream(fmt, rows), slot), content_type=export.FORMATS[fmt]
    )
    today = timezone.now().date().isoformat()
    response["Content-Disposition"] = f'attachment; filename="{org.slug}-audit-{today}.{fmt}"'
    return response
