"""A new key's secret exists in plaintext only in the one response that shows it.

Each test creates keys through the views as a signed-in owner, once with a plain form post
and once with htmx, then uses every page and action around them, and searches one place
the secret could leak to. Every search first proves it can see: the key ID, which is not
secret, is found where the secret must not be.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from django.db import connection
from django.http import HttpResponse
from django.test import Client

from audit.models import AuditEvent
from excloud_portal.logs import JsonFormatter, RequestIdFilter
from keys.credentials import unseal
from keys.models import AccessKey

from .conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

PG_DUMP = "/usr/bin/pg_dump"


def database_dump() -> str:
    """The whole test database as SQL, as pg_dump writes it."""
    db = settings.DATABASES["default"]
    return subprocess.run(
        [
            PG_DUMP,
            "--no-password",
            "--host",
            db["HOST"] or "127.0.0.1",
            "--port",
            str(db["PORT"] or 5432),
            "--username",
            db["USER"] or "postgres",
            "--dbname",
            db["NAME"],
        ],
        capture_output=True,
        check=True,
        text=True,
    ).stdout


KEYS = "/orgs/acme/keys/"
NEW = "/orgs/acme/keys/new/"
HX = {"HX-Request": "true"}
TOKEN_RE = re.compile(r'name="creation_token" value="([^"]+)"')
KEY_ID_RE = re.compile(r'<code id="new-access-key-id">(EXC[A-Z2-7]{17})</code>')
SECRET_RE = re.compile(
    r'<code id="new-secret-access-key" class="secret">([A-Za-z0-9+/]{40})</code>'
)


@dataclass
class Shown:
    """Keys created through the views, their secrets, and every response after creation."""

    client: Client
    key_ids: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    creations: list[HttpResponse] = field(default_factory=list)
    later: list[tuple[str, HttpResponse]] = field(default_factory=list)


def _creation_token(client: Client) -> str:
    page = client.get(KEYS)
    assert page.status_code == 200
    return TOKEN_RE.search(page.content.decode()).group(1)


def _create(shown: Shown, name: str, headers: dict[str, str]) -> str:
    token = _creation_token(shown.client)
    response = shown.client.post(NEW, {"name": name, "creation_token": token}, headers=headers)
    assert response.status_code == 200
    html = response.content.decode()
    shown.key_ids.append(KEY_ID_RE.search(html).group(1))
    shown.secrets.append(SECRET_RE.search(html).group(1))
    shown.creations.append(response)
    return token


def create_keys_and_use_every_page(owner) -> Shown:
    client = Client()
    login = client.post("/accounts/login/", {"username": owner.user.email, "password": PASSWORD})
    assert login.status_code == 302
    shown = Shown(client)
    token_a = _create(shown, "laptop", {})
    token_b = _create(shown, "ci-deploy", {**HX, "HX-Target": "create-panel"})
    a, b = shown.key_ids

    def fetch(label: str, method: str, path: str, status: int, data=None, headers=None):
        response = getattr(client, method)(path, data or {}, headers=headers or {})
        assert response.status_code == status, label
        shown.later.append((label, response))
        if response.status_code == 302:
            fetch(f"{label}, redirected", "get", response["Location"], 200)

    def look_around(when: str) -> None:
        fetch(f"key list {when}", "get", KEYS, 200)
        fetch(f"retired tab {when}", "get", f"{KEYS}?tab=retired", 200)
        fetch(f"table refresh {when}", "get", KEYS, 200, headers={**HX, "HX-Target": "key-table"})
        fetch(f"detail of A {when}", "get", f"{KEYS}{a}/", 200)
        fetch(f"detail of B {when}", "get", f"{KEYS}{b}/", 200)
        fetch(f"create form {when}", "get", NEW, 200)
        fetch(f"members {when}", "get", "/orgs/acme/members/", 200)

    look_around("after creation")
    fetch("revoke page", "get", f"{KEYS}{a}/revoke/?next={KEYS}", 200)
    fetch("revoke modal", "get", f"{KEYS}{a}/revoke/", 200, headers=HX)
    fetch("deactivate", "post", f"{KEYS}{a}/deactivate/", 302, {"next": KEYS})
    fetch("reactivate", "post", f"{KEYS}{a}/reactivate/", 302, {"next": KEYS})
    fetch("htmx deactivate", "post", f"{KEYS}{a}/deactivate/", 200, headers=HX)
    fetch("htmx reactivate", "post", f"{KEYS}{a}/reactivate/", 200, headers=HX)
    fetch("htmx revoke", "post", f"{KEYS}{a}/revoke/", 200, {"reason": "lost"}, headers=HX)
    fetch("revoke", "post", f"{KEYS}{b}/revoke/", 302, {"next": KEYS})
    fetch("revoke again", "post", f"{KEYS}{a}/revoke/", 302, {"next": KEYS})
    fetch("htmx deactivate revoked", "post", f"{KEYS}{b}/deactivate/", 200, headers=HX)
    fetch("resubmitted form", "post", NEW, 200, {"name": "laptop", "creation_token": token_a})
    fetch(
        "resubmitted htmx form",
        "post",
        NEW,
        200,
        {"name": "ci-deploy", "creation_token": token_b},
        headers={**HX, "HX-Target": "create-panel"},
    )
    look_around("after revocation")
    return shown


def assert_no_secret(shown: Shown, where: str, text: str | bytes) -> None:
    for secret in shown.secrets:
        needle = secret.encode() if isinstance(text, bytes) else secret
        assert needle not in text, f"a secret is in {where}"


@pytest.fixture
def log_output(caplog, capsys) -> Iterator[Callable[[], dict[str, str]]]:
    """All log records at every level, and everything written to stdout and stderr.

    SQL statements and their parameters are logged too, so a secret sent to the
    database in plaintext would show up here.
    """
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django")
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    redirected, attached = [], []
    for logger in loggers:
        for handler in logger.handlers:
            # Console handlers hold the stderr of start-up; point them at capsys's for now.
            if type(handler) is logging.StreamHandler:
                redirected.append((handler, handler.setStream(sys.stderr)))
        if logger is not logging.getLogger() and not logger.propagate:
            logger.addHandler(caplog.handler)
            attached.append(logger)
    connection.force_debug_cursor = True

    def read() -> dict[str, str]:
        out, err = capsys.readouterr()
        records = [repr(vars(record)) for record in caplog.records]
        return {"log records": "\n".join([caplog.text, *records]), "stdout and stderr": out + err}

    try:
        yield read
    finally:
        connection.force_debug_cursor = False
        for logger in attached:
            logger.removeHandler(caplog.handler)
        for handler, stream in redirected:
            # Not setStream(): it would flush capsys's stream, which pytest has closed.
            with handler.lock:
                handler.stream = stream


def cache_contents() -> bytes:
    """Every key and value in the cache, raw, including any broker queue in the same Redis."""
    cache = caches["default"]
    if isinstance(cache, LocMemCache):
        return b"\n".join(key.encode() + b"\n" + value for key, value in cache._cache.items())
    assert isinstance(cache, RedisCache), f"no reader for {type(cache)}"
    client = cache._cache.get_client(write=False)
    chunks = []
    for key in client.scan_iter():
        chunks.append(key)
        kind = client.type(key)
        if kind == b"string":
            chunks.append(client.get(key))
        elif kind == b"list":
            chunks.extend(client.lrange(key, 0, -1))
        elif kind == b"set":
            chunks.extend(client.smembers(key))
        elif kind == b"zset":
            chunks.extend(client.zrange(key, 0, -1))
        elif kind == b"hash":
            for name, value in client.hgetall(key).items():
                chunks += [name, value]
    for chunk in list(chunks):
        chunks.extend(_decoded_broker_bodies(chunk))
    return b"\n".join(chunks)


def _decoded_broker_bodies(chunk: bytes) -> list[bytes]:
    """Kombu stores Celery messages with base64 bodies; decode them to search them."""
    try:
        message = json.loads(chunk)
    except ValueError:
        return []
    if not isinstance(message, dict) or not isinstance(message.get("body"), str):
        return []
    if message.get("properties", {}).get("body_encoding") == "base64":
        return [base64.b64decode(message["body"])]
    return [message["body"].encode()]


def test_it_shows_the_secret_once_in_a_response_that_must_not_be_cached(owner):
    shown = create_keys_and_use_every_page(owner)
    for response, secret in zip(shown.creations, shown.secrets, strict=True):
        assert secret in response.content.decode()
        assert "no-store" in response["Cache-Control"]


def test_it_keeps_the_secret_out_of_every_later_page(owner):
    shown = create_keys_and_use_every_page(owner)
    assert shown.key_ids[0] in shown.later[0][1].content.decode()
    for label, response in shown.later:
        assert_no_secret(shown, label, response.content)
        assert_no_secret(shown, f"the headers of {label}", response.serialize_headers())
    assert_no_secret(shown, "the client's cookies", shown.client.cookies.output())


@pytest.fixture(params=["text", "json"])
def json_lines(request, log_output) -> Iterator[Callable[[], str]]:
    """With "json", every record also written as LOG_FORMAT=json writes it."""
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    if request.param == "json":
        logging.getLogger().addHandler(handler)
    try:
        yield written.getvalue
    finally:
        logging.getLogger().removeHandler(handler)


def test_it_keeps_the_secret_out_of_the_logs(owner, log_output, json_lines):
    shown = create_keys_and_use_every_page(owner)
    outputs = log_output()
    if json_lines():
        lines = [json.loads(line) for line in json_lines().splitlines()]
        assert any(line.get("request_id") for line in lines)
        assert_no_secret(shown, "the JSON lines", json_lines())
        outputs["the JSON lines' messages"] = "\n".join(line["message"] for line in lines)
    for where, logged in outputs.items():
        # The SQL that stored each key is in the capture: proof that it sees what is logged.
        assert 'INSERT INTO "keys_accesskey"' in logged
        for key_id in shown.key_ids:
            assert key_id in logged, where
        assert_no_secret(shown, where, logged)


def test_it_keeps_the_secret_out_of_the_sessions_and_the_cache(owner):
    shown = create_keys_and_use_every_page(owner)
    session = SessionStore(session_key=shown.client.session.session_key)
    assert session.get("_auth_user_id") == str(owner.user.pk)
    assert_no_secret(shown, "the client's session", repr(dict(session.items())))
    for stored in Session.objects.all():
        assert_no_secret(shown, "a stored session", repr(stored.get_decoded()))

    cache = caches["default"]
    canary = "leak-search-canary-" + shown.key_ids[0]
    cache.set("leak-search-canary", canary)
    try:
        assert canary.encode() in cache_contents()
        cache.delete("leak-search-canary")
        assert_no_secret(shown, "the cache", cache_contents())
    finally:
        cache.delete("leak-search-canary")


def test_it_keeps_the_secret_out_of_audit_events(owner):
    shown = create_keys_and_use_every_page(owner)
    events = list(AuditEvent.objects.values())
    created = [e for e in events if e["action"] == "access_key.created"]
    assert sorted(e["target_id"] for e in created) == sorted(shown.key_ids)
    for event in events:
        assert_no_secret(shown, f"the details of {event['action']}", json.dumps(event["details"]))
        assert_no_secret(shown, f"the {event['action']} event", json.dumps(event, default=str))


def test_it_stores_the_secret_only_sealed(owner):
    shown = create_keys_and_use_every_page(owner)
    dump = database_dump()

    for key_id, secret in zip(shown.key_ids, shown.secrets, strict=True):
        key = AccessKey.objects.get(pk=key_id)
        # The dump holds the committed rows, sealed blob included (bytea is dumped as hex).
        assert key_id in dump
        assert bytes(key.secret_sealed).hex() in dump
        assert secret not in dump
        assert secret.encode().hex() not in dump
        # The blob really is this secret, so a plaintext copy anywhere would have been found.
        assert unseal(key.secret_kek_id, key.secret_sealed, key.pk) == secret
