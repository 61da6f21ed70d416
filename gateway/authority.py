"""The gateway's one link to Django: who holds an access key, who owns a bucket, and
whether this key may do this to that bucket.

The internal verify API (gateway/verify_api.py) decides through the same authenticate(),
check_access() and key reads, so both front doors answer alike.

Importing this module sets Django up (unless the importer already did). Every database
read of the gateway runs in a worker thread, and no request writes to the database except
CreateBucket and DeleteBucket, which change Bucket records through gateway.services.

Buckets: CreateBucket claims the name (gateway.services.claim_bucket) before the store is
asked, and a refused creation gives it back; DeleteBucket removes the record once the
store has deleted the bucket.

Revocation: lookups are cached in memory when something can say that a cached entry went
stale, and the cache is asked only then:

- With ``REDIS_URL``, each request reads, in one round trip, the versions of the key and
  the buckets it names (keys/revocation.py); a change sets new versions for what it
  touches, so only those entries are read again, on every gateway. If Redis cannot be
  read the cache is dropped and the request goes to the database; for
  EXCLOUD_REDIS_BACKOFF_SECONDS after that the gateway does not ask Redis at all and keeps
  nothing cached, so a frozen Redis costs one EXCLOUD_REDIS_TIMEOUT_SECONDS wait per
  back-off, not one per request. A change whose bump was lost is seen once the
  gateway reads the change records, every few seconds (gateway/freshness.py).
- On the embedded SQLite database (no Redis), each request asks the database file's data
  version (``PRAGMA data_version``, which moves whenever another connection commits, a
  few microseconds on the event loop); any commit by anyone drops the cache.
- On PostgreSQL without Redis each request reads the key's row, so a revoke is seen by
  the next request.

Outages: a lookup that finds the database down, or still runs after
EXCLOUD_S3_DATABASE_TIMEOUT_SECONDS, raises S3's 503 ServiceUnavailable, which clients
retry; the thread's broken connection is closed, and connections are health-checked before
use, so the process serves again as soon as the database is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import django
from django.apps import apps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "excloud_portal.settings")
# The web process imports this module too (gateway.verify_api), once Django is set up:
# setting it up again would reconfigure logging mid-request.
if not apps.ready:
    django.setup()

import psycopg  # noqa: E402
from asgiref.sync import sync_to_async  # noqa: E402
from django import db  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db import close_old_connections  # noqa: E402

from audit.trail import Actor  # noqa: E402
from excloud_portal import celery_app  # noqa: E402, F401 - binds shared tasks to our broker
from keys import credentials  # noqa: E402
from keys.models import AccessKey, CacheChange, CachedKind, KeyStatus  # noqa: E402
from keys.scope import DEFAULT_SCOPE, Scope  # noqa: E402

from . import freshness, operations, s3errors, services, sigv4  # noqa: E402
from .freshness import Freshness  # noqa: E402
from .models import Bucket  # noqa: E402
from .operations import Operation  # noqa: E402
from .tasks import record_usage  # noqa: E402
from .usage import ANY_KEY  # noqa: E402

CREATE_BUCKET = "CreateBucket"
DELETE_OBJECTS = "DeleteObjects"
T = TypeVar("T")

log = logging.getLogger(__name__)

CACHE_TTL_SECONDS = freshness.CACHE_TTL_SECONDS
# How long an unknown access key ID is answered from memory, and how many are kept.
UNKNOWN_KEY_SECONDS = 10.0
UNKNOWN_KEYS_MAX = 10_000


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What the gateway needs of an access key; the secret stays sealed until needed."""

    id: str
    org_id: int
    status: str
    expires_at: datetime | None
    kek_id: str
    sealed: bytes
    org_slug: str = ""
    # What the key may do, where and from where (keys/scope.py).
    scope: Scope = DEFAULT_SCOPE

    def usable(self, now: float | None = None) -> bool:
        if self.status != KeyStatus.ACTIVE:
            return False
        if self.expires_at is None:
            return True
        moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
        return moment < self.expires_at

    def secret(self) -> str:
        return credentials.unseal(self.kek_id, self.sealed, self.id)


def refusal(
    key: KeyInfo,
    operation: Operation,
    owners: Mapping[str, int | None],
    address: str | None = None,
) -> sigv4.S3Error | None:
    """Why this (usable) key may not perform ``operation`` from ``address`` (the
    request's source address), as S3 answers it, or None when it may. The one place that
    decides.

    The key's scope is asked first (scope_refusal()), so a key learns nothing of buckets
    outside it. Then ``owners``, which maps each bucket the operation touches to the org
    that holds it (None: no org, whether or not the store has it): a name no org holds is
    NoSuchBucket, which tells nothing (anyone may try to create it); another org's bucket
    is AccessDenied. CreateBucket needs a name no org holds. ListBuckets touches no bucket
    (its answer is filtered to the org's, and to the buckets the key's scope names).
    """
    if operation.level != operations.SERVICE and not operation.touches:
        return s3errors.access_denied()
    scoped = scope_refusal(key.scope, operation, address)
    if scoped is not None:
        return scoped
    for touch in operation.touches:
        owner = owners.get(touch.bucket)
        if operation.name == CREATE_BUCKET and touch.access == operations.ADMIN:
            if owner == key.org_id:
                return s3errors.bucket_already_owned_by_you(touch.bucket)
            if owner is not None:
                return s3errors.bucket_already_exists(touch.bucket)
        elif owner is None:
            return s3errors.no_such_bucket(touch.bucket)
        elif owner != key.org_id:
            return s3errors.access_denied()
    return None


# Bucket reads any key that can see the bucket may make, whatever part of it it may read.
SEEN_WITH_THE_BUCKET = frozenset({"HeadBucket", "GetBucketLocation"})


def scope_refusal(scope: Scope, operation: Operation, address: str | None) -> sigv4.S3Error | None:
    """AccessDenied naming what the key may do, when its scope does not allow
    ``operation`` from ``address``; None when it does (the default scope allows every
    operation the classifier knows on any name).

    A key may perform only operations the classifier knows, from an allowed
    address, with the permission each touch needs, on names inside its grants: an object
    inside its bucket's prefix; a listing whose prefix lies inside it; HeadBucket and
    GetBucketLocation on any bucket it names; DeleteObjects' bucket (each object named in
    the body is a touch of its own); any other bucket operation, or an object touch that
    names no object (the verify API's), only on a bucket granted whole.
    """
    allowed = (
        operation.name in operations.SUPPORTED
        and scope.allows_address(address)
        # An operation's access is the most any of its touches needs.
        and scope.allows_access(operation.access)
        and all(_touch_in_scope(scope, operation, touch) for touch in operation.touches)
    )
    if allowed:
        return None
    return s3errors.access_denied(f"Access Denied. This access key may do {scope.describe()}.")


def _touch_in_scope(scope: Scope, operation: Operation, touch: operations.Touch) -> bool:
    if touch.key is not None:
        return scope.covers_object(touch.bucket, touch.key)
    if operation.name in operations.LISTINGS:
        prefix = operation.list_prefix
        return prefix is not None and scope.covers_prefix(touch.bucket, prefix)
    if operation.name in SEEN_WITH_THE_BUCKET or operation.name == DELETE_OBJECTS:
        return scope.sees_bucket(touch.bucket)
    return scope.covers_whole_bucket(touch.bucket)


def authorize(
    key: KeyInfo,
    operation: Operation,
    owners: Mapping[str, int | None],
    address: str | None = None,
) -> bool:
    """May this (usable) key perform ``operation``? (refusal() is None.)"""
    return refusal(key, operation, owners, address) is None


def check_access(
    key: KeyInfo,
    operation: Operation,
    owners: Mapping[str, int | None],
    address: str | None = None,
) -> None:
    """refusal(), raised."""
    error = refusal(key, operation, owners, address)
    if error is not None:
        raise error


def authenticate(
    access_key_id: str,
    key: KeyInfo | None,
    cache: sigv4.SigningKeyCache,
    verify: Callable[[sigv4.SigningKeyProvider], T],
) -> T:
    """Run ``verify`` (a signature check) with the signing keys of ``key``; its result, or
    S3Error.

    Unknown keys answer InvalidAccessKeyId, and so does a failed check with an inactive,
    revoked or expired key, so a client learns nothing about keys it cannot use. A
    correct signature with such a key passes here: the request is that key's (denied) use,
    and the caller refuses it with require_usable(). The secret is unsealed only when the
    cache has no signing key for the scope asked; the gateway and the verify API both
    come through here.
    """
    if key is None:
        raise s3errors.invalid_access_key_id(access_key_id)
    try:
        return verify(cache.provider(lambda _id: key.secret()))
    except sigv4.S3Error:
        if not key.usable():
            raise s3errors.invalid_access_key_id(access_key_id) from None
        raise


def well_formed_key_id(access_key_id: str) -> bool:
    """Could this be one of our access key IDs? Anything else is refused unlooked-up."""
    return credentials.ACCESS_KEY_ID_RE.match(access_key_id) is not None


def counted_key_id(access_key_id: str) -> str:
    """The key ID a denied attempt is counted under: a malformed one (such as a secret
    pasted into the ID's place) is never stored, only counted under no key."""
    return access_key_id if well_formed_key_id(access_key_id) else ANY_KEY


def require_usable(key: KeyInfo) -> None:
    if not key.usable():
        raise s3errors.invalid_access_key_id(key.id)


# ---------------------------------------------------------------------------------------
# Database reads, run in worker threads


def _load_key(access_key_id: str) -> KeyInfo | None:
    row = (
        AccessKey.objects.filter(pk=access_key_id)
        .values_list(
            "org_id",
            "status",
            "expires_at",
            "secret_kek_id",
            "secret_sealed",
            "org__slug",
            "scope",
        )
        .first()
    )
    if row is None:
        return None
    org_id, status, expires_at, kek_id, sealed, org_slug, scope = row
    return KeyInfo(
        access_key_id,
        org_id,
        status,
        expires_at,
        kek_id,
        bytes(sealed),
        org_slug,
        Scope.from_json(scope),
    )


def read(access_key_id: str, names: tuple[str, ...]) -> tuple[KeyInfo | None, dict[str, int]]:
    """The key and the owners of the named buckets, from the database, on this thread's
    connection (the verify API reads this way on every call, so a revoke is seen by the
    next one)."""
    key = _load_key(access_key_id)
    owners: dict[str, int] = {}
    if key is not None and names:
        owners = dict(Bucket.objects.filter(name__in=names).values_list("name", "org_id"))
    return key, owners


def _load(access_key_id: str, names: tuple[str, ...]) -> tuple[KeyInfo | None, dict[str, int]]:
    close_old_connections()
    return read(access_key_id, names)


def _load_key_only(access_key_id: str) -> KeyInfo | None:
    close_old_connections()
    return _load_key(access_key_id)


def _org_bucket_names(org_id: int, names: list[str]) -> set[str]:
    close_old_connections()
    return set(Bucket.objects.filter(org_id=org_id, name__in=names).values_list("name", flat=True))


def _change(change, access_key_id: str, ip: str | None, request_id: str, *args, **kwargs):
    """Run a gateway.services change on behalf of the key that made the request, as its
    audit actor."""
    close_old_connections()
    key = AccessKey.objects.select_related("org").get(pk=access_key_id)
    return change(key, *args, actor=Actor.for_access_key(key, ip, request_id), **kwargs)


def _bucket_cors(name: str) -> list | None:
    close_old_connections()
    return Bucket.objects.filter(name=name).values_list("cors", flat=True).first()


def _recent_changes(seconds: float) -> list[tuple[int, str, str]]:
    """Change records (id, kind, name) written in the last ``seconds``."""
    close_old_connections()
    since = datetime.now(UTC) - timedelta(seconds=seconds)
    return list(
        CacheChange.objects.filter(changed_at__gte=since)
        .order_by("id")
        .values_list("id", "kind", "name")
    )


def _send_usage(batch: dict) -> None:
    record_usage.delay(batch)


# Errors that say the database cannot be reached or lost the connection, rather than that a
# query is wrong: the client is told to retry (503), and the thread's connection is closed
# so its next lookup connects afresh.
DATABASE_UNAVAILABLE = (
    db.OperationalError,
    db.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


def _guarded(func):
    @functools.wraps(func)
    def run(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DATABASE_UNAVAILABLE as error:
            log.warning("database unavailable in %s: %r", func.__name__, error)
            with contextlib.suppress(Exception):
                db.connection.close()
            raise s3errors.service_unavailable() from None

    return run


def _threaded(func):
    """``func`` run in a worker thread, its database outages raised as 503 ServiceUnavailable."""
    return sync_to_async(_guarded(func), thread_sensitive=False)


async def _within_limit(awaitable):
    """``awaitable``'s result, or 503 ServiceUnavailable once it has run longer than
    EXCLOUD_S3_DATABASE_TIMEOUT_SECONDS (a database that accepts connections but does not
    answer). A thread cannot be stopped: it finishes, or fails, on its own."""
    limit = settings.EXCLOUD_S3_DATABASE_TIMEOUT_SECONDS
    try:
        return await asyncio.wait_for(awaitable, limit)
    except TimeoutError:
        log.warning("a database call took over %ss", limit)
        raise s3errors.service_unavailable() from None


def _in_thread(func):
    """``func`` run in a worker thread, within the database time limit (its result dropped
    if it comes later)."""
    threaded = _threaded(func)

    @functools.wraps(func)
    async def run(*args, **kwargs):
        return await _within_limit(threaded(*args, **kwargs))

    return run


# ---------------------------------------------------------------------------------------
# The async face the ASGI app uses


@dataclass(slots=True)
class Lookup:
    key: KeyInfo | None
    # Each bucket asked about and the org that holds it (None: no org).
    owners: dict[str, int | None]


class Authority:
    """Key and bucket lookups for one gateway process, cached while the database or Redis
    can tell us about changes."""

    def __init__(self, redis_url: str | None = None) -> None:
        self._freshness = Freshness(
            settings.REDIS_URL if redis_url is None else redis_url,
            read_changes=_in_thread(_recent_changes),
            drop_all=self._clear,
            drop=self._drop,
        )
        # Entries carry the version they were read under and count only while it is
        # current: a read that started before a change and ends after it is never used.
        self._keys: dict[str, tuple[KeyInfo, float, object]] = {}
        self._owners: dict[str, tuple[int, float, object]] = {}
        # Access key IDs the database did not know, until when to answer so without
        # asking again. IDs are random: only a client guessing ever names one before it
        # exists, so this never delays a new key.
        self._unknown: dict[str, float] = {}
        # Lookups answered from the cache, and from the database (for metrics and benches).
        self.hits = 0
        self.misses = 0
        self.clears = 0
        # Called whenever the whole cache is dropped.
        self.on_invalidate: list = []
        # Failed sends of usage totals since one last went through.
        self._usage_unsent = 0
        # Bucket claims being given back (see claim_bucket), kept until done.
        self._late: set[asyncio.Future] = set()

    @property
    def redis_failures(self) -> int:
        """Failed reads of the versions since Redis last answered."""
        return self._freshness.redis_failures

    def _clear(self) -> None:
        self.clears += 1
        self._keys.clear()
        self._owners.clear()
        for callback in self.on_invalidate:
            callback()

    def _drop(self, kind: str, name: str) -> None:
        (self._keys if kind == CachedKind.KEY else self._owners).pop(name, None)

    @staticmethod
    def _fresh(entry, version, now: float) -> bool:
        return entry is not None and entry[2] == version and now - entry[1] < CACHE_TTL_SECONDS

    async def lookup(self, access_key_id: str, names: tuple[str, ...]) -> Lookup:
        versions = await self._freshness.versions(access_key_id, names)
        now = time.monotonic()
        if versions is not None:
            cached = self._keys.get(access_key_id)
            owners = [self._owners.get(name) for name in names]
            if self._fresh(cached, versions[0], now) and all(
                self._fresh(o, v, now) for o, v in zip(owners, versions[1:], strict=True)
            ):
                self.hits += 1
                return Lookup(cached[0], {n: o[0] for n, o in zip(names, owners, strict=True)})
        self.misses += 1
        unknown_until = self._unknown.get(access_key_id)
        if unknown_until is not None:
            if now < unknown_until:
                return Lookup(None, {})
            del self._unknown[access_key_id]
        key, found = await _in_thread(_load)(access_key_id, names)
        if key is None:
            self._remember_unknown(access_key_id, now)
        elif versions is not None:
            self._keys[access_key_id] = (key, now, versions[0])
            for name, version in zip(names, versions[1:], strict=True):
                if name in found:
                    self._owners[name] = (found[name], now, version)
        return Lookup(key, {name: found.get(name) for name in names})

    def _remember_unknown(self, access_key_id: str, now: float) -> None:
        if len(self._unknown) >= UNKNOWN_KEYS_MAX:
            # A flood of made-up IDs: start over rather than grow.
            self._unknown.clear()
        self._unknown[access_key_id] = now + UNKNOWN_KEY_SECONDS

    async def current_key(self, access_key_id: str) -> KeyInfo | None:
        """The key as it is now (its status and scope), asked again before an upload is
        let complete: the cached entry while it is fresh, else the database's row."""
        versions = await self._freshness.versions(access_key_id, ())
        if versions is not None:
            cached = self._keys.get(access_key_id)
            if self._fresh(cached, versions[0], time.monotonic()):
                return cached[0]
        return await _in_thread(_load_key_only)(access_key_id)

    async def org_bucket_names(self, org_id: int, names: list[str]) -> set[str]:
        if not names:
            return set()
        return await _in_thread(_org_bucket_names)(org_id, names)

    async def claim_bucket(
        self, access_key_id: str, name: str, ip: str | None, request_id: str
    ) -> str:
        """services.claim_bucket() for the key's org: "claimed", "owned" or "taken".

        A claim that outlasts the time limit is answered 503, so the store never creates
        the bucket; should it commit after all, it is given back then."""
        claim = asyncio.ensure_future(
            _threaded(_change)(services.claim_bucket, access_key_id, ip, request_id, name)
        )
        try:
            return await _within_limit(asyncio.shield(claim))
        except sigv4.S3Error:
            claim.add_done_callback(
                lambda done: self._give_back_late_claim(done, access_key_id, name, ip, request_id)
            )
            raise

    def _give_back_late_claim(
        self,
        done: asyncio.Future,
        access_key_id: str,
        name: str,
        ip: str | None,
        request_id: str,
    ) -> None:
        if done.cancelled() or done.exception() is not None or done.result() != "claimed":
            return
        release = asyncio.ensure_future(
            self.release_bucket_claim(access_key_id, name, ip, request_id, 503)
        )
        self._late.add(release)
        release.add_done_callback(self._late_released)

    def _late_released(self, release: asyncio.Future) -> None:
        self._late.discard(release)
        if not release.cancelled() and release.exception() is not None:
            log.error("could not give back a late bucket claim: %r", release.exception())

    async def release_bucket_claim(
        self, access_key_id: str, name: str, ip: str | None, request_id: str, status: int
    ) -> bool:
        self._owners.pop(name, None)
        return await _in_thread(_change)(
            services.release_bucket_claim, access_key_id, ip, request_id, name, status=status
        )

    async def bucket_deleted(
        self, access_key_id: str, name: str, ip: str | None, request_id: str
    ) -> bool:
        self._owners.pop(name, None)
        return await _in_thread(_change)(
            services.bucket_deleted, access_key_id, ip, request_id, name
        )

    async def bucket_cors(self, name: str) -> list | None:
        """The bucket's CORS rules as stored (read each time: browsers only ask)."""
        return await _in_thread(_bucket_cors)(name)

    async def set_bucket_cors(
        self, access_key_id: str, name: str, rules: list | None, ip: str | None, request_id: str
    ) -> bool:
        return await _in_thread(_change)(
            services.set_bucket_cors, access_key_id, ip, request_id, name, rules
        )

    async def send_usage(self, batch: dict) -> bool:
        """Hand usage totals to the worker through the Celery broker; False if it failed
        (logged once until a batch goes through again)."""
        try:
            await _in_thread(_send_usage)(batch)
        except Exception:  # noqa: BLE001 - the caller keeps the batch for the next try
            if not self._usage_unsent:
                log.exception("could not send usage totals to the broker; keeping them")
            self._usage_unsent += 1
            return False
        if self._usage_unsent:
            log.info("sent usage totals again after %d failed attempts", self._usage_unsent)
            self._usage_unsent = 0
        return True

    async def aclose(self) -> None:
        await self._freshness.aclose()
