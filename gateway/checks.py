"""System checks for the S3 endpoint's place beside the dashboard.

Objects are served from the S3 endpoint's origin. If that origin shares a site with the
dashboard, an uploaded HTML page can read or set the dashboard's cookies (cookies are not
kept apart by port, and a parent domain's cookies reach every subdomain), so production
puts the endpoint on a registrable domain of its own.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Warning, register


def _site(host: str) -> str:
    """The part of a host name cookies are shared across: the host itself for an IP
    address or a single label, else its last two labels. (Registrable domains under
    public suffixes such as co.uk have three; two is the cautious reading.)"""
    host = host.rstrip(".").lower()
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    labels = host.split(".")
    return ".".join(labels[-2:])


def shares_site(endpoint: str, site_url: str) -> bool:
    endpoint_host = urlsplit(endpoint).hostname or ""
    site_host = urlsplit(site_url).hostname or ""
    if not endpoint_host or not site_host:
        return False
    return _site(endpoint_host) == _site(site_host)


def _in_development(site_url: str) -> bool:
    """A dashboard served on a loopback address is a developer's (`make run`)."""
    host = (urlsplit(site_url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@register()
def s3_endpoint_on_its_own_site(app_configs, **kwargs) -> list[Warning]:
    if settings.DEBUG or _in_development(settings.SITE_URL):
        return []
    if not shares_site(settings.EXCLOUD_S3_ENDPOINT, settings.SITE_URL):
        return []
    return [
        Warning(
            "EXCLOUD_S3_ENDPOINT shares a site with SITE_URL.",
            hint=(
                "Objects served from the S3 endpoint could read or set the dashboard's "
                "cookies (cookies are shared across ports and subdomains). Serve the S3 "
                "endpoint from a registrable domain of its own, such as "
                "s3.example-storage.net beside portal.example.com."
            ),
            id="gateway.W001",
        )
    ]
