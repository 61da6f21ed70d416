"""What every answer tells the browser: the Content-Security-Policy on every page (error
pages and the API included), the other hardening headers, and ``Cache-Control: no-store``
on everything that shows keys, tokens, audit data, members or security settings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path, reverse

from accounts.tokens import create_api_token
from audit.trail import Actor
from excloud_portal.urls import urlpatterns as portal_urlpatterns
from tests.conftest import client_for
from tests.urlconf import every_url

POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}
HARDENING = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _fails(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a view")


# This module is also a URLconf: the portal's, plus a view that fails, for the 500 page.
urlpatterns = [path("test-only/fails/", _fails), *portal_urlpatterns]


def policy(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return dict(part.strip().partition(" ")[::2] for part in header.split(";"))


def assert_hardened(response) -> None:
    assert policy(response) == POLICY
    for name, value in HARDENING.items():
        assert response[name] == value, name


def assert_no_store(response) -> None:
    assert "no-store" in response.get("Cache-Control", ""), response.get("Cache-Control")


@pytest.fixture
def api_token(owner) -> str:
    return create_api_token(owner, Actor.for_user(owner.user), "ci").plaintext


@pytest.mark.parametrize("who", ["signed in", "signed out"])
def test_it_hardens_every_page_of_the_urlconf(owner, url_arguments, who):
    client = client_for(owner) if who == "signed in" else Client()
    statuses = set()
    for url in every_url(url_arguments).values():
        r = client.get(url)
        assert_hardened(r)
        statuses.add(r.status_code)
    # Pages, redirects and method errors all carry them (error pages: the next test).
    assert {200, 302, 405} <= statuses


def test_it_hardens_the_error_pages(owner, auditor, settings):
    settings.ROOT_URLCONF = __name__
    missing = client_for(owner).get("/orgs/acme/no-such-page/")
    assert missing.status_code == 404
    refused = client_for(auditor).get(reverse("key_create", args=["acme"]))
    assert refused.status_code == 403
    csrf = Client(enforce_csrf_checks=True).post(reverse("login"), {"username": "x"})
    assert csrf.status_code == 403
    anonymous = Client(raise_request_exception=False)
    failed = anonymous.get("/test-only/fails/")
    assert failed.status_code == 500
    assert b"Something went wrong on our side" in failed.content
    for r in (missing, refused, csrf, failed):
        assert_hardened(r)


def test_it_hardens_the_api(owner, api_token):
    signed = Client().get("/api/v1/keys", HTTP_AUTHORIZATION=f"Bearer {api_token}")
    unsigned = Client().get("/api/v1/keys")
    assert (signed.status_code, unsigned.status_code) == (200, 401)
    for r in (signed, unsigned):
        assert_hardened(r)
        assert_no_store(r)


def test_it_lists_the_headers_of_a_handful_of_pages(owner, key):
    client = client_for(owner)
    pages = {
        "sign-in": Client().get(reverse("login")),
        "keys": client.get(reverse("key_list", args=["acme"])),
        "key": client.get(reverse("key_detail", args=["acme", key.pk])),
        "audit": client.get(reverse("audit_list", args=["acme"])),
        "members": client.get(reverse("member_list", args=["acme"])),
    }
    for name, r in pages.items():
        assert r.status_code == 200, name
        assert r["X-Content-Type-Options"] == "nosniff", name
        assert r["Referrer-Policy"] == "same-origin", name
        assert r["X-Frame-Options"] == "DENY", name
        assert "frame-ancestors 'none'" in r["Content-Security-Policy"], name


@pytest.mark.parametrize(
    "name",
    [
        "key_list",
        "key_create",
        "key_detail",
        "key_revoke",
        "key_rotate",
        "key_scope",
        "key_policy",
        "member_list",
        "token_list",
        "audit_list",
        "audit_export_csv",
        "audit_export_jsonl",
        "org_list",
        "password_change",
    ],
)
def test_it_keeps_private_pages_out_of_caches(owner, url_arguments, name):
    url = every_url(url_arguments)[name]
    r = client_for(owner).get(url)
    assert r.status_code == 200, url
    assert_no_store(r)


def test_it_keeps_every_signed_in_answer_out_of_caches(owner, url_arguments):
    client = client_for(owner)
    for url in every_url(url_arguments).values():
        assert_no_store(client.get(url))


def test_it_keeps_the_new_secret_out_of_caches(owner):
    r = client_for(owner).post(
        reverse("key_create", args=["acme"]), {"name": "laptop", "creation_token": "t" * 32}
    )
    assert r.status_code == 200
    assert b"SECRET" in r.content.upper()
    assert_no_store(r)


def test_it_lets_caches_keep_static_files(db):
    r = Client().get("/static/css/app.css")
    assert r.status_code == 200
    assert "no-store" not in r.get("Cache-Control", "")


INLINE_RE = re.compile(
    r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=|\bhx-on|javascript:",
    re.IGNORECASE,
)


def test_it_keeps_script_and_style_out_of_templates():
    """What the policy would refuse: inline scripts, styles and handlers, javascript: URLs."""
    base = Path(settings.BASE_DIR)
    templates = [
        path
        for path in base.rglob("templates/**/*.html")
        if not any(
            part in ("var", "node_modules") or part.startswith(".venv")
            for part in path.relative_to(base).parts
        )
    ]
    assert len(templates) > 20
    found = [
        f"{path.relative_to(base)}: {match.group(0)}"
        for path in templates
        for match in INLINE_RE.finditer(path.read_text())
    ]
    assert found == []


def test_it_configures_htmx_to_need_nothing_inline():
    page = (Path(settings.BASE_DIR) / "templates" / "base.html").read_text()
    config = json.loads(re.search(r'name="htmx-config" content=\'([^\']+)\'', page)[1])
    assert config["includeIndicatorStyles"] is False
    assert config["allowEval"] is False
    assert config["allowScriptTags"] is False
