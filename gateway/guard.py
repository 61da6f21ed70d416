"""Slowing down a source that keeps failing to authenticate.

Django-free. Each gateway process counts failed authentications (unknown key IDs, bad
signatures, unusable keys) per source IP in fixed windows; once an IP passes the limit
in the current window, its requests answer ``503 SlowDown`` before any lookup, so a flood
of made-up credentials costs neither database queries nor HMACs.
"""

from __future__ import annotations

import functools
import ipaddress
import threading

from . import s3errors

# Past this many tracked sources, start the table over rather than grow without bound.
MAX_SOURCES = 100_000
# Addresses whose parse is remembered: every request asks about its source twice, and
# parsing an address costs more than the rest of the check.
PARSED_ADDRESSES = 4096


def ip_address_or_none(value: object) -> str | None:
    """``value`` as given when it is an IP address written as text, else None (an
    X-Forwarded-For value need not be an address at all)."""
    if not isinstance(value, str):
        return None
    return value if _is_ip_address(value) else None


@functools.lru_cache(maxsize=PARSED_ADDRESSES)
def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=PARSED_ADDRESSES)
def source(ip: str) -> str:
    """What counts as one source: an IPv4 address, or an IPv6 /64 (one host usually holds
    a whole /64, and could otherwise fail from a fresh address every time)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return ip


class FailureGuard:
    def __init__(self, limit: int, window_seconds: float) -> None:
        self.limit = limit
        self.window = window_seconds
        self._lock = threading.Lock()
        # ip -> (window start, failures in it)
        self._failures: dict[str, tuple[float, int]] = {}

    def check(self, ip: str | None, now: float) -> None:
        """Raise SlowDown when ``ip`` has failed too often in the current window."""
        if ip is None or self.limit <= 0:
            return
        entry = self._failures.get(source(ip))
        if entry is not None and now - entry[0] < self.window and entry[1] >= self.limit:
            raise s3errors.slow_down(int(self.window - (now - entry[0])) + 1)

    def failed(self, ip: str | None, now: float) -> None:
        if ip is None or self.limit <= 0:
            return
        ip = source(ip)
        with self._lock:
            entry = self._failures.get(ip)
            if entry is None or now - entry[0] >= self.window:
                if len(self._failures) >= MAX_SOURCES:
                    self._failures.clear()
                self._failures[ip] = (now, 1)
            else:
                self._failures[ip] = (entry[0], entry[1] + 1)
