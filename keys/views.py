from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import trigger_client_event

from accounts.access import membership_for
from accounts.models import Membership
from audit.models import AuditAction, AuditEvent, TargetType
from audit.trail import Actor
from excloud_portal.redirects import safe_next
from mfa.reauth import reauth_required

from . import charts, expiry, scope_text, services, snippets, usage
from .credentials import ACCESS_KEY_ID_RE
from .cursors import InvalidCursor, page_of
from .forms import CreateKeyForm, RevokeKeyForm, RotateKeyForm, ScopeForm
from .models import AccessKey, KeyUsage
from .policy import policy_for
from .scope import Scope, ScopeError

PAGE_SIZE = 50
HISTORY_SIZE = 50
# The detail page's usage table: this many hours back, one row per hour with traffic.
USAGE_HOURS = 24


def _get_key(membership: Membership, key_id: str) -> AccessKey:
    """The org's key with this ID; anything else, malformed or another org's, is 404."""
    if not ACCESS_KEY_ID_RE.match(key_id):
        raise Http404
    return get_object_or_404(AccessKey.objects.for_table(), org=membership.org, pk=key_id)


def _with_denied_counts(keys):
    """Each key with ``denied_recent``: refused requests naming it in the last week."""
    counts = usage.denied_counts([key.pk for key in keys])
    for key in keys:
        key.denied_recent = counts.get(key.pk, 0)
    return keys


def _with_permissions(keys, membership: Membership):
    for key in keys:
        key.can_change = key.is_live and membership.can_change_key(key)
        key.can_rotate = key.is_live and membership.can_rotate_key(key)
        key.can_reactivate = membership.can_reactivate_key(key)
        key.scope_view = key.key_scope
        key.scope_badge = scope_text.badge(key.scope_view)
        key.scope_limited = scope_text.is_limited(key.scope_view)
    return keys


@require_GET
@login_required
def key_list(request: HttpRequest, slug: str) -> HttpResponse:
    membership = membership_for(request, slug)
    tab = "retired" if request.GET.get("tab") == "retired" else "live"
    query = request.GET.get("q", "").strip()[:100]
    keys = AccessKey.objects.for_org(membership.org).for_table()
    keys = keys.retired() if tab == "retired" else keys.live()
    keys = keys.matching(query)
    after = request.GET.get("after", "")
    try:
        page = page_of(keys, PAGE_SIZE, after)
    except InvalidCursor:
        # A page link that was edited or cut short: show the newest keys instead.
        after = ""
        page = page_of(keys, PAGE_SIZE)
    now = timezone.now()
    policy = policy_for(membership.org)
    context = {
        "membership": membership,
        "org": membership.org,
        "keys": _with_denied_counts(
            expiry.add_hints(_with_permissions(page.keys, membership), policy, now)
        ),
        "denied_days": usage.RECENT_DAYS,
        "due_soon_count": expiry.count_due_within_warning(membership.org, now)
        if tab == "live"
        else None,
        "policy": policy,
        "tab": tab,
        "query": query,
        "next_cursor": page.next_cursor,
        "paged": bool(after),
        "form": CreateKeyForm(max_age_days=policy.max_age_days)
        if membership.can_create_keys
        else None,
    }
    template = "keys/key_list.html"
    if request.htmx and request.htmx.target == "key-table":
        template += "#key-table"
    return render(request, template, context)


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
@reauth_required
def key_create(request: HttpRequest, slug: str) -> HttpResponse:
    membership = membership_for(request, slug)
    if not membership.can_create_keys:
        raise PermissionDenied("Auditors cannot create keys.")
    context = {"membership": membership, "org": membership.org}
    partial = "#create-panel" if request.htmx else ""
    max_age = policy_for(membership.org).max_age_days
    form = CreateKeyForm(request.POST if request.method == "POST" else None, max_age_days=max_age)
    if request.method == "POST" and form.is_valid():
        try:
            created = services.create_key(
                membership,
                Actor.from_request(request),
                form.cleaned_data["name"],
                creation_token=form.cleaned_data["creation_token"],
                expires_at=form.cleaned_data["expires_at"],
                scope=form.cleaned_data["scope"],
            )
        except services.InvalidExpiry as e:
            form.add_error("expires_on", str(e))
        except services.AccessKeyError as e:
            form.add_error("name", str(e))
        else:
            context.update(
                created=created,
                key=_with_permissions([created.key], membership)[0],
                form=CreateKeyForm(max_age_days=max_age),
                snippet_tabs=snippets.tabs(created.key.pk, created.secret, created.key.key_scope)
                if created.is_new
                else None,
                # Every name the template looks up is set: a failed lookup is logged with
                # the whole context, secret included.
                configure_command=None,
            )
            # The only response that ever holds the secret: rendered once, never stored.
            response = render(request, "keys/key_created.html" + partial, context)
            if request.htmx:
                trigger_client_event(response, "keysChanged")
            return response
    context["form"] = form
    status = 400 if form.errors and not request.htmx else 200
    return render(request, "keys/key_create.html" + partial, context, status=status)


@require_GET
@login_required
def key_detail(request: HttpRequest, slug: str, key_id: str) -> HttpResponse:
    membership = membership_for(request, slug)
    key = _with_permissions([_get_key(membership, key_id)], membership)[0]
    expiry.add_hints([key], policy_for(membership.org), timezone.now())
    # The key's own events, and the rotation that created it (recorded on the old key).
    history = (
        AuditEvent.objects.filter(org=membership.org)
        .filter(
            Q(target_type=TargetType.ACCESS_KEY, target_id=key.pk)
            | Q(action=AuditAction.ACCESS_KEY_ROTATED, details__replacement=key.pk)
        )
        .order_by("-seq")[:HISTORY_SIZE]
    )
    history = [_with_scope_words(event) for event in history]
    hourly = KeyUsage.objects.recent(key, USAGE_HOURS)
    days = usage.key_days(key.pk)
    return render(
        request,
        "keys/key_detail.html",
        {
            "membership": membership,
            "org": membership.org,
            "key": key,
            "history": history,
            "usage": hourly,
            "usage_hours": USAGE_HOURS,
            "period": days,
            "period_days": usage.PERIOD_DAYS,
            "charts": charts.charts(days),
            "top_sources": usage.top_sources(key.pk),
            "top_buckets": usage.top_buckets(key.pk),
            "denied_sources": usage.denied_sources(key),
            "denied_days": usage.PERIOD_DAYS,
            "stopped": usage.STOPPED.get(key.status, ""),
            # Live keys only: the snippets, with a placeholder where the secret goes.
            "snippet_tabs": snippets.tabs(key.pk, scope=key.scope_view) if key.is_live else None,
            "configure_command": snippets.configure_command_html(key.pk),
        },
    )


def _with_scope_words(event: AuditEvent) -> AuditEvent:
    """The scope an event set, in words, for the key's history: what a narrowing changed
    from and to, what a creation gave."""
    details = event.details if isinstance(event.details, dict) else {}
    try:
        if event.action == AuditAction.ACCESS_KEY_SCOPE_NARROWED:
            before, after = Scope.from_json(details["from"]), Scope.from_json(details["to"])
            event.scope_words = f"from {before.describe()} to {after.describe()}"
        elif event.action == AuditAction.ACCESS_KEY_CREATED and "scope" in details:
            event.scope_words = Scope.from_json(details["scope"]).describe()
    except (KeyError, TypeError, ScopeError):
        pass  # An event written before scopes, or not by this code: its action says enough.
    return event


def _after_change(
    request: HttpRequest, membership: Membership, key: AccessKey, message: str, error: bool = False
) -> HttpResponse:
    """Answer a status change: the updated row for htmx, a redirect back otherwise."""
    if request.htmx:
        key = _with_denied_counts(_with_permissions([_get_key(membership, key.pk)], membership))[0]
        return render(
            request,
            "keys/_key_change.html",
            {
                "membership": membership,
                "org": membership.org,
                "key": key,
                "message": message,
                "error": error,
                "denied_days": usage.RECENT_DAYS,
            },
        )
    (messages.error if error else messages.success)(request, message)
    return redirect(safe_next(request, reverse("key_list", args=[membership.org.slug])))


def _status_view(change, done: str):
    @require_POST
    @login_required
    def view(request: HttpRequest, slug: str, key_id: str) -> HttpResponse:
        membership = membership_for(request, slug)
        key = _get_key(membership, key_id)
        try:
            key = change(membership, Actor.from_request(request), key)
        except services.AccessKeyError as e:
            return _after_change(request, membership, key, str(e), error=True)
        return _after_change(request, membership, key, f"Key “{key.name}” {done}.")

    return view


key_deactivate = _status_view(
    services.deactivate_key, "is deactivated; requests signed with it fail"
)
key_reactivate = _status_view(services.reactivate_key, "is active again")


@require_http_methods(["GET", "POST"])
@login_required
def key_revoke(request: HttpRequest, slug: str, key_id: str) -> HttpResponse:
    membership = membership_for(request, slug)
    key = _get_key(membership, key_id)
    if not membership.can_change_key(key):
        raise PermissionDenied
    form = RevokeKeyForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            key = services.revoke_key(
                membership, Actor.from_request(request), key, form.cleaned_data["reason"]
            )
        except services.AccessKeyError as e:
            return _after_change(request, membership, key, str(e), error=True)
        return _after_change(
            request,
            membership,
            key,
            f"Key “{key.name}” is revoked. Requests signed with it now fail.",
        )
    template = "keys/key_revoke.html#modal" if request.htmx else "keys/key_revoke.html"
    return render(
        request,
        template,
        {
            "membership": membership,
            "org": membership.org,
            "key": key,
            "form": form,
            # Where Cancel leads and the revoke returns to: only ever a page of this site.
            "next": safe_next(request),
        },
    )


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
@reauth_required
def key_rotate(request: HttpRequest, slug: str, key_id: str) -> HttpResponse:
    membership = membership_for(request, slug)
    key = _with_permissions([_get_key(membership, key_id)], membership)[0]
    if not key.is_live:
        raise Http404
    if not membership.can_rotate_key(key):
        raise PermissionDenied(services.MAY_NOT_ROTATE)
    context = {"membership": membership, "org": membership.org, "old": key}
    form = RotateKeyForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            created = services.rotate_key(
                membership,
                Actor.from_request(request),
                key,
                overlap=timedelta(hours=form.cleaned_data["overlap_hours"]),
                name=form.cleaned_data["name"],
            )
        except services.AccessKeyError as e:
            form.add_error("name" if isinstance(e, services.KeyNameTaken) else None, str(e))
        else:
            key.refresh_from_db()
            context.update(
                created=created,
                key=_with_permissions([created.key], membership)[0],
                snippet_tabs=snippets.tabs(created.key.pk, created.secret, created.key.key_scope),
                # Every name the template looks up is set: a failed lookup is logged with
                # the whole context, secret included.
                configure_command=None,
            )
            # The only response that ever holds the new secret: rendered once, never stored.
            return render(request, "keys/key_rotated.html", context)
    context["form"] = form
    return render(request, "keys/key_rotate.html", context, status=400 if form.errors else 200)


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def key_scope(request: HttpRequest, slug: str, key_id: str) -> HttpResponse:
    """Narrow a live key's scope: the form, pre-filled with the current scope; then a
    confirmation that shows the scope before and after; then the change."""
    membership = membership_for(request, slug)
    key = _with_permissions([_get_key(membership, key_id)], membership)[0]
    if not key.is_live:
        raise Http404
    if not membership.can_change_key(key):
        raise PermissionDenied("Only owners, admins and the key's creator can change its scope.")
    current = key.scope_view
    form = ScopeForm(
        request.POST if request.method == "POST" else None,
        initial=ScopeForm.initial_for(current),
    )
    context = {"membership": membership, "org": membership.org, "key": key, "form": form}
    if request.method == "POST" and form.is_valid():
        scope = form.cleaned_data["scope"]
        if scope == current:
            form.add_error(None, "That is the key's scope already; change something to narrow it.")
        elif "edit" not in request.POST:
            try:
                services.check_narrowing(key, scope)
                if "confirm" in request.POST:
                    services.narrow_key_scope(membership, Actor.from_request(request), key, scope)
            except services.ScopeWidened as e:
                form.add_error(None, str(e))
            except services.AccessKeyError as e:
                messages.error(request, str(e))
                return redirect("key_detail", membership.org.slug, key.pk)
            else:
                if "confirm" in request.POST:
                    messages.success(request, f"Key “{key.name}” may now do {scope.describe()}.")
                    return redirect("key_detail", membership.org.slug, key.pk)
                context.update(
                    confirming=True,
                    before=current,
                    after=scope,
                    before_badge=scope_text.badge(current),
                    after_badge=scope_text.badge(scope),
                )
    status = 400 if form.errors else 200
    return render(request, "keys/key_scope.html", context, status=status)
