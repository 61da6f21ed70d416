"""Credential reports: one row per access key of an org (who made it, when, its status,
its last use, its requests in the last 30 days, its expiry), built by a worker in batches
with its progress saved as it goes, and downloaded as CSV or JSON. Asking for one and
downloading one are audited."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from accounts.models import Membership
from audit.export import neutralised
from audit.models import AuditAction, TargetType
from audit.trail import Actor, record

from . import usage
from .models import AccessKey, CredentialReport, ReportStatus

# Keys per batch: each costs the same few queries and saves the progress once.
REPORT_BATCH = 500
# Reports an org page lists.
RECENT_REPORTS = 5
# A report still unfinished this long after it was asked for is taken as lost (its worker
# died) and no longer stands in the way of a new one.
REPORT_TIMEOUT = timedelta(hours=1)
COLUMNS = [
    "access_key_id",
    "name",
    "creator",
    "created_at",
    "status",
    # A key's secret never changes: a new secret is a new key (rotation), so a key was
    # last rotated when it was created. ``rotated_from`` names the key it replaced.
    "last_rotated",
    "rotated_from",
    "last_used_at",
    "last_used_ip",
    "last_used_operation",
    "last_used_bucket",
    "requests_30_days",
    "expires_at",
    # What the key may do, in words (keys/scope.py: Scope.describe()).
    "scope",
]


def _time(value) -> str:
    return value.isoformat() if value else ""


def report_row(key: AccessKey, requests_30_days: int) -> dict[str, Any]:
    row = {
        "access_key_id": key.pk,
        "name": key.name,
        "creator": key.created_by.email if key.created_by else "",
        "created_at": _time(key.created_at),
        "status": key.status,
        "last_rotated": _time(key.created_at),
        "rotated_from": key.rotated_from_id or "",
        "last_used_at": _time(key.last_used_at),
        "last_used_ip": key.last_used_ip or "",
        "last_used_operation": key.last_used_operation,
        "last_used_bucket": key.last_used_bucket,
        "requests_30_days": requests_30_days,
        "expires_at": _time(key.expires_at),
        "scope": key.key_scope.describe(),
    }
    return row


def request_report(
    membership: Membership, actor: Actor, enqueue: Callable[[str], object]
) -> CredentialReport:
    """Ask for a new credential report of the member's org, built by ``enqueue`` (the
    build task's delay_on_commit) once this commits. While one is still queued or being
    built, that one is the answer and nothing new is recorded."""
    if not membership.can_read_usage:
        raise PermissionDenied("Only owners, admins and auditors can see the credential report.")
    org = membership.org
    with transaction.atomic():
        # One report at a time per org: the org's row lock orders two clicks at once.
        type(org).objects.select_for_update().filter(pk=org.pk).first()
        running = (
            CredentialReport.objects.filter(
                org=org,
                status__in=(ReportStatus.PENDING, ReportStatus.RUNNING),
                requested_at__gte=timezone.now() - REPORT_TIMEOUT,
            )
            .order_by("-requested_at")
            .first()
        )
        if running is not None:
            return running
        report = CredentialReport.objects.create(
            org=org,
            requested_by=membership.user,
            total=AccessKey.objects.for_org(org).count(),
        )
        record(
            actor,
            AuditAction.CREDENTIAL_REPORT_REQUESTED,
            org=org,
            target_type=TargetType.CREDENTIAL_REPORT,
            target_id=str(report.pk),
            details={"keys": report.total},
        )
        enqueue(str(report.pk))
    return report


def build_report(report_id: str, batch_size: int = REPORT_BATCH) -> bool:
    """Build a queued report; False when it was not queued (already built, or being built
    by another worker: the conditional update decides which one does the work)."""
    claimed = CredentialReport.objects.filter(pk=report_id, status=ReportStatus.PENDING).update(
        status=ReportStatus.RUNNING
    )
    if not claimed:
        return False
    report = CredentialReport.objects.select_related("org").get(pk=report_id)
    keys = AccessKey.objects.for_org(report.org).select_related("created_by").defer("secret_sealed")
    now = timezone.now()
    total = keys.count()
    CredentialReport.objects.filter(pk=report_id).update(total=total, done=0)
    rows: list[dict[str, Any]] = []
    last = None
    try:
        while True:
            batch_keys = keys.order_by("created_at", "id")
            if last is not None:
                batch_keys = batch_keys.exclude(created_at__lt=last.created_at).exclude(
                    created_at=last.created_at, id__lte=last.id
                )
            batch = list(batch_keys[:batch_size])
            if not batch:
                break
            totals = usage.request_totals(
                AccessKey.objects.filter(pk__in=[key.pk for key in batch]), now
            )
            rows.extend(report_row(key, totals.get(key.pk, (0, 0))[1]) for key in batch)
            last = batch[-1]
            CredentialReport.objects.filter(pk=report_id).update(done=len(rows))
    except Exception:
        CredentialReport.objects.filter(pk=report_id).update(
            status=ReportStatus.FAILED, finished_at=timezone.now()
        )
        raise
    CredentialReport.objects.filter(pk=report_id).update(
        status=ReportStatus.DONE,
        rows=rows,
        total=len(rows),
        done=len(rows),
        finished_at=timezone.now(),
    )
    return True


def recent_reports(org) -> list[CredentialReport]:
    return list(
        CredentialReport.objects.filter(org=org)
        .defer("rows")
        .select_related("requested_by")
        .order_by("-requested_at")[:RECENT_REPORTS]
    )


def download(
    membership: Membership, actor: Actor, report: CredentialReport, fmt: str
) -> tuple[str, str]:
    """The finished report as (content type, text) in ``fmt`` ("csv" or "json"), with
    the download recorded in the org's trail."""
    if not membership.can_read_usage:
        raise PermissionDenied("Only owners, admins and auditors can see the credential report.")
    with transaction.atomic():
        record(
            actor,
            AuditAction.CREDENTIAL_REPORT_DOWNLOADED,
            org=membership.org,
            target_type=TargetType.CREDENTIAL_REPORT,
            target_id=str(report.pk),
            details={"format": fmt, "keys": len(report.rows or [])},
        )
    rows = report.rows or []
    if fmt == "json":
        return "application/json", json.dumps(
            {"generated_at": _time(report.finished_at), "keys": rows}, indent=1
        )
    out = io.StringIO()
    names = list(rows[0]) if rows else list(COLUMNS)
    writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        # Key names are typed by users: one a spreadsheet would run as a formula is text.
        writer.writerow(
            {name: neutralised(v) if isinstance(v, str) else v for name, v in row.items()}
        )
    return "text/csv; charset=utf-8", out.getvalue()
