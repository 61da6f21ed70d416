"""A key's scope: which buckets (and object-name prefixes) it may touch, how, and from
which source addresses.

Django-free, so the gateway decides with the same object the portal stores. A scope is
kept on the key as JSON (``AccessKey.scope``); an empty object is the default scope,
which is what every key had before scopes existed: admin on all of the org's buckets,
from anywhere.

A scope has three parts, each narrowing the key on its own:

- ``permission``: ``read-only`` (get, head, list), ``read-write`` (also put, delete,
  multipart, copy) or ``admin`` (also create and delete buckets and change their
  settings);
- ``buckets``: None for all of the org's buckets, or grants naming buckets, each
  optionally narrowed to object names that start with a prefix;
- ``networks``: empty for any source address, or the CIDRs requests may come from.

A live key's scope may be narrowed, never widened (``Scope.within``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

READ_ONLY = "read-only"
READ_WRITE = "read-write"
ADMIN = "admin"
# Narrowest first: a permission allows what every one before it allows.
PERMISSIONS = (READ_ONLY, READ_WRITE, ADMIN)
PERMISSION_WORDS = {
    READ_ONLY: "read-only (get, head and list objects)",
    READ_WRITE: "read-write (also put, delete, multipart uploads and copies)",
    ADMIN: "admin (also create and delete buckets and change their settings)",
}

# What an S3 operation needs, as gateway/operations.py names it, and the least
# permission that allows it.
ACCESS_READ = "read"
ACCESS_WRITE = "write"
ACCESS_ADMIN = "admin"
_LEAST_PERMISSION = {ACCESS_READ: READ_ONLY, ACCESS_WRITE: READ_WRITE, ACCESS_ADMIN: ADMIN}

MAX_BUCKETS = 100
MAX_NETWORKS = 50
MAX_PREFIX_BYTES = 1024
# S3's bucket naming rules, as far as a name alone can be checked.
BUCKET_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ScopeError(ValueError):
    """A scope that cannot be stored, with a message for the person who asked for it."""


def _check_bucket_name(name: str) -> str:
    if not isinstance(name, str) or not BUCKET_NAME_RE.match(name) or ".." in name:
        raise ScopeError(
            f"“{name}” is not a bucket name: use 3–63 lowercase letters, digits, dots and "
            "hyphens, starting and ending with a letter or digit."
        )
    return name


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str):
        raise ScopeError("A prefix must be text.")
    if len(prefix.encode("utf-8")) > MAX_PREFIX_BYTES:
        raise ScopeError(f"A prefix may be at most {MAX_PREFIX_BYTES} bytes.")
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in prefix):
        raise ScopeError("A prefix may not contain control characters.")
    return prefix


def parse_network(value: str) -> Network:
    """A CIDR (``10.0.0.0/8``, ``2001:db8::/32``) or a single address; ScopeError when it
    is neither, or has host bits set (``10.1.2.3/8`` is refused, not silently widened)."""
    if not isinstance(value, str):
        raise ScopeError("An allowed address must be text, such as 203.0.113.0/24.")
    text = value.strip()
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        raise ScopeError(
            f"“{text}” is not an IP address or network: use a form such as 203.0.113.7, "
            "203.0.113.0/24 or 2001:db8::/32."
        ) from None


@dataclass(frozen=True, slots=True)
class BucketGrant:
    """One bucket a scoped key may touch; with a prefix, only object names that start
    with it."""

    name: str
    prefix: str = ""

    def __post_init__(self) -> None:
        _check_bucket_name(self.name)
        _check_prefix(self.prefix)

    def covers_object(self, key: str) -> bool:
        return key.startswith(self.prefix)

    def covers_prefix(self, prefix: str) -> bool:
        """Does every name that starts with ``prefix`` lie inside this grant?"""
        return prefix.startswith(self.prefix)

    def within(self, wider: BucketGrant) -> bool:
        return self.name == wider.name and self.prefix.startswith(wider.prefix)

    def describe(self) -> str:
        return f"{self.name}/{self.prefix}*" if self.prefix else self.name


@dataclass(frozen=True, slots=True)
class Scope:
    permission: str = ADMIN
    # None: every bucket of the org. Otherwise one grant per bucket, sorted by name.
    buckets: tuple[BucketGrant, ...] | None = None
    # Empty: any source address.
    networks: tuple[Network, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.permission not in PERMISSIONS:
            raise ScopeError(f"Choose a permission: {', '.join(PERMISSIONS)}.")
        if self.buckets is not None:
            if not self.buckets:
                raise ScopeError("Name at least one bucket, or allow all buckets.")
            if len(self.buckets) > MAX_BUCKETS:
                raise ScopeError(f"A key may name at most {MAX_BUCKETS} buckets.")
            names = [grant.name for grant in self.buckets]
            if len(set(names)) != len(names):
                raise ScopeError("Name each bucket once.")
            object.__setattr__(
                self, "buckets", tuple(sorted(self.buckets, key=lambda grant: grant.name))
            )
        if len(self.networks) > MAX_NETWORKS:
            raise ScopeError(f"A key may allow at most {MAX_NETWORKS} networks.")
        object.__setattr__(
            self,
            "networks",
            tuple(sorted(set(self.networks), key=lambda net: (net.version, net.compressed))),
        )

    # -- building ------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        *,
        permission: str = ADMIN,
        buckets: Iterable[str | tuple[str, str] | Mapping[str, str]] | None = None,
        networks: Iterable[str] = (),
    ) -> Scope:
        """A scope from plain values (forms, the API, the CLI): bucket names, (name,
        prefix) pairs or {"name", "prefix"} objects; CIDR strings. ScopeError on bad input."""
        grants = None
        if buckets is not None:
            grants = tuple(_grant(item) for item in buckets)
        return cls(permission, grants, tuple(parse_network(net) for net in networks))

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Scope:
        """The scope stored on a key; ``{}`` (or None) is the default scope."""
        if not data:
            return DEFAULT_SCOPE
        return cls.build(
            permission=data.get("permission", ADMIN),
            buckets=data.get("buckets"),
            networks=data.get("networks") or (),
        )

    def to_json(self) -> dict[str, Any]:
        """The stored form; the default scope is ``{}``."""
        if self.is_default:
            return {}
        return {
            "permission": self.permission,
            "buckets": None
            if self.buckets is None
            else [{"name": grant.name, "prefix": grant.prefix} for grant in self.buckets],
            "networks": [net.compressed for net in self.networks],
        }

    def as_api(self) -> dict[str, Any]:
        """Every part spelled out, the default included (API answers, audit details)."""
        return {
            "permission": self.permission,
            "buckets": None
            if self.buckets is None
            else [{"name": grant.name, "prefix": grant.prefix} for grant in self.buckets],
            "networks": [net.compressed for net in self.networks],
        }

    # -- questions the gateway asks ------------------------------------------------------

    @property
    def is_default(self) -> bool:
        return self.permission == ADMIN and self.buckets is None and not self.networks

    def allows_access(self, access: str) -> bool:
        """May the key do what an operation of this access (read, write, admin) needs?"""
        least = _LEAST_PERMISSION.get(access)
        return least is not None and PERMISSIONS.index(self.permission) >= PERMISSIONS.index(least)

    def grant_for(self, bucket: str) -> BucketGrant | None:
        """The grant that lets the key at ``bucket``: None when the scope names buckets
        and not this one. With all buckets, a grant of the whole bucket."""
        if self.buckets is None:
            return BucketGrant(bucket) if BUCKET_NAME_RE.match(bucket) else None
        for grant in self.buckets:
            if grant.name == bucket:
                return grant
        return None

    def sees_bucket(self, bucket: str) -> bool:
        return self.buckets is None or any(grant.name == bucket for grant in self.buckets)

    def covers_object(self, bucket: str, key: str) -> bool:
        grant = self.grant_for(bucket)
        return grant is not None and grant.covers_object(key)

    def covers_whole_bucket(self, bucket: str) -> bool:
        grant = self.grant_for(bucket)
        return grant is not None and grant.prefix == ""

    def covers_prefix(self, bucket: str, prefix: str) -> bool:
        """May the key list ``bucket`` under ``prefix`` (every name listed lies inside)?"""
        grant = self.grant_for(bucket)
        return grant is not None and grant.covers_prefix(prefix)

    def allows_address(self, address: str | None) -> bool:
        """Is a request from ``address`` allowed? Unknown addresses are allowed only
        when the scope allows any."""
        if not self.networks:
            return True
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.networks)

    # -- narrowing -----------------------------------------------------------------------

    def within(self, wider: Scope) -> bool:
        """Does this scope allow nothing that ``wider`` does not?"""
        if PERMISSIONS.index(self.permission) > PERMISSIONS.index(wider.permission):
            return False
        if wider.buckets is not None:
            if self.buckets is None:
                return False
            for grant in self.buckets:
                outer = wider.grant_for(grant.name)
                if outer is None or not grant.within(outer):
                    return False
        if wider.networks:
            if not self.networks:
                return False
            for net in self.networks:
                if not any(
                    net.version == outer.version and net.subnet_of(outer)  # type: ignore[arg-type]
                    for outer in wider.networks
                ):
                    return False
        return True

    # -- words ---------------------------------------------------------------------------

    def describe_buckets(self) -> str:
        if self.buckets is None:
            return "all of the organisation's buckets"
        return ", ".join(grant.describe() for grant in self.buckets)

    def describe_networks(self) -> str:
        if not self.networks:
            return "any address"
        return ", ".join(net.compressed for net in self.networks)

    def describe(self) -> str:
        """One line saying what the key may do, for pages, snippets, the CLI and denials."""
        words = f"{self.permission} on {self.describe_buckets()}"
        if self.networks:
            words += f", from {self.describe_networks()}"
        return words


def _grant(item: str | tuple[str, str] | Mapping[str, str]) -> BucketGrant:
    if isinstance(item, BucketGrant):
        return item
    if isinstance(item, str):
        return BucketGrant(item)
    if isinstance(item, Mapping):
        unknown = set(item) - {"name", "prefix"}
        if unknown or "name" not in item:
            raise ScopeError('Each bucket is {"name": ..., "prefix": ...} (prefix optional).')
        return BucketGrant(item["name"], item.get("prefix") or "")
    if isinstance(item, tuple) and len(item) == 2:
        return BucketGrant(item[0], item[1] or "")
    raise ScopeError("Each bucket is a name, or a name and a prefix.")


DEFAULT_SCOPE = Scope()
