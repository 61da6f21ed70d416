"""How the audit trail finds and names access keys (registered in keys.apps)."""

from __future__ import annotations

from audit.targets import TargetKind

from .credentials import ACCESS_KEY_ID_RE
from .models import AccessKey
from .scope import Scope, ScopeError

# Details that hold a scope as stored (Scope.as_api()): the creation's, a narrowing's.
SCOPE_DETAILS = ("scope", "from", "to")


def find_keys(org, text: str) -> list[str]:
    """A key ID as typed (no query), or the org's keys, live or retired, of that name."""
    if ACCESS_KEY_ID_RE.match(text.upper()):
        return [text.upper()]
    return list(
        AccessKey.objects.for_org(org).filter(name__iexact=text).values_list("id", flat=True)
    )


def key_names(org, ids: set[str]) -> dict[str, str]:
    return dict(AccessKey.objects.for_org(org).filter(pk__in=ids).values_list("id", "name"))


def details_in_words(details: dict) -> dict:
    """A scope in an event's details as the one line that says what it allows."""
    words = dict(details)
    for name in SCOPE_DETAILS:
        value = words.get(name)
        if isinstance(value, dict):
            try:
                words[name] = Scope.from_json(value).describe()
            except ScopeError:
                pass
    return words


ACCESS_KEYS = TargetKind(find=find_keys, names=key_names, words=details_in_words)
