"""Fixed-window counters in Django's cache: how often something may happen per key.

Redis in production, so every web process shares one count; the local memory cache on
the embedded default. Sign-in lockouts are not counted here but in the database (see
accounts/lockout.py), because they must hold when the cache is down.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.core.cache import cache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """One counted event: whether it is within the limit, how many the window holds so
    far (None when the cache could not be reached), and the seconds until it ends."""

    allowed: bool
    count: int | None
    retry_after: int


@dataclass(frozen=True)
class Limit:
    """At most ``count`` events per ``window`` seconds for each key; a count of 0 is no limit.

    Windows are fixed, aligned to the epoch: simple, one counter per key and window, and
    at worst twice the count across a window's edge.
    """

    name: str
    count: int
    window: int

    def _cache_key(self, key: str, now: int) -> str:
        # Hashed, so an email address or a token makes a well-formed key and is not
        # readable from the cache.
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return f"throttle:{self.name}:{digest}:{now // self.window}"

    def _retry_after(self, now: int) -> int:
        return self.window - now % self.window

    def hit(self, key: str) -> Verdict:
        """Count one event for ``key``."""
        now = int(time.time())
        if self.count <= 0:
            return Verdict(True, None, 0)
        cache_key = self._cache_key(key, now)
        try:
            cache.add(cache_key, 0, timeout=self.window)
            try:
                count = cache.incr(cache_key)
            except ValueError:  # The counter expired between add() and incr().
                cache.add(cache_key, 1, timeout=self.window)
                count = 1
        except (redis.RedisError, OSError):
            # Failing open: these limits cut down email floods and noise, and a cache
            # outage should not also stop sign-ups, password resets or the API. Sign-in
            # lockouts, which must not fail open, are kept in the database instead.
            log.warning("Rate limit %s not checked: the cache is unreachable", self.name)
            return Verdict(True, None, 0)
        return Verdict(count <= self.count, count, self._retry_after(now))

    def exceeded(self, key: str) -> int:
        """Without counting: the seconds until the window ends if ``key`` has used up its
        events in it, else 0."""
        now = int(time.time())
        if self.count <= 0:
            return 0
        try:
            count = cache.get(self._cache_key(key, now), 0)
        except (redis.RedisError, OSError):
            log.warning("Rate limit %s not checked: the cache is unreachable", self.name)
            return 0
        return self._retry_after(now) if count >= self.count else 0


def first_in_window(key: str, seconds: int) -> bool:
    """True the first time ``key`` is seen in ``seconds``: for events recorded at most
    once per interval. False when the cache is unreachable, so an outage cannot turn
    every request into a record."""
    try:
        return cache.add(f"throttle:once:{key}", 1, timeout=seconds)
    except (redis.RedisError, OSError):
        log.warning("%s not recorded: the cache is unreachable", key.split(":")[0])
        return False


def api_token_calls() -> Limit:
    return Limit("api-token", settings.EXCLOUD_API_RATE_LIMIT, settings.EXCLOUD_API_RATE_WINDOW)


def unknown_api_tokens() -> Limit:
    return Limit(
        "api-unknown-token",
        settings.EXCLOUD_API_UNKNOWN_TOKEN_LIMIT,
        settings.EXCLOUD_API_UNKNOWN_TOKEN_WINDOW_SECONDS,
    )


def password_resets_per_email() -> Limit:
    return Limit(
        "reset-email",
        settings.EXCLOUD_PASSWORD_RESET_EMAIL_LIMIT,
        settings.EXCLOUD_PASSWORD_RESET_WINDOW_SECONDS,
    )


def password_resets_per_ip() -> Limit:
    return Limit(
        "reset-ip",
        settings.EXCLOUD_PASSWORD_RESET_IP_LIMIT,
        settings.EXCLOUD_PASSWORD_RESET_WINDOW_SECONDS,
    )


def sign_ups_per_ip() -> Limit:
    return Limit(
        "signup-ip", settings.EXCLOUD_SIGNUP_IP_LIMIT, settings.EXCLOUD_SIGNUP_WINDOW_SECONDS
    )


def allow_password_reset(email: str, ip: str | None) -> bool:
    """Count a reset request for this address from this client; False past either limit."""
    by_email = password_resets_per_email().hit(email.strip().lower())
    by_ip = password_resets_per_ip().hit(ip or "")
    if by_email.allowed and by_ip.allowed:
        return True
    log.info(
        "Password reset email not sent to a requested address from %s: %s limit reached",
        ip or "an unknown address",
        "address" if not by_email.allowed else "client",
    )
    return False
