"""The org's usage page (owners, admins and auditors): every key's recent traffic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from accounts.access import membership_for
from accounts.models import Membership
from audit.trail import Actor

from . import reports, tasks, usage
from .models import LIVE_STATUSES, AccessKey, CredentialReport, ReportStatus
from .policy import policy_for

PAGE_SIZE = 100
UNUSED_FLAG_DAYS = 30
SPARK_WIDTH = 60
SPARK_HEIGHT = 16
# Sort name → what its column header says, in the table's column order.
SORTS = {
    "name": "Name",
    "status": "Status",
    "requests_30": "Requests, 30 days",
    "requests_7": "Requests, 7 days",
    "last_used": "Last used",
    "age": "Age",
}
DEFAULT_SORT = "requests_30"


@dataclass(slots=True)
class UsageRow:
    """One key's row. Every key of the org gets one, from a few columns, to be sorted;
    only the shown page's rows get their ``key`` and sparkline."""

    key_id: str
    name: str
    status: str
    last_used_at: datetime | None
    requests_7: int
    requests_30: int
    age_days: int
    unused: bool
    too_old: bool
    key: AccessKey | None = None
    spark: str = ""
    spark_max: int = 0


def require_usage_reader(request: HttpRequest, slug: str) -> Membership:
    """The user's membership if it may read the org's usage; 404 for non-members, 403
    for members without the role."""
    membership = membership_for(request, slug)
    if not membership.can_read_usage:
        raise PermissionDenied("Only owners, admins and auditors can read the org's usage.")
    return membership


def _sort_key(sort: str):
    never = datetime.min.replace(tzinfo=timezone.get_current_timezone())
    return {
        "requests_30": lambda row: (row.requests_30, row.requests_7, row.key_id),
        "requests_7": lambda row: (row.requests_7, row.requests_30, row.key_id),
        "last_used": lambda row: (row.last_used_at or never, row.key_id),
        "age": lambda row: (row.age_days, row.key_id),
        "name": lambda row: (row.name.lower(), row.key_id),
        "status": lambda row: (row.status, row.key_id),
    }[sort]


def sparkline(values: list[int]) -> str:
    """The points of an SVG polyline of ``values``, scaled to SPARK_WIDTH × SPARK_HEIGHT."""
    top = max(values, default=0) or 1
    step = SPARK_WIDTH / max(len(values) - 1, 1)
    return " ".join(
        f"{round(index * step, 1)},{round(SPARK_HEIGHT - 1 - (SPARK_HEIGHT - 2) * v / top, 1)}"
        for index, v in enumerate(values)
    )


@require_GET
@login_required
def org_usage(request: HttpRequest, slug: str) -> HttpResponse:
    membership = require_usage_reader(request, slug)
    org = membership.org
    sort = request.GET.get("sort", DEFAULT_SORT)
    if sort not in SORTS:
        sort = DEFAULT_SORT
    # Names and ages read naturally A→Z and youngest first; counts and dates most first.
    descending = request.GET.get("order", "desc" if sort not in ("name",) else "asc") != "asc"
    show = "all" if request.GET.get("show") == "all" else "live"
    try:
        page = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        page = 1
    now = timezone.now()
    policy = policy_for(org)
    keys = AccessKey.objects.for_org(org)
    if show == "live":
        keys = keys.live()
    totals = usage.request_totals(keys, now)
    unused_before = now - timedelta(days=UNUSED_FLAG_DAYS)
    rows = []
    # A few columns of every key, not whole keys: sorting 10,000 keys needs no more.
    columns = keys.values_list("pk", "name", "status", "created_at", "last_used_at")
    for key_id, name, status, created_at, last_used_at in columns:
        recent, whole = totals.get(key_id, (0, 0))
        age = (now - created_at).days
        live = status in LIVE_STATUSES
        rows.append(
            UsageRow(
                key_id=key_id,
                name=name,
                status=status,
                last_used_at=last_used_at,
                requests_7=recent,
                requests_30=whole,
                age_days=age,
                unused=live and (last_used_at or created_at) < unused_before,
                too_old=live and bool(policy.max_age_days) and age >= policy.max_age_days,
            )
        )
    rows.sort(key=_sort_key(sort), reverse=descending)
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = min(page, pages)
    shown = rows[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
    ids = [row.key_id for row in shown]
    full = AccessKey.objects.for_table().in_bulk(ids)
    days = usage.daily_totals(ids, usage.PERIOD_DAYS, now)
    for row in shown:
        row.key = full[row.key_id]
        values = days[row.key_id].requests
        row.spark = sparkline(values)
        row.spark_max = max(values, default=0)
    return render(
        request,
        "keys/org_usage.html",
        {
            "membership": membership,
            "org": org,
            "rows": shown,
            "count": len(rows),
            "unused_count": sum(row.unused for row in rows),
            "too_old_count": sum(row.too_old for row in rows),
            "policy": policy,
            "sorts": SORTS,
            "sort": sort,
            "sort_label": SORTS[sort],
            "order": "desc" if descending else "asc",
            "show": show,
            "page": page,
            "pages": pages,
            "unused_days": UNUSED_FLAG_DAYS,
            "spark_width": SPARK_WIDTH,
            "spark_height": SPARK_HEIGHT,
        },
    )


@require_http_methods(["GET", "POST"])
@login_required
def credential_report(request: HttpRequest, slug: str) -> HttpResponse:
    """The org's credential reports: ask for a new one, watch it being built, download it."""
    membership = require_usage_reader(request, slug)
    if request.method == "POST":
        reports.request_report(
            membership, Actor.from_request(request), tasks.build_credential_report.delay_on_commit
        )
        if not request.htmx:
            return redirect("credential_report", slug=membership.org.slug)
    recent = reports.recent_reports(membership.org)
    template = "keys/credential_report.html"
    if request.htmx:
        template += "#report-list"
    return render(
        request,
        template,
        {
            "membership": membership,
            "org": membership.org,
            "reports": recent,
            "working": any(not report.is_finished for report in recent),
            "columns": reports.COLUMNS,
        },
    )


@require_GET
@login_required
def credential_report_download(
    request: HttpRequest, slug: str, report_id: str, fmt: str
) -> HttpResponse:
    membership = require_usage_reader(request, slug)
    report = get_object_or_404(
        CredentialReport, pk=report_id, org=membership.org, status=ReportStatus.DONE
    )
    content_type, text = reports.download(membership, Actor.from_request(request), report, fmt)
    response = HttpResponse(text, content_type=content_type)
    stamp = report.finished_at.strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = (
        f'attachment; filename="credential-report-{membership.org.slug}-{stamp}.{fmt}"'
    )
    return response
