"""The portal during an outage of its database or cache: JSON 503 with Retry-After on every
API route, a plain 503 page on the dashboard, and an API that keeps answering without its
rate limiter's cache.

The outage is real: the connection goes to a local port that refuses it, so every query
fails the way it does when PostgreSQL or Redis is down. tests/test_faults.py kills and
freezes whole servers under a running stack.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket

import pytest
from django.db import connections
from django.test import Client

from accounts.tokens import create_api_token
from audit.trail import Actor
from excloud_portal.api import api

from .conftest import client_for, new_key

DASHBOARD_PAGES = [
    "/",
    "/orgs/",
    "/orgs/{slug}/keys/",
    "/orgs/{slug}/keys/new/",
    "/orgs/{slug}/keys/{key}/",
    "/orgs/{slug}/members/",
    "/orgs/{slug}/audit/",
    "/orgs/{slug}/tokens/",
    "/accounts/login/",
]


# Routes that read their body before anything else get a well-formed one, so what is
# tested is the outage, not the validation.
BODIES = {"/api/v1/device/token": {"device_code": "a-device-code"}}


@contextlib.contextmanager
def refused_port():
    """A local port that is bound but not listening: connecting to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@contextlib.contextmanager
def database_down():
    connection = connections["default"]
    saved = dict(connection.settings_dict)
    with refused_port() as port:
        connection.close()
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(port))
        try:
            yield
        finally:
            connection.close()
            connection.settings_dict.clear()
            connection.settings_dict.update(saved)


def api_routes() -> list[tuple[str, str]]:
    """Every (method, path) of the REST API, from its own OpenAPI schema."""
    schema = api.get_openapi_schema()
    routes = []
    for path, operations in schema["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "EXCAAAAAAAAAAAAAAAAA", path)
        routes += [(method.upper(), concrete) for method in operations]
    return routes


def assert_unavailable_json(response) -> None:
    assert response.status_code == 503, response.content
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "service_unavailable"
    assert 0 < int(response["Retry-After"]) <= 300


@pytest.mark.django_db(transaction=True)
def test_every_api_route_answers_json_503_while_the_database_is_down(owner):
    token = create_api_token(owner, Actor.for_user(owner.user), "outage").plaintext
    routes = api_routes()
    assert len(routes) >= 8, routes
    client = Client(raise_request_exception=False)
    with database_down():
        for method, path in routes:
            response = client.generic(
                method,
                path,
                json.dumps(BODIES.get(path, {})),
                content_type="application/json",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert_unavailable_json(response)
    # And it recovers without a restart.
    response = client.get("/api/v1/config", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.content


@pytest.mark.django_db(transaction=True)
def test_dashboard_pages_answer_a_plain_503_while_the_database_is_down(owner):
    key, _ = new_key(owner)
    signed_in = client_for(owner)
    signed_in.raise_request_exception = False
    anonymous = Client(raise_request_exception=False)
    with database_down():
        for page in DASHBOARD_PAGES:
            url = page.format(slug=owner.org.slug, key=key.pk)
            response = signed_in.get(url)
            assert response.status_code == 503, (url, response.status_code)
            assert b"Temporarily unavailable" in response.content
            assert int(response["Retry-After"]) > 0
            # Someone signed out needs no database to be sent to the sign-in page.
            response = anonymous.get(url)
            assert response.status_code in (200, 302), (url, response.status_code)
    assert signed_in.get(f"/orgs/{owner.org.slug}/keys/").status_code == 200


def test_other_server_errors_stay_500(settings, db):
    # Only an outage is a 503: a bug answers 500, as JSON under /api/.
    from excloud_portal import errors

    request = Client().get("/").wsgi_request
    try:
        raise ValueError("a bug")
    except ValueError:
        response = errors.server_error(request)
    assert response.status_code == 500
    assert b"Something went wrong" in response.content
    request.path = "/api/v1/keys"
    try:
        raise ValueError("a bug")
    except ValueError:
        response = errors.server_error(request)
    assert response.status_code == 500
    assert json.loads(response.content)["code"] == "server_error"


def test_the_api_answers_without_its_rate_limit_cache(owner, settings, caplog):
    token = create_api_token(owner, Actor.for_user(owner.user), "no-cache").plaintext
    settings.EXCLOUD_API_RATE_LIMIT = 1
    with refused_port() as port:
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{port}/0",
            }
        }
        client = Client()
        with caplog.at_level(logging.WARNING, logger="accounts.throttle"):
            # Over the limit of one: the limiter cannot count, so both go through.
            for _ in range(2):
                response = client.get("/api/v1/keys", headers={"Authorization": f"Bearer {token}"})
                assert response.status_code == 200, response.content
    assert "not checked: the cache is unreachable" in caplog.text
