"""How the audit trail finds and names access keys (registered in keys.apps)."""

from __future__ import annotations

from audit.targets import TargetKind

from .credentials import ACCESS_KEY_ID_RE
from .models import AccessKey


def find_keys(org, text: str) -> list[str]:
    """A key ID as typed (no query), or the org's keys, live or retired, of that name."""
    if ACCESS_KEY_ID_RE.match(text.upper()):
        return [text.upper()]
    return list(
        AccessKey.objects.for_org(org).filter(name__iexact=text).values_list("id", flat=True)
    )


def key_names(org, ids: set[str]) -> dict[str, str]:
    return dict(AccessKey.objects.for_org(org).filter(pk__in=ids).values_list("id", "name"))


ACCESS_KEYS = TargetKind(find=find_keys, names=key_names)
