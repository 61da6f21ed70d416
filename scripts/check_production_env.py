"""Refuse to start the production profile (`make run-prod`) without its settings.

With a setting missing, the portal stops (a secret, one at a time) or falls back to its
development default: SQLite, a filesystem broker, localhost URLs, the embedded object
store. In production each of those is wrong, and some silently, so they are checked here,
all at once, before anything starts. Values are never printed: several are secrets.

Runs on the Python standard library alone, so it answers before `make install`.
"""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

# Django's own deployment check calls a shorter key weak (security.W009).
SECRET_KEY_MIN_LENGTH = 50
TRUE = ("1", "true", "yes", "on")

# Each setting a production start needs, and what it is, for the message when it is missing.
REQUIRED = {
    "DJANGO_SECRET_KEY": "signs sessions and tokens; 50 or more random characters",
    "DJANGO_ALLOWED_HOSTS": "the host names the portal answers to, comma-separated",
    "SITE_URL": "the portal's public URL, used in links sent by email",
    "DATABASE_URL": "PostgreSQL, postgres://user:password@host:port/name",
    "REDIS_URL": "Redis, redis://host:port/db (or rediss://)",
    "EXCLOUD_SECRET_KEYS": "key-encryption keys for access key secrets, newest first",
    "EXCLOUD_AUDIT_SIGNING_KEY": "the Ed25519 key that signs audit checkpoints",
    "EXCLOUD_S3_ENDPOINT": "the gateways' public URL, shown in credential snippets",
    "EXCLOUD_S3_UPSTREAM_URL": "the object store behind the gateways",
    "EXCLOUD_S3_UPSTREAM_ACCESS_KEY_ID": "the gateways' access key for the object store",
    "EXCLOUD_S3_UPSTREAM_SECRET_ACCESS_KEY": "its secret",
}
URL_SCHEMES = {
    "SITE_URL": ("http", "https"),
    "DATABASE_URL": ("postgres", "postgresql"),
    "REDIS_URL": ("redis", "rediss"),
    "EXCLOUD_S3_ENDPOINT": ("http", "https"),
    "EXCLOUD_S3_UPSTREAM_URL": ("http", "https"),
}

# The profile's own numbers (Makefile, Procfile.prod, gunicorn.conf.py), when set: the
# smallest and largest each may be. One beat per deployment, at most.
NUMBERS = {
    "GATEWAY_PROCESSES": (1, 1000),
    "GATEWAY_PORT": (1, 65535),
    "BEAT_PROCESSES": (0, 1),
    "WORKER_CONCURRENCY": (1, 1000),
    "WEB_CONCURRENCY": (1, 1000),
    "WEB_THREADS": (1, 1000),
    "WEB_TIMEOUT": (1, 86400),
}


def _is_url(value: str, schemes: tuple[str, ...]) -> bool:
    try:
        parts = urlsplit(value)
        return parts.scheme in schemes and bool(parts.hostname)
    except ValueError:
        return False


def problems(env: dict[str, str]) -> list[str]:
    """One line per setting that is missing or unusable in production."""
    found = []
    for name, meaning in REQUIRED.items():
        value = env.get(name, "").strip()
        if not value:
            found.append(f"{name} is not set: {meaning}")
            continue
        schemes = URL_SCHEMES.get(name)
        if schemes and not _is_url(value, schemes):
            found.append(f"{name} must be a {' or '.join(s + '://' for s in schemes)} URL")
    if 0 < len(env.get("DJANGO_SECRET_KEY", "").strip()) < SECRET_KEY_MIN_LENGTH:
        found.append(f"DJANGO_SECRET_KEY is shorter than {SECRET_KEY_MIN_LENGTH} characters")
    for name, (least, most) in NUMBERS.items():
        value = env.get(name, "").strip()
        if value and not (value.isdigit() and least <= int(value) <= most):
            found.append(f"{name} must be a whole number from {least} to {most}, got {value!r}")
    if env.get("DJANGO_DEBUG", "").strip().lower() in TRUE:
        found.append("DJANGO_DEBUG is on: production runs with it off (unset, or 0)")
    return found


def main() -> int:
    found = problems(dict(os.environ))
    if not found:
        return 0
    print(
        "Not starting the production profile; set these in the environment first:", file=sys.stderr
    )
    for line in found:
        print(f"  - {line}", file=sys.stderr)
    print("`make run` starts the development stack, which needs none of them.", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
