"""Unknown API tokens, counted per client address: past the limit the address gets 429
with Retry-After for every API request until the window ends, without a database query,
and the attempts are audited once per address and window."""

from __future__ import annotations

from django.test import Client

from accounts.tokens import create_api_token
from audit.models import AuditEvent
from audit.trail import Actor

PROBER = "198.51.100.88"
ELSEWHERE = "203.0.113.40"
UNKNOWN = "exc_" + "A" * 40


def call(token: str, ip: str):
    client = Client(HTTP_HOST="127.0.0.1", REMOTE_ADDR=ip)
    return client.get("/api/v1/config", headers={"Authorization": f"Bearer {token}"})


def test_it_refuses_an_address_past_the_limit_with_429(member, settings, throttle_clock):
    assert settings.EXCLOUD_API_UNKNOWN_TOKEN_LIMIT == 20
    assert settings.EXCLOUD_API_UNKNOWN_TOKEN_WINDOW_SECONDS == 60
    assert throttle_clock.now % 60 == 10
    valid = create_api_token(member, Actor.for_user(member.user), "cli").plaintext
    statuses = [call(f"exc_{n:040d}", PROBER).status_code for n in range(20)]
    assert statuses == [401] * 20

    for token in (UNKNOWN, valid, "junk"):
        response = call(token, PROBER)
        assert response.status_code == 429
        assert response["Content-Type"].startswith("application/json")
        body = response.json()
        assert body["code"] == "rate_limited"
        assert "unknown API tokens" in body["message"]
        # Ten seconds into the minute's window (conftest's throttle_clock).
        assert response["Retry-After"] == "50"
        assert "50 seconds" in body["message"]

    # A valid token from another address still works.
    response = call(valid, ELSEWHERE)
    assert response.status_code == 200
    assert response.json()["user"] == "member@acme.test"


def test_malformed_tokens_count_too(db):
    for n in range(20):
        assert call(f"not-a-token-{n}", PROBER).status_code == 401
    assert call("not-a-token", PROBER).status_code == 429


def test_a_refused_address_costs_no_database_query(db, django_assert_num_queries):
    for _ in range(20):
        call(UNKNOWN, PROBER)
    with django_assert_num_queries(0):
        assert call(UNKNOWN, PROBER).status_code == 429


def test_valid_tokens_are_not_counted(member):
    valid = create_api_token(member, Actor.for_user(member.user), "cli").plaintext
    for _ in range(25):
        assert call(valid, PROBER).status_code == 200


def test_unknown_tokens_are_audited_once_per_address_and_window(db, settings):
    # "Once per window" is a cache entry that lives a window long on the real clock: an
    # hour, so that however slow the machine the calls below all fall within it.
    settings.EXCLOUD_API_UNKNOWN_TOKEN_WINDOW_SECONDS = 3600
    for _ in range(25):
        call(UNKNOWN, PROBER)
    for _ in range(3):
        call("short", ELSEWHERE)

    events = list(AuditEvent.objects.filter(action="api_token.unknown").order_by("pk"))
    assert [str(e.source_ip) for e in events] == [PROBER, ELSEWHERE]
    assert all(e.org is None and e.actor_user_id is None for e in events)
    # The first characters only, never the token.
    assert events[0].details == {"starts_with": "exc_AAAAAA", "length": 44}
    assert events[1].details == {"starts_with": "s", "length": 5}
    for event in events:
        assert UNKNOWN not in str(event.details) and "short" not in str(event.details)
