"""Sign-in lockout: failed sign-ins lock an account, or a client address, for a while,
even against the right password; the lockout is explained, audited, and ends."""

from __future__ import annotations

import html
import io
import re
from datetime import timedelta

from axes.models import AccessAttempt
from django.core.management import call_command
from django.db.models import F
from django.test import Client

from audit.models import AuditEvent

from .conftest import PASSWORD

ATTACKER = "198.51.100.66"
ELSEWHERE = "203.0.113.20"
WRONG = "not the password 123"
REDIS_CACHE = "django.core.cache.backends.redis.RedisCache"


def text(response) -> str:
    return html.unescape(response.content.decode())


def sign_in(client: Client, email: str, password: str):
    return client.post("/accounts/login/", {"username": email, "password": password})


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def expire_failures() -> None:
    """Move every counted failure back past the lockout period, as time would."""
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=15, seconds=1))


def test_it_locks_an_account_against_the_right_password_too(owner, settings):
    assert settings.EXCLOUD_LOGIN_FAILURE_LIMIT == 10
    client = Client(REMOTE_ADDR=ATTACKER)
    statuses = [sign_in(client, "owner@acme.test", WRONG).status_code for _ in range(30)]
    # Nine plain refusals; the tenth failure starts the lockout, and it holds after that.
    assert statuses == [200] * 9 + [429] * 21

    response = sign_in(client, "owner@acme.test", PASSWORD)
    assert response.status_code == 429
    assert not signed_in(client)
    page = text(response)
    assert "Too many failed sign-ins for this account" in page
    assert re.search(r"paused for 1[45] minutes, even with the right password", page)
    assert "do not match an account" not in page
    assert 0 < int(response["Retry-After"]) <= 15 * 60
    # The address tried is kept in the form; the password is not.
    assert 'value="owner@acme.test"' in page
    assert PASSWORD not in page


def test_it_audits_a_lockout_once_without_the_password(owner):
    client = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(12):
        sign_in(client, "Owner@ACME.test", WRONG)
    sign_in(client, "owner@acme.test", PASSWORD)

    event = AuditEvent.objects.get(action="user.locked_out")
    assert event.org is None
    assert event.details == {"email": "owner@acme.test", "locked": ["account"]}
    assert event.actor_label == "owner@acme.test" and event.actor_user_id is None
    assert str(event.source_ip) == ATTACKER
    assert AuditEvent.objects.filter(action="user.login_failed").count() == 13
    for row in AuditEvent.objects.values("details", "actor_label", "target_id"):
        assert WRONG not in str(row) and PASSWORD not in str(row)
    # Nor does Axes keep either password with the failures it counts.
    for attempt in AccessAttempt.objects.values():
        assert WRONG not in str(attempt) and PASSWORD not in str(attempt)


def test_it_ends_after_its_period(owner):
    client = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(10):
        sign_in(client, "owner@acme.test", WRONG)
    assert sign_in(client, "owner@acme.test", PASSWORD).status_code == 429

    expire_failures()
    response = sign_in(client, "owner@acme.test", PASSWORD)
    assert response.status_code == 302
    assert signed_in(client)


def test_it_leaves_other_accounts_alone(owner, member):
    attacker = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(10):
        sign_in(attacker, "owner@acme.test", WRONG)
    assert sign_in(attacker, "owner@acme.test", PASSWORD).status_code == 429

    elsewhere = Client(REMOTE_ADDR=ELSEWHERE)
    assert sign_in(elsewhere, "member@acme.test", PASSWORD).status_code == 302
    assert signed_in(elsewhere)
    # Ten failures are far from the address's limit: another account signs in from it.
    same_address = Client(REMOTE_ADDR=ATTACKER)
    assert sign_in(same_address, "member@acme.test", PASSWORD).status_code == 302


def test_it_locks_the_account_from_every_address(owner):
    for n in range(10):
        sign_in(Client(REMOTE_ADDR=f"198.51.100.{n + 1}"), "owner@acme.test", WRONG)
    response = sign_in(Client(REMOTE_ADDR=ELSEWHERE), "owner@acme.test", PASSWORD)
    assert response.status_code == 429


def test_it_locks_an_address_that_sprays_many_accounts(owner, settings):
    assert settings.EXCLOUD_LOGIN_IP_FAILURE_LIMIT == 30
    client = Client(REMOTE_ADDR=ATTACKER)
    statuses = [sign_in(client, f"user{n}@acme.test", WRONG).status_code for n in range(30)]
    assert statuses == [200] * 29 + [429]

    response = sign_in(client, "owner@acme.test", PASSWORD)
    assert response.status_code == 429
    assert "Too many failed sign-ins from your network" in text(response)
    assert not signed_in(client)
    event = AuditEvent.objects.get(action="user.locked_out")
    assert event.details == {"email": "user29@acme.test", "locked": ["ip"]}

    # The accounts themselves are not locked: from elsewhere the owner signs in.
    elsewhere = Client(REMOTE_ADDR=ELSEWHERE)
    assert sign_in(elsewhere, "owner@acme.test", PASSWORD).status_code == 302


def test_a_sign_in_clears_its_accounts_failures(owner):
    client = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(9):
        sign_in(client, "owner@acme.test", WRONG)
    assert sign_in(client, "owner@acme.test", PASSWORD).status_code == 302
    client.post("/accounts/logout/")

    for _ in range(9):
        assert sign_in(client, "owner@acme.test", WRONG).status_code == 200
    assert sign_in(client, "owner@acme.test", PASSWORD).status_code == 302


def test_a_sign_in_does_not_clear_an_addresss_failures_at_other_accounts(owner):
    client = Client(REMOTE_ADDR=ATTACKER)
    for n in range(29):
        sign_in(client, f"user{n}@acme.test", WRONG)
    # The sprayer signs in to an account of its own, which must not reset the spray.
    assert sign_in(client, "owner@acme.test", PASSWORD).status_code == 302
    client.post("/accounts/logout/")
    assert sign_in(client, "user29@acme.test", WRONG).status_code == 429


def test_it_holds_while_the_cache_is_unreachable(owner, settings):
    # Counted in the database, so a cache outage does not open the door.
    settings.CACHES = {"default": {"BACKEND": REDIS_CACHE, "LOCATION": "redis://127.0.0.1:1/0"}}
    client = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(10):
        sign_in(client, "owner@acme.test", WRONG)
    assert sign_in(client, "owner@acme.test", PASSWORD).status_code == 429


def test_an_operator_lifts_a_lockout(owner):
    client = Client(REMOTE_ADDR=ATTACKER)
    for _ in range(10):
        sign_in(client, "owner@acme.test", WRONG)
    call_command("axes_reset_username", "owner@acme.test", stdout=io.StringIO())
    assert sign_in(client, "owner@acme.test", PASSWORD).status_code == 302


def test_an_ipv6_network_counts_as_one_address(owner):
    # A host holds its whole /64: a fresh address per try is still the same client.
    statuses = [
        sign_in(
            Client(REMOTE_ADDR=f"2001:db8:1:2::{n + 1:x}"), f"user{n}@acme.test", WRONG
        ).status_code
        for n in range(30)
    ]
    assert statuses == [200] * 29 + [429]
    next_door = Client(REMOTE_ADDR="2001:db8:1:2:ffff::1")
    assert sign_in(next_door, "owner@acme.test", PASSWORD).status_code == 429
    # Another /64 is another client.
    elsewhere = Client(REMOTE_ADDR="2001:db8:1:3::1")
    assert sign_in(elsewhere, "owner@acme.test", PASSWORD).status_code == 302
