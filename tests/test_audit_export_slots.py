"""At most EXCLOUD_AUDIT_EXPORT_CONCURRENCY audit exports stream at once per user; more
answer 429 with Retry-After, and a slot frees when its stream ends or is dropped."""

from __future__ import annotations

import gc
import html

import pytest
from django.core.cache import cache
from django.core.signals import request_finished
from django.db import close_old_connections

from audit import export_slots
from audit.models import AuditEvent

from .conftest import client_for

CSV = "/orgs/acme/audit/export.csv"
JSONL = "/orgs/acme/audit/export.jsonl"


@pytest.fixture(autouse=True)
def free_slots(everyone):
    """No slot left over from an earlier run for these users' IDs."""
    keys = [f"audit-export-slot:{m.user_id}:{n}" for m in everyone.values() for n in range(5)]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


def started(response):
    """The response with its first chunk read: an export in progress."""
    assert response.status_code == 200
    response.chunks = iter(response.streaming_content)
    assert next(response.chunks)
    return response


def dropped(response) -> None:
    """Close the response as the server does when its client goes away."""
    if hasattr(response, "chunks"):
        # A started stream: closing it runs the test client's own close of the response.
        response._iterator.close()
        return
    # As in Django's test client, request_finished must not close the test's connection.
    request_finished.disconnect(close_old_connections)
    try:
        response.close()
    finally:
        request_finished.connect(close_old_connections)


def exports_recorded() -> int:
    return AuditEvent.objects.filter(action="audit.exported").count()


def assert_busy(response) -> None:
    assert response.status_code == 429
    assert response["Retry-After"] == str(export_slots.RETRY_AFTER)
    assert response["Content-Type"].startswith("text/html")
    assert "Too many exports at once" in html.unescape(response.content.decode())


def test_a_third_export_waits_until_one_of_two_finishes(everyone):
    client = client_for(everyone["owner"])
    first, second = started(client.get(CSV)), started(client.get(JSONL))
    recorded = exports_recorded()
    assert_busy(client.get(CSV))
    assert_busy(client.get(JSONL, {"q": "laptop"}))
    # A refused export is not recorded as an export.
    assert exports_recorded() == recorded
    # Finishing one frees its slot.
    b"".join(first.chunks)
    third = started(client.get(CSV))
    assert_busy(client.get(CSV))
    for response in (second, third):
        b"".join(response.chunks)
    assert client.get(CSV).status_code == 200


def test_a_dropped_download_frees_its_slot(everyone):
    client = client_for(everyone["owner"])
    first = started(client.get(CSV))
    # Never read at all, then dropped: the server closes the response.
    unread = client.get(CSV)
    assert_busy(client.get(CSV))
    dropped(unread)
    # Held in a name: a response nothing refers to is closed, freeing its slot, whenever
    # the garbage collector gets to it.
    second = started(client.get(CSV))
    gc.collect()
    assert_busy(client.get(CSV))
    dropped(first)
    dropped(second)
    assert client.get(JSONL).status_code == 200


def test_the_limit_is_per_user_and_set_by_the_environment(everyone, settings):
    settings.EXCLOUD_AUDIT_EXPORT_CONCURRENCY = 1
    owner, admin = client_for(everyone["owner"]), client_for(everyone["admin"])
    held = started(owner.get(CSV))
    assert_busy(owner.get(CSV))
    other = started(admin.get(CSV))
    settings.EXCLOUD_AUDIT_EXPORT_CONCURRENCY = 3
    more = [started(owner.get(CSV)), started(owner.get(JSONL))]
    assert_busy(owner.get(CSV))
    for response in [held, other, *more]:
        dropped(response)


def test_a_slot_expires_by_itself_if_its_worker_dies(everyone):
    slot = export_slots.take(everyone["owner"].user_id)
    assert slot is not None
    # The slot's cache entry carries an expiry, so a worker killed mid-stream (which never
    # closes the response) cannot hold the slot for longer than SLOT_TTL.
    key = cache.make_and_validate_key(slot.key)
    ttl = cache._cache.get_client(key).ttl(key)
    assert 0 < ttl <= export_slots.SLOT_TTL
    slot.release()
    assert cache.get(slot.key) is None


def test_releasing_an_expired_slot_leaves_its_next_holder_alone(everyone):
    slot = export_slots.take(everyone["owner"].user_id)
    # The slot expired and another export took it.
    cache.delete(slot.key)
    successor = export_slots.take(everyone["owner"].user_id)
    assert successor is not None and successor.key == slot.key
    slot.release()
    assert cache.get(successor.key) == successor.holder
    successor.release()
