"""Settings for the Excloud portal.

Every value that differs between deployments comes from the environment, and this module
reads nothing else: it writes no file and reads none. Without a database or Redis in the
environment the portal runs on embedded defaults: SQLite and a filesystem Celery broker
under ``var/``. Secrets have no default; for development, `make run` and `make test`
generate them once into ``var/dev.env`` and load it (excloud_portal/devenv.py).
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import TypeAlias

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from excloud_portal.logs import LOG_FORMATS, logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
VAR_DIR = Path(os.environ.get("EXCLOUD_VAR_DIR", BASE_DIR / "var"))


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}")


def envint(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def envfloat(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def parse_proxy_ssl_header(value: str) -> tuple[str, str] | None:
    """``HTTP_X_FORWARDED_PROTO:https`` -> the pair Django's SECURE_PROXY_SSL_HEADER takes.

    Trusting this header is only right behind a proxy that sets it on every request (and
    strips it from clients), so it is never on by default."""
    if not value:
        return None
    header, _, expected = value.partition(":")
    if not re.fullmatch(r"HTTP_[A-Z0-9_]+", header) or not re.fullmatch(r"[a-z]+", expected):
        raise ImproperlyConfigured(
            "DJANGO_SECURE_PROXY_SSL_HEADER must be HEADER:value as Django sees the header, "
            f"e.g. HTTP_X_FORWARDED_PROTO:https, got {value!r}"
        )
    return header, expected


def envsecret(name: str) -> str:
    """A secret the environment must give; development ones come from var/dev.env."""
    value = os.environ.get(name, "")
    if not value:
        raise ImproperlyConfigured(
            f"{name} is not set. Set it in the environment; for development, `make run` and "
            "`make test` generate it into var/dev.env and load it "
            "(python -m excloud_portal.devenv COMMAND runs a command with it)."
        )
    return value


def parse_networks(name: str, entries: list[str]) -> tuple[IPNetwork, ...]:
    """``127.0.0.0/8,10.1.2.3`` -> the networks; a malformed entry stops the start-up."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} must be comma-separated addresses or networks (CIDR), got {entry!r}"
            ) from None
    return tuple(networks)


DEBUG = envbool("DJANGO_DEBUG", False)
SECRET_KEY = envsecret("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = envlist("DJANGO_CSRF_TRUSTED_ORIGINS")
SITE_URL = os.environ.get("SITE_URL", "http://localhost:8000").rstrip("/")

# Key-encryption keys that seal access key secrets: comma-separated ``id:base64url``
# entries, newest first. New secrets are sealed under the first; the others only open
# secrets sealed before a rotation.
EXCLOUD_SECRET_KEYS = envsecret("EXCLOUD_SECRET_KEYS")
# Ed25519 key that signs audit checkpoints (base64 of the 32-byte private key), and the
# public keys of earlier signing keys, so their checkpoints still verify.
EXCLOUD_AUDIT_SIGNING_KEY = envsecret("EXCLOUD_AUDIT_SIGNING_KEY")
EXCLOUD_AUDIT_PUBLIC_KEYS = os.environ.get("EXCLOUD_AUDIT_PUBLIC_KEYS", "")
AUDIT_CHECKPOINT_INTERVAL = envint("EXCLOUD_AUDIT_CHECKPOINT_SECONDS", 3600)
# How often Celery beat runs the key expiry sweep and the warnings before expiry.
KEY_EXPIRY_INTERVAL = envint("EXCLOUD_KEY_EXPIRY_SECONDS", 300)
KEY_WARNING_INTERVAL = envint("EXCLOUD_KEY_WARNING_SECONDS", 900)
# How often Celery beat rolls hourly usage older than two days into daily rows.
USAGE_ROLLUP_INTERVAL = envint("EXCLOUD_USAGE_ROLLUP_SECONDS", 3600)
# How often beat looks for revoked, inactive or expired keys still in use, to alert the
# org's owners and admins (once a day per key).
DENIED_ALERT_INTERVAL = envint("EXCLOUD_DENIED_ALERT_SECONDS", 900)
if USAGE_ROLLUP_INTERVAL < 1 or DENIED_ALERT_INTERVAL < 1:
    raise ImproperlyConfigured(
        "EXCLOUD_USAGE_ROLLUP_SECONDS and EXCLOUD_DENIED_ALERT_SECONDS must be at least 1"
    )
if KEY_EXPIRY_INTERVAL < 1 or KEY_WARNING_INTERVAL < 1:
    raise ImproperlyConfigured(
        "EXCLOUD_KEY_EXPIRY_SECONDS and EXCLOUD_KEY_WARNING_SECONDS must be at least 1"
    )
EXCLOUD_S3_ENDPOINT = os.environ.get("EXCLOUD_S3_ENDPOINT", "http://127.0.0.1:9000")
EXCLOUD_S3_REGION = os.environ.get("EXCLOUD_S3_REGION", "us-east-1")
# REST API calls each API token may make per window (a fixed window in the cache); 0 is no limit.
EXCLOUD_API_RATE_LIMIT = envint("EXCLOUD_API_RATE_LIMIT", 120)
EXCLOUD_API_RATE_WINDOW = envint("EXCLOUD_API_RATE_WINDOW", 60)
if EXCLOUD_API_RATE_WINDOW < 1:
    raise ImproperlyConfigured("EXCLOUD_API_RATE_WINDOW must be at least 1 (seconds)")
# Device login (`exc login` in a browser): the seconds a terminal waits between polls, and
# the days the API token it receives lasts.
EXCLOUD_DEVICE_LOGIN_INTERVAL = envint("EXCLOUD_DEVICE_LOGIN_INTERVAL", 5)
EXCLOUD_DEVICE_TOKEN_DAYS = envint("EXCLOUD_DEVICE_TOKEN_DAYS", 90)
if EXCLOUD_DEVICE_LOGIN_INTERVAL < 1 or EXCLOUD_DEVICE_TOKEN_DAYS < 1:
    raise ImproperlyConfigured(
        "EXCLOUD_DEVICE_LOGIN_INTERVAL and EXCLOUD_DEVICE_TOKEN_DAYS must be at least 1"
    )
# Audit exports one user may have streaming at once; each holds a database cursor open.
EXCLOUD_AUDIT_EXPORT_CONCURRENCY = envint("EXCLOUD_AUDIT_EXPORT_CONCURRENCY", 2)
if EXCLOUD_AUDIT_EXPORT_CONCURRENCY < 1:
    raise ImproperlyConfigured("EXCLOUD_AUDIT_EXPORT_CONCURRENCY must be at least 1")
# Sign-in lockout (django-axes, counted in the database so it holds across processes and
# without Redis): failed sign-ins per account and per client address within the lockout
# period lock that account, or that address, for the period after the last failure counted.
EXCLOUD_LOGIN_FAILURE_LIMIT = envint("EXCLOUD_LOGIN_FAILURE_LIMIT", 10)
EXCLOUD_LOGIN_IP_FAILURE_LIMIT = envint("EXCLOUD_LOGIN_IP_FAILURE_LIMIT", 30)
EXCLOUD_LOGIN_LOCKOUT_MINUTES = envint("EXCLOUD_LOGIN_LOCKOUT_MINUTES", 15)
if min(EXCLOUD_LOGIN_FAILURE_LIMIT, EXCLOUD_LOGIN_IP_FAILURE_LIMIT) < 1:
    raise ImproperlyConfigured(
        "EXCLOUD_LOGIN_FAILURE_LIMIT and EXCLOUD_LOGIN_IP_FAILURE_LIMIT must be at least 1"
    )
if EXCLOUD_LOGIN_LOCKOUT_MINUTES < 1:
    raise ImproperlyConfigured("EXCLOUD_LOGIN_LOCKOUT_MINUTES must be at least 1")
# Password reset emails per address and per client address, sign-ups per client address,
# and unknown API tokens per client address, each per window (a fixed window in the
# cache); 0 turns a limit off.
EXCLOUD_PASSWORD_RESET_EMAIL_LIMIT = envint("EXCLOUD_PASSWORD_RESET_EMAIL_LIMIT", 3)
EXCLOUD_PASSWORD_RESET_IP_LIMIT = envint("EXCLOUD_PASSWORD_RESET_IP_LIMIT", 10)
EXCLOUD_PASSWORD_RESET_WINDOW_SECONDS = envint("EXCLOUD_PASSWORD_RESET_WINDOW_SECONDS", 3600)
EXCLOUD_SIGNUP_IP_LIMIT = envint("EXCLOUD_SIGNUP_IP_LIMIT", 10)
EXCLOUD_SIGNUP_WINDOW_SECONDS = envint("EXCLOUD_SIGNUP_WINDOW_SECONDS", 3600)
EXCLOUD_API_UNKNOWN_TOKEN_LIMIT = envint("EXCLOUD_API_UNKNOWN_TOKEN_LIMIT", 20)
EXCLOUD_API_UNKNOWN_TOKEN_WINDOW_SECONDS = envint("EXCLOUD_API_UNKNOWN_TOKEN_WINDOW_SECONDS", 60)
for _name in (
    "EXCLOUD_PASSWORD_RESET_EMAIL_LIMIT",
    "EXCLOUD_PASSWORD_RESET_IP_LIMIT",
    "EXCLOUD_SIGNUP_IP_LIMIT",
    "EXCLOUD_API_UNKNOWN_TOKEN_LIMIT",
):
    if globals()[_name] < 0:
        raise ImproperlyConfigured(f"{_name} must be 0 (no limit) or more")
for _name in (
    "EXCLOUD_PASSWORD_RESET_WINDOW_SECONDS",
    "EXCLOUD_SIGNUP_WINDOW_SECONDS",
    "EXCLOUD_API_UNKNOWN_TOKEN_WINDOW_SECONDS",
):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1 (seconds)")
# The object store behind the gateway, which the gateway re-signs every request for with
# these credentials. Without credentials in the environment it is the embedded `rclone
# serve s3` that `make run` starts (gateway/objects.py) at EXCLOUD_S3_UPSTREAM_URL, with
# the credentials EXCLOUD_EMBEDDED_S3_* (generated once into var/dev.env).
EXCLOUD_S3_UPSTREAM_URL = os.environ.get("EXCLOUD_S3_UPSTREAM_URL", "http://127.0.0.1:9100").rstrip(
    "/"
)
EXCLOUD_S3_UPSTREAM_ACCESS_KEY_ID = os.environ.get("EXCLOUD_S3_UPSTREAM_ACCESS_KEY_ID", "")
EXCLOUD_S3_UPSTREAM_SECRET_ACCESS_KEY = os.environ.get("EXCLOUD_S3_UPSTREAM_SECRET_ACCESS_KEY", "")
EXCLOUD_S3_UPSTREAM_EMBEDDED = not (
    EXCLOUD_S3_UPSTREAM_ACCESS_KEY_ID or EXCLOUD_S3_UPSTREAM_SECRET_ACCESS_KEY
)
if EXCLOUD_S3_UPSTREAM_EMBEDDED:
    EXCLOUD_S3_UPSTREAM_ACCESS_KEY_ID = envsecret("EXCLOUD_EMBEDDED_S3_ACCESS_KEY_ID")
    EXCLOUD_S3_UPSTREAM_SECRET_ACCESS_KEY = envsecret("EXCLOUD_EMBEDDED_S3_SECRET_ACCESS_KEY")
elif not (EXCLOUD_S3_UPSTREAM_ACCESS_KEY_ID and EXCLOUD_S3_UPSTREAM_SECRET_ACCESS_KEY):
    raise ImproperlyConfigured(
        "Set both EXCLOUD_S3_UPSTREAM_ACCESS_KEY_ID and EXCLOUD_S3_UPSTREAM_SECRET_ACCESS_KEY "
        "(or neither, for the embedded object store)"
    )
EXCLOUD_S3_UPSTREAM_REGION = os.environ.get("EXCLOUD_S3_UPSTREAM_REGION", "us-east-1")
# How often each gateway sends its per-key usage totals to the worker (seconds).
EXCLOUD_USAGE_FLUSH_SECONDS = envint("EXCLOUD_USAGE_FLUSH_SECONDS", 60)
if EXCLOUD_USAGE_FLUSH_SECONDS < 1:
    raise ImproperlyConfigured("EXCLOUD_USAGE_FLUSH_SECONDS must be at least 1")
# Failed S3 authentications one source IP may make per window before each gateway answers
# its requests with 503 SlowDown until the window ends; 0 turns this off.
EXCLOUD_S3_FAILURE_LIMIT = envint("EXCLOUD_S3_FAILURE_LIMIT", 100)
EXCLOUD_S3_FAILURE_WINDOW_SECONDS = envint("EXCLOUD_S3_FAILURE_WINDOW_SECONDS", 60)
if EXCLOUD_S3_FAILURE_LIMIT < 0 or EXCLOUD_S3_FAILURE_WINDOW_SECONDS < 1:
    raise ImproperlyConfigured(
        "EXCLOUD_S3_FAILURE_LIMIT must be 0 or more and EXCLOUD_S3_FAILURE_WINDOW_SECONDS "
        "at least 1"
    )
# How long the gateway waits, in seconds, before it gives up on a party that went quiet.
# Each limit is on one wait (a connect, one read or write, the gap between two pieces of a
# request or response body), never on a whole transfer, so a long healthy upload or
# download is not cut.
EXCLOUD_S3_UPSTREAM_CONNECT_TIMEOUT_SECONDS = envint(
    "EXCLOUD_S3_UPSTREAM_CONNECT_TIMEOUT_SECONDS", 5
)
EXCLOUD_S3_UPSTREAM_TIMEOUT_SECONDS = envint("EXCLOUD_S3_UPSTREAM_TIMEOUT_SECONDS", 30)
EXCLOUD_S3_BODY_TIMEOUT_SECONDS = envint("EXCLOUD_S3_BODY_TIMEOUT_SECONDS", 30)
EXCLOUD_S3_HEAD_TIMEOUT_SECONDS = envint("EXCLOUD_S3_HEAD_TIMEOUT_SECONDS", 10)
EXCLOUD_S3_KEEPALIVE_SECONDS = envint("EXCLOUD_S3_KEEPALIVE_SECONDS", 5)
EXCLOUD_S3_DATABASE_TIMEOUT_SECONDS = envint("EXCLOUD_S3_DATABASE_TIMEOUT_SECONDS", 10)
for _name in (
    "EXCLOUD_S3_UPSTREAM_CONNECT_TIMEOUT_SECONDS",
    "EXCLOUD_S3_UPSTREAM_TIMEOUT_SECONDS",
    "EXCLOUD_S3_BODY_TIMEOUT_SECONDS",
    "EXCLOUD_S3_HEAD_TIMEOUT_SECONDS",
    "EXCLOUD_S3_KEEPALIVE_SECONDS",
    "EXCLOUD_S3_DATABASE_TIMEOUT_SECONDS",
):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1 (seconds)")
# Requests (and connections) one gateway process serves at once; past it each new request
# is answered 503 SlowDown.
EXCLOUD_S3_MAX_CONCURRENCY = envint("EXCLOUD_S3_MAX_CONCURRENCY", 1000)
if EXCLOUD_S3_MAX_CONCURRENCY < 1:
    raise ImproperlyConfigured("EXCLOUD_S3_MAX_CONCURRENCY must be at least 1")


def parse_service_tokens(entries: list[str]) -> list[tuple[str, frozenset[str] | None]]:
    """``TOKEN`` (may verify for every org) or ``TOKEN@slug|slug`` (only for those orgs)
    -> (token, the org slugs or None). Errors name an entry by its place, never its token."""
    tokens: list[tuple[str, frozenset[str] | None]] = []
    for number, entry in enumerate(entries, 1):
        token, limited, slugs = entry.partition("@")
        where = f"EXCLOUD_VERIFY_SERVICE_TOKENS entry {number}"
        if len(token) < 32 or any(char.isspace() for char in token):
            raise ImproperlyConfigured(
                f"{where}: the token must be at least 32 characters long, without spaces"
            )
        if any(token == seen for seen, _ in tokens):
            raise ImproperlyConfigured(f"{where}: the token is listed twice")
        orgs = None
        if limited:
            if not slugs:
                raise ImproperlyConfigured(f"{where}: name at least one org slug after '@'")
            orgs = frozenset(slugs.split("|"))
            for slug in sorted(orgs):
                if not slug or slug.strip("abcdefghijklmnopqrstuvwxyz0123456789-_"):
                    raise ImproperlyConfigured(
                        f"{where}: {slug!r} is not an org slug (lowercase letters, digits, "
                        "'-' and '_', separated by '|')"
                    )
        tokens.append((token, orgs))
    return tokens


# Service tokens of the S3 front ends (Ceph RGW, a CDN edge) that may call the internal
# verify API, comma-separated; several let a token be replaced without downtime. They are
# not API tokens: a user's token is refused there, and these are refused everywhere else.
# ``TOKEN@acme|globex`` may verify keys of those orgs only; a plain ``TOKEN``, of any org.
# None: the verify API refuses every call.
EXCLOUD_VERIFY_SERVICE_TOKENS = parse_service_tokens(envlist("EXCLOUD_VERIFY_SERVICE_TOKENS"))
# The demo owner's password, which `manage.py demo_setup` keeps the account in step with.
EXCLOUD_DEMO_PASSWORD = os.environ.get("EXCLOUD_DEMO_PASSWORD", "")

# Who may read /metrics (the web's and the gateway's): clients in these networks, and
# anyone sending ``Authorization: Bearer`` this token (at least 32 characters; empty: no
# token opens it). Never public by default: loopback only.
EXCLOUD_METRICS_ALLOWED_NETWORKS = parse_networks(
    "EXCLOUD_METRICS_ALLOWED_NETWORKS",
    envlist("EXCLOUD_METRICS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128"),
)
EXCLOUD_METRICS_TOKEN = os.environ.get("EXCLOUD_METRICS_TOKEN", "")
if EXCLOUD_METRICS_TOKEN and (
    len(EXCLOUD_METRICS_TOKEN) < 32 or any(char.isspace() for char in EXCLOUD_METRICS_TOKEN)
):
    raise ImproperlyConfigured(
        "EXCLOUD_METRICS_TOKEN must be at least 32 characters long, without spaces"
    )
# A Celery worker serves its task counts on this port (0: not at all), on this address.
EXCLOUD_WORKER_METRICS_PORT = envint("EXCLOUD_WORKER_METRICS_PORT", 0)
EXCLOUD_WORKER_METRICS_HOST = os.environ.get("EXCLOUD_WORKER_METRICS_HOST", "127.0.0.1")
if not 0 <= EXCLOUD_WORKER_METRICS_PORT <= 65535:
    raise ImproperlyConfigured("EXCLOUD_WORKER_METRICS_PORT must be a port number, or 0 (off)")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "csp",
    "django_otp",
    "accounts",
    "audit",
    "keys",
    "ninja",
    "gateway",
    "axes",
    "mfa",
]

MIDDLEWARE = [
    # Outermost, so every answer is counted and timed.
    "excloud_portal.metrics.RequestMetricsMiddleware",
    "audit.middleware.RequestIdMiddleware",
    "excloud_portal.logs.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # /healthz, /readyz and /metrics are answered here, with the headers above and before
    # anything below can refuse or redirect them (ALLOWED_HOSTS, sessions, CSRF, sign-in,
    # two-factor); SECURE_REDIRECT_EXEMPT keeps them on plain HTTP.
    "excloud_portal.health.OperationsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "excloud_portal.middleware.NoStoreMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "mfa.middleware.TwoFactorRequiredMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: turns a sign-in refused for a lockout into its page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "excloud_portal.urls"
WSGI_APPLICATION = "excloud_portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.current_org",
            ],
        },
    },
]

DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
# Persistent connections are checked before each reuse (after close_old_connections(),
# which the gateway calls before every read), so a database restarted under a long-lived
# process costs no failed request.
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker, beat) share the file: wait for locks rather than fail.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
else:
    # A server that accepts the connection but never answers must not hold a thread for
    # ever (a connect_timeout in DATABASE_URL's query wins).
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
# How long a gateway or web process waits for Redis (to connect, and for each answer)
# before it treats Redis as unreachable, and how long it then leaves Redis alone and
# reads the database instead: a frozen Redis costs each process one timeout per back-off,
# not one per request (gateway/authority.py, keys/revocation.py).
EXCLOUD_REDIS_TIMEOUT_SECONDS = envfloat("EXCLOUD_REDIS_TIMEOUT_SECONDS", 0.25)
EXCLOUD_REDIS_BACKOFF_SECONDS = envfloat("EXCLOUD_REDIS_BACKOFF_SECONDS", 1.0)
if EXCLOUD_REDIS_TIMEOUT_SECONDS <= 0 or EXCLOUD_REDIS_BACKOFF_SECONDS < 0:
    raise ImproperlyConfigured(
        "EXCLOUD_REDIS_TIMEOUT_SECONDS must be more than 0 and EXCLOUD_REDIS_BACKOFF_SECONDS "
        "0 or more"
    )
# The Celery broker's wait for Redis. Longer than the gateway's: a worker blocks on the
# broker for up to a second at a time (kombu's BRPOP), and publishing runs off the
# request path.
EXCLOUD_BROKER_TIMEOUT_SECONDS = envfloat("EXCLOUD_BROKER_TIMEOUT_SECONDS", 5.0)
if EXCLOUD_BROKER_TIMEOUT_SECONDS < 2:
    raise ImproperlyConfigured("EXCLOUD_BROKER_TIMEOUT_SECONDS must be at least 2")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {
                "socket_timeout": EXCLOUD_REDIS_TIMEOUT_SECONDS,
                "socket_connect_timeout": EXCLOUD_REDIS_TIMEOUT_SECONDS,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The lockout backend comes first, so a locked account is refused before its password is
# checked: the right password does not sign in during a lockout either.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "accounts.lockout.LockoutHandler"
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# Axes compares one count with one limit, the account's; the handler makes the address's
# own limit count too (see accounts/lockout.py).
AXES_FAILURE_LIMIT = EXCLOUD_LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(minutes=EXCLOUD_LOGIN_LOCKOUT_MINUTES)
# Attempts during a lockout are refused without being counted, so a lockout ends at its
# time rather than being prolonged by whoever keeps trying.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = True
# AuthenticationForm passes the email as `username`; one callable reads it, lowercased.
AXES_USERNAME_FORM_FIELD = "username"
AXES_USERNAME_CALLABLE = "accounts.lockout.email_tried"
# An IPv6 client counts as its /64, as the other limits count it.
AXES_CLIENT_IP_CALLABLE = "audit.trail.client_source"
AXES_LOCKOUT_CALLABLE = "accounts.lockout.lockout_response"
# Sign-ins are in the audit trail already; Axes keeps only the failures it counts.
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False
# Masked in the request data Axes stores with a failure, beside the password.
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "csrfmiddlewaretoken", "otp_token", "code"]
# HTTPS: on by default for a production site (DEBUG off, SITE_URL https), off for `make run`
# on plain http, where a redirect to https or Secure cookies would lock the developer out.
SERVED_OVER_HTTPS = not DEBUG and SITE_URL.startswith("https://")
SECURE_SSL_REDIRECT = envbool("DJANGO_SSL_REDIRECT", SERVED_OVER_HTTPS)
# Load balancers and Prometheus probe over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^(healthz|readyz|metrics)$"]
SECURE_PROXY_SSL_HEADER = parse_proxy_ssl_header(
    os.environ.get("DJANGO_SECURE_PROXY_SSL_HEADER", "")
)
SECURE_HSTS_SECONDS = envint("DJANGO_HSTS_SECONDS", 31536000 if SERVED_OVER_HTTPS else 0)
if SECURE_HSTS_SECONDS < 0:
    raise ImproperlyConfigured("DJANGO_HSTS_SECONDS must be 0 (off) or more")
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
# Preloading binds the whole registrable domain, so only its owner can ask for it; until
# they do, Django's reminder that it is off (security.W021) is silenced.
SECURE_HSTS_PRELOAD = envbool("DJANGO_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
# Each wrong second-factor code doubles the wait before the next try: 1 s, 2 s, 4 s...
OTP_TOTP_THROTTLE_FACTOR = envint("EXCLOUD_MFA_THROTTLE_FACTOR", 1)
# The name authenticator apps and passkey prompts show for this site.
MFA_RP_NAME = os.environ.get("EXCLOUD_MFA_SITE_NAME", "Excloud")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = envbool("DJANGO_SECURE_COOKIES", SERVED_OVER_HTTPS)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
CSRF_COOKIE_SAMESITE = "Lax"
# Scripts never read the CSRF cookie: htmx sends the token from the page (hx-headers).
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
# Scripts, styles, fonts and fetches from the portal's own static files only: no inline
# script or style, no eval, no plugins, no framing, forms post only back here.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

# Mail: console in development, SMTP when EMAIL_HOST is set.
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Excloud <noreply@excloud.localhost>")
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = envint("EMAIL_PORT", 587)
    EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", True)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# Celery: Redis when REDIS_URL is set, otherwise a filesystem broker in var/.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Sending a task tries twice (the second time on a fresh connection, for a broker that
# restarted) and then gives up: every sender keeps what it could not send and tries again
# later (gateways and the verify API keep usage batches, beat's entries carry their own
# longer policy, the warnings sweep resends lost mail tasks), so nobody waits long on an
# unreachable broker.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "socket_timeout": EXCLOUD_BROKER_TIMEOUT_SECONDS,
        "socket_connect_timeout": EXCLOUD_BROKER_TIMEOUT_SECONDS,
    }
else:
    # The folders are made by the start-up step (excloud_portal/devenv.py).
    _queue_dir = VAR_DIR / "celery" / "queue"
    _processed_dir = VAR_DIR / "celery" / "processed"
    # Exchange bindings for broadcasts (remote control): kombu's default is ./control,
    # relative to whatever directory each process was started in.
    _control_dir = VAR_DIR / "celery" / "control"
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue_dir),
        "data_folder_out": str(_queue_dir),
        "processed_folder": str(_processed_dir),
        "control_folder": str(_control_dir),
        "store_processed": False,
    }
# Beat sends each scheduled run once, when it falls due. While the broker is unreachable
# it keeps trying to send for about two minutes (BEAT_PUBLISH_RETRY_POLICY); past that the
# run is missed, logged as an error by excloud_portal.celery.CatchUpScheduler, and the next
# run does its work: every scheduled task is a sweep over what is due at the moment it
# runs (keys past a limit, keys about to expire and warnings not yet sent, chains grown
# since their last checkpoint, hourly usage past its cutoff), so nothing a missed run
# would have done is lost, only done one interval later.
CELERY_BEAT_SCHEDULER = "excloud_portal.celery:CatchUpScheduler"
BEAT_PUBLISH_RETRY_POLICY = {
    "max_retries": 30,
    "interval_start": 0,
    "interval_step": 1,
    "interval_max": 5,
}
_BEAT_OPTIONS = {"retry": True, "retry_policy": BEAT_PUBLISH_RETRY_POLICY}
CELERY_BEAT_SCHEDULE = {
    "audit-checkpoints": {
        "task": "audit.tasks.sign_checkpoints",
        "schedule": AUDIT_CHECKPOINT_INTERVAL,
        "options": _BEAT_OPTIONS,
    },
    "key-expiry": {
        "task": "keys.tasks.expire_due_keys",
        "schedule": KEY_EXPIRY_INTERVAL,
        "options": _BEAT_OPTIONS,
    },
    "key-expiry-warnings": {
        "task": "keys.tasks.warn_expiring_keys",
        "schedule": KEY_WARNING_INTERVAL,
        "options": _BEAT_OPTIONS,
    },
    "usage-rollup": {
        "task": "keys.tasks.roll_up_usage",
        "schedule": USAGE_ROLLUP_INTERVAL,
        "options": _BEAT_OPTIONS,
    },
    "denied-use-alerts": {
        "task": "keys.tasks.alert_denied_uses",
        "schedule": DENIED_ALERT_INTERVAL,
        "options": _BEAT_OPTIONS,
    },
}

# Logs: plain text lines, or one JSON object a line (excloud_portal/logs.py), each with
# the request ID where one is known.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text") or "text"
if LOG_FORMAT not in LOG_FORMATS:
    raise ImproperlyConfigured(
        f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {LOG_FORMAT!r}"
    )
LOGGING = logging_config(LOG_FORMAT, os.environ.get("LOG_LEVEL", "INFO"))
