"""The settings a production deployment gets from its environment: Django's deployment
checks pass with nothing but the required values set, and `make run` on plain http keeps
working (no redirect to https, no Secure cookies)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from excloud_portal import devenv
from excloud_portal.settings import parse_proxy_ssl_header

REPO = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "SITE_URL": "https://portal.example.com",
    "DJANGO_ALLOWED_HOSTS": "portal.example.com",
    # The secrets a deployment must set (with DJANGO_SECRET_KEY): none has a default.
    "EXCLOUD_SECRET_KEYS": "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    "EXCLOUD_AUDIT_SIGNING_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
    "EXCLOUD_S3_UPSTREAM_ACCESS_KEY_ID": "PRODUCTIONUPSTREAM",
    "EXCLOUD_S3_UPSTREAM_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
}
SHOWN = [
    "DEBUG",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SESSION_COOKIE_SAMESITE",
    "CSRF_COOKIE_HTTPONLY",
]


def _run(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """manage.py in a process of its own, with exactly this environment (plus PATH)."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env={"PATH": os.environ["PATH"], "EXCLOUD_VAR_DIR": str(tmp_path / "var"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _development(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    """env and what `make run`'s start-up step adds: the secrets of var/dev.env."""
    env = {"EXCLOUD_VAR_DIR": str(tmp_path / "var"), **env}
    devenv.load(env)
    return env


def _settings(tmp_path: Path, env: dict[str, str]) -> dict:
    code = (
        "import json; from django.conf import settings as s; "
        f"print(json.dumps({{n: getattr(s, n) for n in {SHOWN!r}}}))"
    )
    result = _run(tmp_path, env, "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_it_passes_the_deployment_checks(tmp_path):
    env = {**PRODUCTION, "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}
    result = _run(tmp_path, env, "check", "--deploy")
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr
    assert "WARNINGS" not in result.stderr


def test_it_defaults_to_https_everything_in_production(tmp_path):
    env = {**PRODUCTION, "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}
    assert _settings(tmp_path, env) == {
        "DEBUG": False,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_PROXY_SSL_HEADER": None,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "CSRF_COOKIE_HTTPONLY": True,
    }


@pytest.mark.parametrize(
    "name",
    [
        "DJANGO_SECRET_KEY",
        "EXCLOUD_SECRET_KEYS",
        "EXCLOUD_AUDIT_SIGNING_KEY",
        "EXCLOUD_S3_UPSTREAM_ACCESS_KEY_ID",
    ],
)
def test_it_names_a_missing_secret_and_generates_none(tmp_path, name):
    env = {**PRODUCTION, "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}
    del env[name]
    result = _run(tmp_path, env, "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert name in result.stderr
    assert not (tmp_path / "var").exists()


def test_it_keeps_development_on_plain_http(tmp_path):
    shown = _settings(tmp_path, _development(tmp_path, {"DJANGO_DEBUG": "1"}))
    assert shown["SECURE_SSL_REDIRECT"] is False
    assert shown["SECURE_HSTS_SECONDS"] == 0
    assert shown["SESSION_COOKIE_SECURE"] is False
    assert shown["CSRF_COOKIE_SECURE"] is False


def test_it_takes_each_value_from_the_environment(tmp_path):
    env = {
        **PRODUCTION,
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_SSL_REDIRECT": "0",
        "DJANGO_HSTS_SECONDS": "600",
        "DJANGO_HSTS_INCLUDE_SUBDOMAINS": "0",
        "DJANGO_HSTS_PRELOAD": "1",
        "DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO:https",
        "DJANGO_SECURE_COOKIES": "0",
    }
    shown = _settings(tmp_path, env)
    assert shown["SECURE_SSL_REDIRECT"] is False
    assert shown["SECURE_HSTS_SECONDS"] == 600
    assert shown["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is False
    assert shown["SECURE_HSTS_PRELOAD"] is True
    assert shown["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert shown["SESSION_COOKIE_SECURE"] is False


@pytest.mark.parametrize(
    "value",
    [
        "X-Forwarded-Proto:https",
        "HTTP_X_FORWARDED_PROTO",
        "HTTP_X_FORWARDED_PROTO:",
        "HTTP_X_FORWARDED_PROTO:https:extra",
        ":https",
    ],
)
def test_it_refuses_a_malformed_proxy_header(value):
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SECURE_PROXY_SSL_HEADER"):
        parse_proxy_ssl_header(value)


def test_it_reads_a_proxy_header():
    assert parse_proxy_ssl_header("") is None
    assert parse_proxy_ssl_header("HTTP_X_FORWARDED_PROTO:https") == (
        "HTTP_X_FORWARDED_PROTO",
        "https",
    )


def test_it_refuses_a_negative_hsts_duration(tmp_path):
    env = _development(tmp_path, {"DJANGO_DEBUG": "1", "DJANGO_HSTS_SECONDS": "-1"})
    result = _run(tmp_path, env, "check")
    assert result.returncode != 0
    assert "DJANGO_HSTS_SECONDS" in result.stderr
