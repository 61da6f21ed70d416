"""Limits on password reset emails and sign-ups, per address and per client: a flood
sends no more than the limit, and the reset page answers the same either way."""

from __future__ import annotations

import html
import time

import pytest
from django.test import Client
from django.utils.http import parse_http_date

from accounts.models import User
from accounts.throttle import Limit
from audit.trail import client_source

from .conftest import PASSWORD, make_user

FLOODER = "198.51.100.77"
ELSEWHERE = "203.0.113.30"
REDIS_CACHE = "django.core.cache.backends.redis.RedisCache"
PER_REQUEST_HEADERS = {"X-Request-ID", "Set-Cookie"}


def text(response) -> str:
    return html.unescape(response.content.decode())


def ask_reset(client: Client, email: str):
    return client.post("/accounts/password_reset/", {"email": email})


def answer(response) -> tuple:
    """All a client can see of a response, but for what differs on every request anyway.

    Expires is the clock's second at the answer (no-store), so what is compared is that it
    is not in the future: a flood that spans a second boundary still answers alike."""
    headers = {k: v for k, v in response.headers.items() if k not in PER_REQUEST_HEADERS}
    if "Expires" in headers and parse_http_date(headers["Expires"]) <= time.time():
        headers["Expires"] = "(already past)"
    return response.status_code, headers, response.content


def test_a_flood_of_resets_for_one_address_sends_at_most_the_limit(owner, mailoutbox, settings):
    assert settings.EXCLOUD_PASSWORD_RESET_EMAIL_LIMIT == 3
    client = Client(REMOTE_ADDR=FLOODER)
    answers = [answer(ask_reset(client, "owner@acme.test")) for _ in range(30)]
    assert len(mailoutbox) == 3
    assert all(m.to == ["owner@acme.test"] for m in mailoutbox)
    # The requests that sent an email and those that did not answer alike.
    assert answers[0][0] == 302
    assert answers[0][1]["Location"] == "/accounts/password_reset/done/"
    assert all(a == answers[0] for a in answers)
    # From another client too: the limit is the address's.
    ask_reset(Client(REMOTE_ADDR=ELSEWHERE), "OWNER@acme.test")
    assert len(mailoutbox) == 3


def test_a_limited_address_does_not_hold_up_others(owner, member, mailoutbox):
    client = Client(REMOTE_ADDR=FLOODER)
    for _ in range(5):
        ask_reset(client, "owner@acme.test")
    ask_reset(client, "member@acme.test")
    assert [m.to for m in mailoutbox] == [["owner@acme.test"]] * 3 + [["member@acme.test"]]


def test_a_client_asking_for_many_addresses_is_limited(db, mailoutbox, settings):
    assert settings.EXCLOUD_PASSWORD_RESET_IP_LIMIT == 10
    for n in range(12):
        make_user(f"user{n}@acme.test")
    client = Client(REMOTE_ADDR=FLOODER)
    answers = [answer(ask_reset(client, f"user{n}@acme.test")) for n in range(12)]
    assert all(a == answers[0] for a in answers)
    assert sorted(m.to[0] for m in mailoutbox) == sorted(f"user{n}@acme.test" for n in range(10))
    # Another client is not held up by this one.
    ask_reset(Client(REMOTE_ADDR=ELSEWHERE), "user11@acme.test")
    assert mailoutbox[-1].to == ["user11@acme.test"]


def test_unknown_addresses_count_like_known_ones(owner, mailoutbox):
    # So the limit cannot be used to tell which addresses have an account.
    client = Client(REMOTE_ADDR=FLOODER)
    for n in range(10):
        ask_reset(client, f"nobody{n}@acme.test")
    ask_reset(client, "owner@acme.test")
    assert mailoutbox == []


def test_resets_are_sent_while_the_cache_is_unreachable(owner, mailoutbox, settings):
    # These limits fail open: an outage of the cache must not stop password resets.
    settings.CACHES = {"default": {"BACKEND": REDIS_CACHE, "LOCATION": "redis://127.0.0.1:1/0"}}
    response = ask_reset(Client(REMOTE_ADDR=FLOODER), "owner@acme.test")
    assert response.status_code == 302
    assert len(mailoutbox) == 1


def sign_up(client: Client, n: int):
    return client.post("/accounts/signup/", {"email": f"new{n}@example.test", "password": PASSWORD})


def test_a_flood_of_sign_ups_is_refused_past_the_limit(db, settings):
    assert settings.EXCLOUD_SIGNUP_IP_LIMIT == 10
    for n in range(10):
        assert sign_up(Client(REMOTE_ADDR=FLOODER), n).status_code == 302
    response = sign_up(Client(REMOTE_ADDR=FLOODER), 10)
    assert response.status_code == 429
    assert "Too many accounts were created from your network recently" in text(response)
    assert "Try again in" in text(response)
    assert not User.objects.filter(email="new10@example.test").exists()
    assert User.objects.count() == 10
    # Another client still signs up.
    assert sign_up(Client(REMOTE_ADDR=ELSEWHERE), 11).status_code == 302


def test_a_sign_up_with_errors_is_not_counted(db, settings):
    settings.EXCLOUD_SIGNUP_IP_LIMIT = 1
    client = Client(REMOTE_ADDR=FLOODER)
    bad = client.post("/accounts/signup/", {"email": "new0@example.test", "password": "short"})
    assert bad.status_code == 400
    assert sign_up(client, 0).status_code == 302


def test_a_limit_counts_per_key_and_tells_when_the_window_ends(throttle_clock):
    assert throttle_clock.now % 60 == 10
    limit = Limit("test", 2, 60)
    verdicts = [limit.hit("a") for _ in range(3)]
    assert [v.allowed for v in verdicts] == [True, True, False]
    assert [v.count for v in verdicts] == [1, 2, 3]
    assert [v.retry_after for v in verdicts] == [50, 50, 50]
    assert limit.exceeded("a") == 50
    assert limit.exceeded("b") == 0
    assert limit.hit("b").allowed
    # The last second of the window, then the next window: counted afresh.
    throttle_clock.now += 49
    assert limit.exceeded("a") == 1
    throttle_clock.now += 1
    assert limit.exceeded("a") == 0
    assert limit.hit("a").allowed
    # A count of 0 is no limit.
    assert all(Limit("off", 0, 60).hit("a").allowed for _ in range(5))


@pytest.mark.parametrize(
    ("address", "source"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"),
        ("2001:db8:1:2::", "2001:db8:1:2::"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("", None),
        ("not an address", "not an address"),
    ],
)
def test_limits_count_an_ipv6_client_by_its_64(rf, address, source):
    request = rf.get("/", REMOTE_ADDR=address)
    assert client_source(request) == source
