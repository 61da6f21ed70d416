"""Every page of the portal's URLconf, with arguments that resolve to real rows, for
tests that must hold on every page rather than on the ones someone thought of."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from accounts.models import Invitation, Membership, Role, hash_token
from accounts.tokens import create_api_token
from audit.trail import Actor
from keys.models import AccessKey, CredentialReport, ReportStatus
from tests.conftest import new_key

INVITATION_TOKEN = "an-invitation-token-for-the-walk"


def _routes(entries, prefix: str = "") -> Iterator[tuple[str, list[str], dict]]:
    for entry in entries:
        if isinstance(entry, URLResolver):
            # Namespaced includes are the JSON API's own routes, not pages.
            if entry.namespace is None:
                yield from _routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern) and entry.name:
            parameters = set(getattr(entry.pattern, "converters", {})) | set(
                re.findall(r"<(?:\w+:)?(\w+)>", prefix)
            )
            yield entry.name, sorted(parameters), entry.default_args


def every_url(arguments: dict[str, str]) -> dict[str, str]:
    """URL name -> a URL of that route, for every named route outside the API."""
    urls = {}
    for name, parameters, defaults in _routes(get_resolver().url_patterns):
        urls[name] = reverse(
            name, kwargs={p: arguments[p] for p in parameters if p not in defaults}
        )
    return urls


@pytest.fixture
def key(owner: Membership) -> AccessKey:
    return new_key(owner)[0]


@pytest.fixture
def url_arguments(owner: Membership, member: Membership, key: AccessKey) -> dict[str, str]:
    """A value for every URL parameter of the URLconf, each naming a row of Acme's."""
    invitation = Invitation.objects.create(
        org=owner.org,
        email="new@acme.test",
        role=Role.MEMBER,
        token_hash=hash_token(INVITATION_TOKEN),
        invited_by_id=owner.user_id,
        expires_at=timezone.now() + timedelta(days=1),
    )
    token = create_api_token(owner, Actor.for_user(owner.user), "ci").token
    report = CredentialReport.objects.create(
        org=owner.org, status=ReportStatus.DONE, rows=[], finished_at=timezone.now()
    )
    return {
        "slug": owner.org.slug,
        "key_id": key.pk,
        "user_id": str(member.user_id),
        "invitation_id": str(invitation.pk),
        "token_id": str(token.pk),
        "report_id": str(report.pk),
        "token": INVITATION_TOKEN,
        "uidb64": "MQ",
        # A two-factor device of nobody's: its removal page answers 404.
        "kind": "totp",
        "device_id": "999999",
    }
