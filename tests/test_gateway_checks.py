"""The system check that keeps the S3 endpoint off the dashboard's site."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks

from gateway.checks import shares_site


@pytest.mark.parametrize(
    ("endpoint", "site", "shared"),
    [
        ("http://127.0.0.1:9000", "http://127.0.0.1:8000", True),
        ("https://portal.example.com:9000", "https://portal.example.com", True),
        ("https://s3.example.com", "https://portal.example.com", True),
        ("https://example.com", "https://portal.example.com", True),
        ("https://S3.Example.COM.", "https://portal.example.com", True),
        ("https://s3.example-storage.net", "https://portal.example.com", False),
        ("http://127.0.0.2:9000", "http://127.0.0.1:8000", False),
        ("http://[::1]:9000", "http://127.0.0.1:8000", False),
    ],
)
def test_it_tells_when_the_endpoint_shares_the_dashboards_site(endpoint, site, shared):
    assert shares_site(endpoint, site) is shared


def _warnings() -> list[str]:
    return [message.id for message in run_checks() if message.id == "gateway.W001"]


def test_it_warns_outside_development_when_the_endpoint_shares_the_site(settings):
    settings.DEBUG = False
    settings.SITE_URL = "https://portal.example.com"
    settings.EXCLOUD_S3_ENDPOINT = "https://s3.example.com"
    assert _warnings() == ["gateway.W001"]

    settings.EXCLOUD_S3_ENDPOINT = "https://s3.example-storage.net"
    assert _warnings() == []


@pytest.mark.parametrize(
    ("debug", "site", "endpoint"),
    [
        (True, "https://portal.example.com", "https://s3.example.com"),
        (False, "http://127.0.0.1:8000", "http://127.0.0.1:9000"),
        (False, "http://localhost:8000", "http://localhost:9000"),
    ],
)
def test_it_stays_quiet_in_development(settings, debug, site, endpoint):
    settings.DEBUG = debug
    settings.SITE_URL = site
    settings.EXCLOUD_S3_ENDPOINT = endpoint
    assert _warnings() == []
