"""SlowDown for a source that keeps failing to authenticate, and the negative cache of
unknown key IDs."""

from __future__ import annotations

import asyncio

import pytest
from django.db import connection

from gateway import authority
from gateway.guard import FailureGuard
from gateway.sigv4 import S3Error


def test_it_slows_a_source_down_once_it_passes_the_limit_and_until_the_window_ends():
    guard = FailureGuard(limit=3, window_seconds=60)
    for _ in range(3):
        guard.check("192.0.2.1", 100.0)
        guard.failed("192.0.2.1", 100.0)

    with pytest.raises(S3Error) as excinfo:
        guard.check("192.0.2.1", 159.0)
    assert (excinfo.value.status, excinfo.value.code) == (503, "SlowDown")
    assert excinfo.value.extra["RetryAfterSeconds"] == "2"
    guard.check("192.0.2.2", 159.0)  # another source is not slowed
    guard.check("192.0.2.1", 160.0)  # a new window


def test_it_never_slows_anyone_when_turned_off():
    guard = FailureGuard(limit=0, window_seconds=60)
    for _ in range(1000):
        guard.failed("192.0.2.1", 100.0)
    guard.check("192.0.2.1", 100.0)


@pytest.mark.django_db(transaction=True)
def test_it_asks_the_database_about_an_unknown_key_id_once_in_a_while(monkeypatch):
    loads: list[str] = []
    real_load = authority._load

    def counting(access_key_id, names):
        loads.append(access_key_id)
        try:
            return real_load(access_key_id, names)
        finally:
            connection.close()

    monkeypatch.setattr(authority, "_load", counting)
    clock = [1000.0]
    monkeypatch.setattr(authority.time, "monotonic", lambda: clock[0])
    made_up = "EXC" + "Z" * 17

    async def run() -> list:
        cache = authority.Authority("")
        try:
            found = [(await cache.lookup(made_up, ())).key for _ in range(20)]
            clock[0] += authority.UNKNOWN_KEY_SECONDS + 1
            found.append((await cache.lookup(made_up, ())).key)
            return found
        finally:
            await cache.aclose()

    assert asyncio.run(run()) == [None] * 21
    assert loads == [made_up, made_up]


def test_it_counts_an_ipv6_source_by_its_slash_64():
    guard = FailureGuard(limit=2, window_seconds=60)
    guard.failed("2001:db8:1:2::1", 100.0)
    guard.failed("2001:db8:1:2:ffff::9", 100.0)

    with pytest.raises(S3Error):
        guard.check("2001:db8:1:2::abcd", 101.0)
    guard.check("2001:db8:1:3::1", 101.0)
    guard.check("192.0.2.1", 101.0)
