from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import redis
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.db.backends.base.creation import TEST_DATABASE_PREFIX
from django.db.models import Max
from django.test import Client

from accounts import throttle
from accounts.models import Membership, Organization, Role, User
from audit.models import AuditEvent
from audit.trail import Actor
from gateway.sigv4 import signing
from keys.services import create_key
from tests.gateway_stack import upstream
from tests.seaweed import seaweedfs

PASSWORD = "correct horse battery staple 42"
# Fixtures that start processes of the test's own: the object store (rclone), a gateway
# (with a web server or a Celery worker beside it), the whole `make run` stack, or a
# PostgreSQL or Redis to break. Every test that uses one is marked `stack`.
STACK_FIXTURES = frozenset(
    {
        "store",
        "own_store",
        "gw",
        "gw_of_two",
        "h11_gw",
        "recording",
        "celery_worker",
        "stack",
        "postgres",
        "redis_server",
    }
)
# The object stores a gateway test module can run against: parametrize ``store`` over them
# (indirect, module scope) to run each of its tests on each.
STORES = ["rclone", "seaweedfs"]
# The browser fixture (Chromium under Playwright) for every browser test, the arguments
# that walk every page of the URLconf, and the stand-in portals of the `exc` tests.
pytest_plugins = ["tests.browser_support", "tests.urlconf", "tests.cli_support"]


@pytest.fixture(scope="session", autouse=True)
def no_rows_left_by_an_interrupted_run(django_db_setup, django_db_blocker) -> None:
    """Start on empty tables, even after a run that was killed inside a transactional
    test (transaction=True): such a test commits its rows and removes them only when it
    ends, and with --reuse-db the next run would start on them, so that tests failing on
    them would say nothing about the code. A mutation run kills a mutant's test run when it
    overruns its CPU time, and starts the next mutant's on the same database.

    A run none of whose tests uses the database sets none up, and leaves the configured
    (non-test) database alone: nothing is asked of it then."""
    if not connection.settings_dict["NAME"].startswith(TEST_DATABASE_PREFIX):
        return
    with django_db_blocker.unblock():
        if User.objects.exists() or Organization.objects.exists() or AuditEvent.objects.exists():
            call_command("flush", interactive=False, verbosity=0)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings) -> None:
    # Hashing is not under test, and the default hasher makes each fixture user cost a
    # noticeable fraction of a second.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def fresh_rate_limits(settings) -> None:
    # The whole suite signs up, asks for password resets and sends API tokens from one
    # address; each test starts with none of that counted. Only the limiter's counters
    # are dropped: other tests' Redis data (such as a gateway's) stays.
    if settings.REDIS_URL:
        client = redis.Redis.from_url(settings.REDIS_URL)
        try:
            keys = list(client.scan_iter(match="*:throttle:*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
    else:
        cache.clear()


class FrozenClock:
    """A clock set by the test: ``time()`` answers ``now`` until the test moves it."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


# Ten seconds into a window of every length the limiters use (a minute, ten minutes, an
# hour: their windows are aligned to the epoch).
THROTTLE_START = 1_800_000_000 + 10


@pytest.fixture(autouse=True)
def throttle_clock(monkeypatch) -> FrozenClock:
    """The rate limiters' clock (accounts.throttle), stopped for the test.

    On the real clock a test that counts up to a limit passes the end of a window once in
    a while, however short the test: the count starts over there and the request meant to
    be refused is allowed. Stopped, the window never turns over unless the test moves the
    clock, and the Retry-After a limiter answers is exact."""
    clock = FrozenClock(THROTTLE_START)
    monkeypatch.setattr(throttle, "time", clock)
    return clock


@pytest.fixture(autouse=True)
def no_cached_hmac_pad_states() -> None:
    # Signatures under a signing key that an earlier test used would otherwise come from
    # pad states hashed then, and a fault in hashing them would go unseen by every later
    # test (and by every test when run in a process that ran them before).
    signing._PAD_STATES.clear()


@pytest.fixture
def certificate(tmp_path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key: trusted by nothing unless told."""
    certificate, key = tmp_path / "server.crt", tmp_path / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(certificate), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return certificate, key


@pytest.fixture(scope="module")
def store(request, tmp_path_factory, django_db_setup):
    """The object store behind a gateway, the module's own: rclone serve s3 on a folder
    (the embedded default), or a SeaweedFS cluster where the module parametrizes ``store``
    to "seaweedfs"."""
    kind = getattr(request, "param", "rclone")
    start = {"rclone": upstream, "seaweedfs": seaweedfs}[kind]
    with start(tmp_path_factory.mktemp(kind)) as running:
        yield running


def make_user(email: str) -> User:
    return User.objects.create_user(email=email, password=PASSWORD)


@pytest.fixture
def org(db) -> Organization:
    return Organization.objects.create(slug="acme", name="Acme")


@pytest.fixture
def other_org(db) -> Organization:
    return Organization.objects.create(slug="globex", name="Globex")


def _member(org: Organization, email: str, role: str) -> Membership:
    return Membership.objects.create(org=org, user=make_user(email), role=role)


@pytest.fixture
def owner(org) -> Membership:
    return _member(org, "owner@acme.test", Role.OWNER)


@pytest.fixture
def admin(org) -> Membership:
    return _member(org, "admin@acme.test", Role.ADMIN)


@pytest.fixture
def member(org) -> Membership:
    return _member(org, "member@acme.test", Role.MEMBER)


@pytest.fixture
def auditor(org) -> Membership:
    return _member(org, "auditor@acme.test", Role.AUDITOR)


@pytest.fixture
def outsider(other_org) -> Membership:
    """The owner of another organisation: sees nothing of Acme."""
    return _member(other_org, "owner@globex.test", Role.OWNER)


def client_for(membership: Membership) -> Client:
    """A client signed in as this member; the same one each call, so the sign-in (and its
    audit event) happens once, at the first call."""
    client = getattr(membership, "_test_client", None)
    if client is None:
        client = Client()
        client.force_login(membership.user)
        membership._test_client = client
    return client


@pytest.fixture
def owner_client(owner) -> Client:
    return client_for(owner)


@pytest.fixture
def member_client(member) -> Client:
    return client_for(member)


@pytest.fixture
def everyone(owner, admin, member, auditor, outsider) -> dict[str, Membership]:
    people = {
        "owner": owner,
        "admin": admin,
        "member": member,
        "auditor": auditor,
        "outsider": outsider,
    }
    # Sign everyone in now, so their sign-in events come before any test's audit mark.
    for membership in people.values():
        client_for(membership)
    return people


def audit_mark() -> int:
    return AuditEvent.objects.aggregate(m=Max("pk"))["m"] or 0


def events_since(mark: int) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(pk__gt=mark).order_by("pk"))


def new_key(membership: Membership, name: str = "laptop"):
    """Create a key as this member through the service; returns (key, secret)."""
    created = create_key(membership, Actor.for_user(membership.user), name)
    return created.key, created.secret


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so fixtures can tell whether it failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `stack` every test that starts processes of its own through a fixture
    (STACK_FIXTURES); a test that starts them in its own body carries the mark itself.
    `-m "not browser and not stack"` is the part of the suite that runs in one process
    against the shared PostgreSQL and Redis."""
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        if uses & STACK_FIXTURES:
            item.add_marker(pytest.mark.stack)
