"""The org's buckets page (owners, admins and auditors): each bucket the org holds, who
made it, and which keys used it lately."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from keys import usage
from keys.usage_views import require_usage_reader

from .models import Bucket

PAGE_SIZE = 100
# Keys listed per bucket, most requests first; the rest are summed up in one line.
USERS_SHOWN = 10


@require_GET
@login_required
def bucket_list(request: HttpRequest, slug: str) -> HttpResponse:
    membership = require_usage_reader(request, slug)
    org = membership.org
    try:
        page = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        page = 1
    buckets = list(
        Bucket.objects.for_org(org)
        .select_related("created_by_key__created_by")
        .order_by("name")[(page - 1) * PAGE_SIZE : page * PAGE_SIZE + 1]
    )
    more = len(buckets) > PAGE_SIZE
    buckets = buckets[:PAGE_SIZE]
    users = usage.bucket_users(org, [bucket.name for bucket in buckets])
    for bucket in buckets:
        used_by = users.get(bucket.name, [])
        bucket.users = used_by[:USERS_SHOWN]
        rest = used_by[USERS_SHOWN:]
        bucket.more_keys = len(rest)
        bucket.more_requests = sum(use.requests for use in rest)
    return render(
        request,
        "gateway/bucket_list.html",
        {
            "membership": membership,
            "org": org,
            "buckets": buckets,
            "page": page,
            "more": more,
            "period_days": usage.PERIOD_DAYS,
        },
    )
