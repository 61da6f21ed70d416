"""The web's /healthz and /readyz: answered before sign-in, HTTPS and host checks, with
no session and no audit event."""

from __future__ import annotations

import pytest
from django.test import Client

from audit.models import AuditEvent
from tests.gateway_stack import free_port

pytestmark = pytest.mark.django_db


def test_it_answers_healthz_without_touching_anything(settings):
    settings.SECURE_SSL_REDIRECT = True
    events = AuditEvent.objects.count()
    r = Client().get("/healthz", HTTP_HOST="10.1.2.3")
    assert r.status_code == 200
    assert r.json() == {"status": "alive"}
    assert "no-store" in r["Cache-Control"]
    assert r["X-Request-ID"]
    assert not r.cookies
    assert AuditEvent.objects.count() == events


def test_it_refuses_other_methods():
    assert Client().post("/healthz").status_code == 405
    assert Client().head("/healthz").status_code == 200


def test_it_is_ready_when_its_dependencies_answer(settings):
    settings.SECURE_SSL_REDIRECT = True
    r = Client().get("/readyz", HTTP_HOST="10.1.2.3")
    assert r.status_code == 200
    expected = {"database": "ok", **({"redis": "ok"} if settings.REDIS_URL else {})}
    assert r.json() == {"status": "ready", "checks": expected}
    assert not r.cookies


def test_it_is_not_ready_when_redis_does_not_answer(settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    r = Client().get("/readyz")
    assert r.status_code == 503
    assert r["Retry-After"] == "1"
    body = r.json()
    assert body["status"] == "unavailable"
    assert body["checks"] == {"database": "ok", "redis": "failed: ConnectionError"}


def test_it_answers_signed_in_users_the_same(owner_client):
    r = owner_client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "alive"}
