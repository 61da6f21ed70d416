"""The production profile as it runs: two gateway processes and two web servers, each
started from its line in Procfile.prod (gunicorn on gunicorn.conf.py for the web), on the
pytest database and a Redis of their own, with the embedded object store.

A change to a key made through either web server reaches both gateways by their very
next request: a revoke or a deactivation refuses the key on both, a reactivation or a
rotation serves the key on both. Each web server listens on its own port, so every call
below knows which one answered. And `make run-prod` refuses to start without the settings
production needs.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass

import httpx
import pytest
from botocore.exceptions import ClientError
from django.conf import settings

from accounts.tokens import create_api_token
from audit.trail import Actor
from tests.gateway_stack import (
    PROCFILE_PROD,
    REPO,
    Served,
    free_port,
    procfile_process,
    stack_env,
)
from tests.own_services import own_redis
from tests.test_gateway_e2e import s3_client

PROCESSES = {"web", "worker", "beat", "gateway"}
API_TIMEOUT = 30


@dataclass
class Topology:
    gateways: list[Served]
    webs: list[Served]


@pytest.fixture(scope="module")
def topology(tmp_path_factory, store):
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("the production profile runs on PostgreSQL")
    tmp = tmp_path_factory.mktemp("production")
    # What production sets for every process alike, so none generates its own in var/.
    shared = {
        "EXCLOUD_AUDIT_SIGNING_KEY": settings.EXCLOUD_AUDIT_SIGNING_KEY,
        "EXCLOUD_VERIFY_SERVICE_TOKENS": secrets.token_urlsafe(32),
    }

    def env(redis_url: str, port: int, **extra: str) -> dict[str, str]:
        # Each process has a var/ of its own, as on a machine of its own.
        var = tmp / f"var-{port}"
        var.mkdir()
        return stack_env(var, store, redis_url=redis_url, **shared, **extra)

    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(own_redis(tmp)).url()
        gateways = []
        for _ in range(2):
            port = free_port()
            gateways.append(
                stack.enter_context(
                    procfile_process(
                        tmp,
                        "gateway",
                        env(redis_url, port, PORT=str(port), GATEWAY_HOST="127.0.0.1"),
                        f"http://127.0.0.1:{port}/",
                    )
                )
            )
        webs = []
        for _ in range(2):
            port = free_port()
            webs.append(
                stack.enter_context(
                    procfile_process(
                        tmp,
                        "web",
                        env(
                            redis_url,
                            port,
                            WEB_BIND=f"127.0.0.1:{port}",
                            WEB_CONCURRENCY="1",
                            WEB_THREADS="2",
                        ),
                        f"http://127.0.0.1:{port}/accounts/login/",
                    )
                )
            )
        yield Topology(gateways, webs)


@pytest.fixture
def token(owner) -> str:
    return create_api_token(owner, Actor.for_user(owner.user), "topology").plaintext


def call(web: Served, token: str, method: str, path: str, body: dict | None = None) -> dict:
    """An API call to this web server; the JSON it answered."""
    response = httpx.request(
        method,
        f"{web.url}/api/v1/keys{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=API_TIMEOUT,
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


def new_key(web: Served, token: str, name: str) -> tuple[str, str]:
    created = call(web, token, "POST", "", {"name": name})
    return created["id"], created["secret_access_key"]


def works(gateway: Served, key: tuple[str, str]) -> bool:
    """Does this gateway serve a request signed with the key? Refused means 403
    InvalidAccessKeyId; any other answer fails the test."""
    try:
        s3_client(gateway.url, *key).list_buckets()
    except ClientError as error:
        assert error.response["Error"]["Code"] == "InvalidAccessKeyId", error.response
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        return False
    return True


def on_each(topology: Topology, key: tuple[str, str]) -> list[bool]:
    return [works(gateway, key) for gateway in topology.gateways]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("revoker", [0, 1], ids=["web1", "web2"])
def test_it_stops_a_key_revoked_through_either_web_server_on_both_gateways(
    topology, token, revoker
):
    other = 1 - revoker
    web, other_web = topology.webs[revoker], topology.webs[other]
    key = new_key(other_web, token, "leaked")
    bystander = new_key(web, token, "bystander")
    # Twice on each gateway: the second answer comes from what the first cached.
    assert on_each(topology, key) == [True, True]
    assert on_each(topology, key) == [True, True]
    assert on_each(topology, bystander) == [True, True]

    revoked = call(web, token, "DELETE", f"/{key[0]}")

    assert revoked["status"] == "revoked"
    assert on_each(topology, key) == [False, False]
    assert on_each(topology, bystander) == [True, True]
    # The other web server sees the revoke too.
    assert call(other_web, token, "GET", f"/{key[0]}")["status"] == "revoked"


@pytest.mark.django_db(transaction=True)
def test_it_deactivates_and_reactivates_through_different_web_servers(topology, token):
    first, second = topology.webs
    key = new_key(first, token, "laptop")
    assert on_each(topology, key) == [True, True]

    assert call(second, token, "POST", f"/{key[0]}/deactivate")["status"] == "inactive"
    assert on_each(topology, key) == [False, False]

    assert call(first, token, "POST", f"/{key[0]}/reactivate")["status"] == "active"
    assert on_each(topology, key) == [True, True]


@pytest.mark.django_db(transaction=True)
def test_it_serves_a_key_rotated_through_the_other_web_server_on_both_gateways(topology, token):
    first, second = topology.webs
    old = new_key(first, token, "ci-deploy")
    assert on_each(topology, old) == [True, True]

    rotated = call(second, token, "POST", f"/{old[0]}/rotate", {"overlap_hours": 1})

    new = (rotated["id"], rotated["secret_access_key"])
    assert rotated["previous"]["id"] == old[0]
    assert on_each(topology, new) == [True, True]
    # The old key keeps working for the overlap, on both gateways.
    assert on_each(topology, old) == [True, True]


def test_each_web_server_is_gunicorn_with_its_threaded_worker(topology):
    for web in topology.webs:
        log = web.log.read_text(errors="replace")
        assert f"Listening at: {web.url} " in log
        assert "Using worker: gthread" in log
        assert len(re.findall(r"Booting worker with pid", log)) == 1


def test_it_has_a_production_procfile_that_honcho_accepts():
    result = subprocess.run(
        [str(REPO / ".venv" / "bin" / "honcho"), "-f", PROCFILE_PROD.name, "check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    detected = re.search(r"Valid procfile detected \(([^)]*)\)", result.stdout + result.stderr)
    assert detected, result.stdout + result.stderr
    assert set(detected.group(1).split(", ")) == PROCESSES
    for line in PROCFILE_PROD.read_text().splitlines():
        program = shlex.split(line.partition(":")[2])[0]
        path = REPO / program if "/" in program else shutil.which(program)
        assert path and os.access(path, os.X_OK), line


def test_make_run_prod_refuses_to_start_without_the_production_settings(tmp_path):
    # The development defaults everything falls back to, and a SQLite database.
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "DJANGO_SECRET_KEY": "too short",
        "DJANGO_DEBUG": "1",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "BEAT_PROCESSES": "2",
    }
    result = subprocess.run(
        ["make", "--no-print-directory", "run-prod", "GATEWAY_PROCESSES=none"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert result.stdout == ""
    message = result.stderr
    assert "Not starting the production profile" in message
    for name in (
        "DJANGO_ALLOWED_HOSTS",
        "SITE_URL",
        "EXCLOUD_SECRET_KEYS",
        "EXCLOUD_AUDIT_SIGNING_KEY",
        "EXCLOUD_S3_ENDPOINT",
        "EXCLOUD_S3_UPSTREAM_URL",
        "EXCLOUD_S3_UPSTREAM_ACCESS_KEY_ID",
        "EXCLOUD_S3_UPSTREAM_SECRET_ACCESS_KEY",
    ):
        assert f"{name} is not set" in message
    assert "DATABASE_URL must be a postgres:// or postgresql:// URL" in message
    assert "DJANGO_SECRET_KEY is shorter than 50 characters" in message
    assert "DJANGO_DEBUG is on" in message
    assert "BEAT_PROCESSES must be a whole number from 0 to 1, got '2'" in message
    assert "GATEWAY_PROCESSES must be a whole number from 1 to 1000, got 'none'" in message
    assert "REDIS_URL" not in message
    # Values are never repeated: some are secrets.
    assert "too short" not in message


def test_the_production_settings_check_passes_a_complete_environment():
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "portal.example.com",
        "SITE_URL": "https://portal.example.com",
        "DATABASE_URL": "postgres://portal@db.example.com:5432/portal",
        "REDIS_URL": "rediss://redis.example.com:6380/0",
        "EXCLOUD_SECRET_KEYS": "k1:" + "A" * 43 + "=",
        "EXCLOUD_AUDIT_SIGNING_KEY": "B" * 43 + "=",
        "EXCLOUD_S3_ENDPOINT": "https://s3.example.com",
        "EXCLOUD_S3_UPSTREAM_URL": "http://10.0.0.5:8333",
        "EXCLOUD_S3_UPSTREAM_ACCESS_KEY_ID": "UPSTREAM",
        "EXCLOUD_S3_UPSTREAM_SECRET_ACCESS_KEY": "upstream-secret",
        "DJANGO_DEBUG": "0",
        "BEAT_PROCESSES": "0",
        "GATEWAY_PROCESSES": "8",
        "WEB_CONCURRENCY": "4",
    }
    result = subprocess.run(
        [sys.executable, "scripts/check_production_env.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
