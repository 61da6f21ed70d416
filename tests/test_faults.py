"""Faults: a gateway, a Celery worker and the portal's web process on a PostgreSQL and a
Redis of the tests' own (tests/own_services.py), each of which is killed, frozen and
restarted under traffic.

What must hold: a key can be revoked while Redis is down or frozen, and fails at the
gateway on its next request; a frozen Redis costs the gateway one timeout per back-off,
not one per request; every request is counted once, whatever was down while it was
counted; the REST API answers JSON 503 while PostgreSQL is down, revokes while Redis is
down, and comes back by itself; and afterwards the audit trail verifies, with an event
for every revoke, and no secret is in any process's log.

The portal's side (creating keys, revoking them, reading the counts) runs as its own
process on the same database (tests/fault_actions.py), through the service functions.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import connection

from audit.trail import Actor
from keys import revocation
from keys.models import AccessKey, KeyStatus
from keys.services import revoke_key
from tests import s3_raw
from tests.conftest import new_key
from tests.gateway_stack import REPO, Gateway, gateway, stack_env, web, worker
from tests.own_services import OwnPostgres, OwnRedis, own_postgres, own_redis

WAIT_SECONDS = 90
# What the gateway and worker are started with: usage flushed every second, and the
# default Redis timeout and back-off (the freeze test's bound is computed from the latter).
FLUSH_SECONDS = "1"
BACKOFF_SECONDS = 1.0
SLUG = "faulty"
BUCKET = "b-" + uuid.uuid4().hex[:16]
OBJECT = f"/{BUCKET}/hello.txt"
RECEIVED = re.compile(r"gateway\.tasks\.record_usage\[[^\]]+\] received")
RECOVERED = re.compile(
    r"read gateway cache versions again after (\d+) failed attempts in ([0-9.]+) s"
)


@dataclass
class Stack:
    redis: OwnRedis
    postgres: OwnPostgres
    env: dict[str, str]
    gateway: Gateway
    worker_log: Path
    web_url: str
    secrets: list[str] = field(default_factory=list)
    revoked: int = 0

    def act(self, *args: str):
        """Run tests/fault_actions.py with these arguments; its JSON answer."""
        done = subprocess.run(
            [sys.executable, "-m", "tests.fault_actions", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    def new_key(self, name: str) -> s3_raw.Signer:
        created = self.act("new-key", SLUG, name)
        self.secrets.append(created["secret"])
        return s3_raw.Signer(self.port, created["id"], created["secret"])

    def revoke(self, signer: s3_raw.Signer) -> None:
        assert self.act("revoke", signer.key_id)["status"] == KeyStatus.REVOKED
        self.revoked += 1

    def narrow(self, signer: s3_raw.Signer, bucket: str, prefix: str) -> None:
        """Narrow the key to reading ``prefix`` in ``bucket``."""
        assert self.act("narrow", signer.key_id, bucket, prefix)["scope"] == (
            f"read-only on {bucket}/{prefix}*"
        )

    @property
    def port(self) -> int:
        return int(self.gateway.url.rsplit(":", 1)[1])

    def counted(self, signer: s3_raw.Signer) -> int:
        return self.act("requests", signer.key_id)

    def gateway_log(self) -> str:
        return self.gateway.log.read_text(errors="replace")

    def api(self, method: str, path: str, token: str, body: dict | None = None):
        """(status, headers, JSON body) of one call to the portal's REST API."""
        request = urllib.request.Request(
            self.web_url + "/api/v1" + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=WAIT_SECONDS) as response:
                return response.status, response.headers, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, error.headers, json.loads(error.read())


def wait_for(condition, what, stack: Stack | None = None):
    """Poll ``condition`` until it returns something true, for up to WAIT_SECONDS;
    ``what`` (a text, or a function that makes one) says what was awaited."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not (result := condition()):
        if time.monotonic() > deadline:
            logs = ""
            if stack is not None:
                gateway_log = "\n".join(
                    line for line in stack.gateway_log().splitlines() if " httpx " not in line
                )
                logs = gateway_log[-6000:] + "\n" + stack.worker_log.read_text()[-6000:]
            what = what() if callable(what) else what
            raise AssertionError(f"gave up waiting for {what}\n{logs}")
        time.sleep(0.2)
    return result


def get(signer: s3_raw.Signer) -> int | None:
    return signer.request("GET", OBJECT).status


@pytest.fixture(scope="module")
def stack(tmp_path_factory, store):
    tmp = tmp_path_factory.mktemp("faults")
    var = tmp / "var"
    var.mkdir()
    with own_redis(tmp) as own_r, own_postgres() as own_pg:
        own_pg.create_database("excloud")
        database = own_pg.url("excloud")
        env = stack_env(var, store, redis_url=own_r.url(), database=database)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=REPO,
            env=env,
            check=True,
            capture_output=True,
        )
        common = {"redis_url": own_r.url(), "var": var, "database": database}
        with (
            gateway(tmp, store, EXCLOUD_USAGE_FLUSH_SECONDS=FLUSH_SECONDS, **common) as gw,
            worker(tmp, store, **common) as worker_log,
            web(tmp, store, **common) as web_url,
        ):
            running = Stack(own_r, own_pg, env, gw, worker_log, web_url)
            running.act("setup", SLUG, "owner@faulty.test")
            maker = running.new_key("bucket-maker")
            assert maker.request("PUT", f"/{BUCKET}").status == 200
            assert maker.request("PUT", OBJECT, body=b"hello").status == 200
            yield running


@pytest.fixture
def redis_back(stack):
    """Whatever a test did to Redis, it answers again afterwards."""
    yield stack.redis
    if stack.redis.proc is None:
        stack.redis.start()
    else:
        stack.redis.thaw()


@pytest.fixture
def postgres_back(stack):
    yield stack.postgres
    stack.postgres.thaw()
    if not stack.postgres._answers():
        stack.postgres.start()


def test_it_revokes_a_key_while_redis_is_killed(stack, redis_back):
    leaked, bystander = stack.new_key("leaked"), stack.new_key("bystander")
    assert get(leaked) == 200  # now cached under the current authority version
    recovered = len(RECOVERED.findall(stack.gateway_log()))

    stack.redis.kill()
    stack.revoke(leaked)

    assert get(leaked) == 403
    assert get(bystander) == 200
    stack.redis.start()
    wait_for(
        lambda: get(bystander) == 200 and len(RECOVERED.findall(stack.gateway_log())) > recovered,
        "the gateway reading Redis again",
        stack,
    )
    assert get(leaked) == 403
    # Revoking works as before now that Redis is back, for a key cached since.
    assert get(bystander) == 200
    stack.revoke(bystander)
    assert get(bystander) == 403


def test_it_revokes_a_key_while_redis_is_frozen_at_one_redis_wait_per_back_off(stack, redis_back):
    leaked, bystander = stack.new_key("leaked-frozen"), stack.new_key("bystander-frozen")
    assert get(leaked) == 200
    assert get(bystander) == 200
    requests = 60

    stack.redis.freeze()
    try:
        stack.revoke(leaked)
        # The gateway's reads of Redis start failing with this request.
        started = time.monotonic()
        assert get(leaked) == 403
        statuses = [get(bystander) for _ in range(requests)]
    finally:
        stack.redis.thaw()
    frozen_for = time.monotonic() - started

    assert statuses == [200] * requests
    # The next request reads Redis again, and the gateway logs how many reads failed.
    assert get(bystander) == 200
    assert get(leaked) == 403
    found = wait_for(lambda: RECOVERED.findall(stack.gateway_log()), "the recovery line", stack)
    failed = int(found[-1][0])
    # One failed read, then none for a back-off, then at most one more per back-off.
    # Without the back-off each request would fail one read after waiting a whole
    # timeout, so there would be as many failures as requests, far more than this bound
    # (however slow the machine: slower requests stretch the freeze, not the ratio).
    assert 1 <= failed <= frozen_for / BACKOFF_SECONDS + 2
    # Usage sent while the broker was frozen arrives once: a send that timed out after
    # Redis took the message is sent again under the same batch ID.
    _all_counted(stack, bystander, 1 + requests + 1)


def _narrowed_answers(signer: s3_raw.Signer) -> tuple:
    """What a key narrowed to reading "inside/" of BUCKET is answered: a read outside,
    a read inside, a write inside."""
    return (
        get(signer),
        signer.request("GET", f"/{BUCKET}/inside/a.txt").status,
        signer.request("PUT", f"/{BUCKET}/inside/new.txt", body=b"new").status,
    )


@pytest.mark.parametrize("fault", ["killed", "frozen"])
def test_it_narrows_a_key_while_redis_is_down_from_the_next_request(stack, redis_back, fault):
    narrowed = stack.new_key(f"narrowed-{fault}")
    assert narrowed.request("PUT", f"/{BUCKET}/inside/a.txt", body=b"inside").status == 200
    assert get(narrowed) == 200  # cached with the whole org's buckets, read-write
    recovered = len(RECOVERED.findall(stack.gateway_log()))

    if fault == "killed":
        stack.redis.kill()
    else:
        stack.redis.freeze()
    try:
        stack.narrow(narrowed, BUCKET, "inside/")
        answers = _narrowed_answers(narrowed)
    finally:
        if fault == "frozen":
            stack.redis.thaw()
    if fault == "killed":
        stack.redis.start()

    assert answers == (403, 200, 403)
    # And still once the gateway reads Redis again, whatever Redis lost or kept meanwhile
    # (until it does, the gateway reads the database on every request, which the tests
    # after this one must not inherit).
    wait_for(
        lambda: get(narrowed) == 403 and len(RECOVERED.findall(stack.gateway_log())) > recovered,
        "the gateway reading Redis again",
        stack,
    )
    assert _narrowed_answers(narrowed) == (403, 200, 403)


def _requests(signer: s3_raw.Signer, count: int) -> list[int | None]:
    return [get(signer) for _ in range(count)]


def _worker_log_count(stack: Stack, text: str | re.Pattern) -> int:
    log = stack.worker_log.read_text(errors="replace")
    return len(text.findall(log)) if isinstance(text, re.Pattern) else log.count(text)


def _all_counted(stack: Stack, signer: s3_raw.Signer, sent: int) -> None:
    wait_for(
        lambda: stack.counted(signer) >= sent,
        lambda: f"{sent} requests counted (counted: {stack.counted(signer)})",
        stack,
    )
    assert stack.counted(signer) == sent


def test_it_counts_every_request_through_a_postgres_outage(stack, postgres_back):
    busy = stack.new_key("busy")
    statuses = _requests(busy, 10)  # the key is cached: PostgreSQL is not needed to serve it
    retries = _worker_log_count(stack, "Retry in")

    stack.postgres.kill()
    during = _requests(busy, 10)
    # A batch reached the worker while the database was down, and was put back for later.
    wait_for(lambda: _worker_log_count(stack, "Retry in") > retries, "a retried batch", stack)
    during += _requests(busy, 10)
    stack.postgres.start()
    statuses += during + _requests(busy, 10)

    assert during == [200] * len(during)
    _all_counted(stack, busy, sum(status == 200 for status in statuses))


def test_it_counts_every_request_through_a_frozen_postgres(stack, postgres_back):
    busy = stack.new_key("busy-frozen")
    statuses = _requests(busy, 10)
    received = _worker_log_count(stack, RECEIVED)

    stack.postgres.freeze()
    try:
        during = _requests(busy, 10)
        # A batch reached the worker while the database was frozen.
        wait_for(
            lambda: _worker_log_count(stack, RECEIVED) > received,
            "a batch delivered while the database is frozen",
            stack,
        )
        during += _requests(busy, 10)
    finally:
        stack.postgres.thaw()
    statuses += during + _requests(busy, 10)

    assert during == [200] * len(during)
    _all_counted(stack, busy, sum(status == 200 for status in statuses))


def test_it_counts_every_request_through_a_broker_outage(stack, redis_back):
    busy = stack.new_key("busy-broker")
    before = _requests(busy, 10)
    _all_counted(stack, busy, 10)
    assert before == [200] * 10
    failures = stack.gateway_log().count("could not send usage totals to the broker")

    stack.redis.kill()
    during = _requests(busy, 10)
    # The gateway tried to hand the batch over, failed, and kept it.
    wait_for(
        lambda: stack.gateway_log().count("could not send usage totals to the broker") > failures,
        "a failed send",
        stack,
    )
    stack.redis.start()
    after = _requests(busy, 10)

    assert during == [200] * 10
    _all_counted(stack, busy, 10 + sum(status == 200 for status in during + after))


@pytest.mark.django_db(transaction=True)
def test_it_bumps_the_version_once_redis_is_back_after_a_revoke_without_it(
    stack, redis_back, owner, monkeypatch
):
    # The portal's side in this process, on the pytest database and the own Redis.
    monkeypatch.setattr(settings, "REDIS_URL", stack.redis.url(1))
    monkeypatch.setattr(revocation, "_client", None)
    key, _ = new_key(owner)
    stack.redis.kill()

    try:
        revoke_key(owner, Actor.for_user(owner.user), key)
    finally:
        connection.close()

    assert AccessKey.objects.get(pk=key.pk).status == KeyStatus.REVOKED
    assert revocation.retrying()
    stack.redis.start()
    # Redis came back empty: only the retried bump can have set the version.
    version = redis.Redis.from_url(stack.redis.url(1))
    wait_for(lambda: version.get(revocation.key_version(key.id)), "the retried bump")
    wait_for(lambda: not revocation.retrying(), "the retries to stop")


def _assert_unavailable(answer) -> None:
    status, headers, body = answer
    assert status == 503, body
    assert body["code"] == "service_unavailable"
    assert int(headers["Retry-After"]) > 0


def test_the_api_answers_json_503_while_postgres_is_down_and_recovers(stack, postgres_back):
    token = stack.act("token", SLUG)["token"]
    assert stack.api("GET", "/keys", token)[0] == 200

    stack.postgres.kill()
    _assert_unavailable(stack.api("GET", "/keys", token))
    _assert_unavailable(stack.api("POST", "/keys", token, {"name": "during-the-outage"}))
    _assert_unavailable(stack.api("GET", "/config", token))
    stack.postgres.start()

    # The same web process serves again, without a restart.
    wait_for(lambda: stack.api("GET", "/keys", token)[0] == 200, "the API answering", stack)
    names = [key["name"] for key in stack.api("GET", "/keys", token)[2]["items"]]
    assert "during-the-outage" not in names


def test_the_api_revokes_a_key_while_redis_is_killed(stack, redis_back):
    token = stack.act("token", SLUG)["token"]
    leaked = stack.new_key("leaked-api")
    assert get(leaked) == 200

    stack.redis.kill()
    status, _, body = stack.api("DELETE", f"/keys/{leaked.key_id}", token)
    assert status == 200, body
    assert body["status"] == KeyStatus.REVOKED
    stack.revoked += 1

    assert get(leaked) == 403


def test_the_api_answers_while_redis_is_frozen(stack, redis_back):
    token = stack.act("token", SLUG)["token"]
    stack.redis.freeze()
    try:
        # The per-token rate limit cannot be counted; the call goes through.
        status, _, body = stack.api("GET", "/keys", token)
    finally:
        stack.redis.thaw()
    assert status == 200, body


def test_it_leaves_the_audit_trail_whole_and_no_secret_in_any_log(stack):
    verified = subprocess.run(
        [sys.executable, "manage.py", "audit_verify"],
        cwd=REPO,
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("OK ")
    assert stack.act("events", "access_key.revoked") == stack.revoked
    assert stack.act("events", "access_key.created") == len(stack.secrets)
    web_logs = "".join(
        log.read_text(errors="replace") for log in stack.worker_log.parent.glob("web-*.log")
    )
    logs = stack.gateway_log() + stack.worker_log.read_text(errors="replace") + web_logs
    assert stack.secrets and logs
    for secret in stack.secrets:
        assert secret not in logs
