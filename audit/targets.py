"""What the audit trail knows of the things its events are about: what their apps tell it.

The trail sits below the apps whose changes it records, so it imports none of them. An app
that owns a target type registers, when Django starts, how to find its targets from what a
reader types into the filter and what to call them on the page (keys.apps does so for
access keys).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TargetKind:
    # (org, text) -> the IDs of the org's targets the text names: an ID, or a name.
    find: Callable[[Any, str], list[str]]
    # (org, IDs) -> the name of each of those IDs that is one of the org's targets.
    names: Callable[[Any, set[str]], dict[str, str]]
    # An event's details -> the same details with the values only the app can read put
    # in words (the audit page's one-line summary); None leaves them as stored.
    words: Callable[[dict[str, Any]], dict[str, Any]] | None = None


_KINDS: dict[str, TargetKind] = {}


def register(target_type: str, kind: TargetKind) -> None:
    _KINDS[target_type] = kind


def registered() -> dict[str, TargetKind]:
    return dict(_KINDS)


def names(org, target_type: str, ids: set[str]) -> dict[str, str]:
    """The names of the org's targets of this type among ``ids``; no query for none."""
    kind = _KINDS.get(target_type)
    return kind.names(org, ids) if kind is not None and ids else {}


def in_words(target_type: str, details: dict[str, Any]) -> dict[str, Any]:
    """An event's details as its target's app puts them in words, for reading."""
    kind = _KINDS.get(target_type)
    return kind.words(details) if kind is not None and kind.words is not None else details
