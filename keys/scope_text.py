"""A key's scope as people write and read it in the portal: the one-line badge of the keys
list, the `bucket` or `bucket/prefix` lines of the dashboard's forms, and the comment line
that credential snippets carry."""

from __future__ import annotations

from .scope import ADMIN, Scope


def badge(scope: Scope) -> str:
    """Compact, for a table cell: ``read-only · 2 buckets · IP-limited``."""
    parts = [scope.permission]
    if scope.buckets is None:
        parts.append("all buckets")
    elif len(scope.buckets) == 1:
        parts.append(scope.buckets[0].describe())
    else:
        parts.append(f"{len(scope.buckets)} buckets")
    if scope.networks:
        parts.append("IP-limited")
    return " · ".join(parts)


def is_limited(scope: Scope) -> bool:
    return scope.permission != ADMIN or scope.buckets is not None or bool(scope.networks)


def bucket_lines(scope: Scope) -> str:
    """The scope's buckets as the form's textarea holds them; empty for all buckets."""
    if scope.buckets is None:
        return ""
    return "\n".join(
        f"{grant.name}/{grant.prefix}" if grant.prefix else grant.name for grant in scope.buckets
    )


def network_lines(scope: Scope) -> str:
    return "\n".join(net.compressed for net in scope.networks)


def parse_bucket_lines(text: str) -> list[tuple[str, str]] | None:
    """``bucket`` or ``bucket/prefix`` per line (the prefix is everything after the first
    slash); None when there are none, meaning all buckets."""
    grants = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        name, _, prefix = line.partition("/")
        grants.append((name.strip(), prefix))
    return grants or None


def parse_network_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def comment_text(scope: Scope) -> str:
    """The scope for a one-line comment: characters that could end or bend the line
    (line and paragraph separators, controls, bidirectional marks) written as escapes."""
    text = f"Scope: {scope.describe()}"
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
    )
