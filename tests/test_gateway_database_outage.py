"""A PostgreSQL outage at the gateway: requests it cannot decide without the database
answer 503 ServiceUnavailable (S3's XML, with Retry-After), which clients retry, never
500; once PostgreSQL is back the same gateway process serves them again.

The gateway runs on a PostgreSQL server of this module's own (tests.own_services), which
the tests stop (an immediate shutdown, as a crash) and start again, or freeze (SIGSTOP:
connections stay open and nothing answers) and thaw. Nothing here measures time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.gateway_stack import freeze, gateway, group_pids, stack_env, upstream
from tests.own_services import OwnPostgres, own_postgres, own_redis
from tests.s3_raw import Response, Signer, error_code, send
from tests.test_gateway_e2e import s3_client

# Requests sent at once, so that several of the gateway's database threads hold a
# connection when PostgreSQL goes away.
REQUESTS = 16
OBJECT = b"kept through an outage"
# An org, its owner and a key, made in the own server's database; prints the key's ID
# and secret.
MAKE_KEY = """
from accounts.models import Membership, Organization, Role, User
from audit.trail import Actor
from keys.services import create_key

org, _ = Organization.objects.get_or_create(slug="acme", defaults={"name": "Acme"})
user = User.objects.filter(email="owner@acme.test").first() or User.objects.create_user(
    email="owner@acme.test", password=None
)
membership, _ = Membership.objects.get_or_create(org=org, user=user, defaults={"role": Role.OWNER})
created = create_key(membership, Actor.for_user(user), "{name}")
print(created.key.id, created.secret)
"""
# How many claims of a bucket name were given back after a 503.
LATE_CLAIMS_GIVEN_BACK = """
from audit.models import AuditEvent

print(AuditEvent.objects.filter(
    action="bucket.deleted", target_id="{bucket}", details__status=503
).count())
"""


DATABASE = "excloud"


@pytest.fixture(scope="module")
def postgres():
    """A migrated PostgreSQL server of the module's own, free to stop and start."""
    with own_postgres() as server:
        server.create_database(DATABASE)
        server.manage(DATABASE, "migrate", "--no-input")
        yield server


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    with own_redis(tmp_path_factory.mktemp("own-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def var(tmp_path_factory):
    return tmp_path_factory.mktemp("var")


def _new_key(postgres: OwnPostgres, env: dict[str, str]) -> tuple[str, str]:
    output = postgres.manage(
        DATABASE, "shell", "-c", MAKE_KEY.replace("{name}", uuid.uuid4().hex[:8]), env=env
    )
    key_id, secret = output.split()[-2:]
    return key_id, secret


@pytest.fixture(scope="module")
def keys(postgres, store, var):
    """Make (ID, secret) keys in the own server's database, sealed as the gateway opens them."""
    env = stack_env(var, store, database=postgres.url(DATABASE))
    return lambda: _new_key(postgres, env)


@contextlib.contextmanager
def frozen(postgres: OwnPostgres):
    postgres.freeze()
    try:
        yield
    finally:
        postgres.thaw()


@contextlib.contextmanager
def outage(postgres: OwnPostgres):
    postgres.kill()
    try:
        yield
    finally:
        postgres.start()


def _get(signer: Signer, bucket: str) -> Response:
    return send(signer.port, signer.build("GET", f"/{bucket}/kept.txt"))


def _get_at_once(signer: Signer, bucket: str) -> list[tuple[int | None, bytes]]:
    with ThreadPoolExecutor(REQUESTS) as pool:
        answers = pool.map(lambda _: _get(signer, bucket), range(REQUESTS))
    return [(answer.status, answer.body) for answer in answers]


def _assert_unavailable(answer: Response) -> None:
    assert answer.status == 503, answer
    assert error_code(answer.body) == "ServiceUnavailable"
    assert answer.header("content-type") == "application/xml"
    assert answer.header("retry-after") == "1"


def _port(gw) -> int:
    return int(gw.url.rsplit(":", 1)[1])


def test_it_answers_503_while_postgresql_is_down_and_recovers_without_restart(
    tmp_path, postgres, store, var, keys
):
    key_id, secret = keys()
    bucket = "acme-" + uuid.uuid4().hex[:12]
    with gateway(tmp_path, store, var=var, database=postgres.url(DATABASE)) as gw:
        s3 = s3_client(gw.url, key_id, secret)
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="kept.txt", Body=OBJECT)
        signer = Signer(_port(gw), key_id, secret)
        before = _get_at_once(signer, bucket)

        with outage(postgres):
            during = _get(signer, bucket)
            upload = signer.request("PUT", f"/{bucket}/new.txt", body=b"during the outage")
        after = _get_at_once(signer, bucket)
        log = gw.log.read_text(errors="replace")

    assert before == [(200, OBJECT)] * REQUESTS
    _assert_unavailable(during)
    _assert_unavailable(upload)
    assert after == [(200, OBJECT)] * REQUESTS
    assert "Traceback" not in log


def test_it_answers_503_for_a_key_it_has_not_cached(
    tmp_path, postgres, redis_server, store, var, keys
):
    seen_id, seen_secret = keys()
    unseen_id, unseen_secret = keys()
    bucket = "acme-" + uuid.uuid4().hex[:12]
    with gateway(
        tmp_path, store, var=var, database=postgres.url(DATABASE), redis_url=redis_server.url()
    ) as gw:
        s3 = s3_client(gw.url, seen_id, seen_secret)
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="kept.txt", Body=OBJECT)
        unseen = Signer(_port(gw), unseen_id, unseen_secret)

        with outage(postgres):
            during = _get(unseen, bucket)
        after = _get(unseen, bucket)

    _assert_unavailable(during)
    assert (after.status, after.body) == (200, OBJECT)


def test_it_answers_503_while_postgresql_hangs_and_recovers_after(
    tmp_path, postgres, store, var, keys
):
    key_id, secret = keys()
    bucket = "acme-" + uuid.uuid4().hex[:12]
    with gateway(
        tmp_path,
        store,
        var=var,
        database=postgres.url(DATABASE),
        EXCLOUD_S3_DATABASE_TIMEOUT_SECONDS="2",
    ) as gw:
        s3 = s3_client(gw.url, key_id, secret)
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="kept.txt", Body=OBJECT)
        signer = Signer(_port(gw), key_id, secret)

        with frozen(postgres):
            # Far past the gateway's database timeout: the answer comes, or this fails.
            during = send(signer.port, signer.build("GET", f"/{bucket}/kept.txt"), timeout=30)
        after = _get_at_once(signer, bucket)

    _assert_unavailable(during)
    assert after == [(200, OBJECT)] * REQUESTS


def test_it_gives_back_a_bucket_claim_that_commits_after_its_503(tmp_path, postgres, var, keys):
    key_id, secret = keys()
    bucket = "acme-" + uuid.uuid4().hex[:12]
    with (
        upstream(tmp_path / "own-store") as own_store,
        gateway(
            tmp_path,
            own_store,
            var=var,
            database=postgres.url(DATABASE),
            EXCLOUD_S3_DATABASE_TIMEOUT_SECONDS="2",
            EXCLOUD_S3_UPSTREAM_TIMEOUT_SECONDS="60",
        ) as gw,
    ):
        signer = Signer(_port(gw), key_id, secret)
        create = signer.build("PUT", f"/{bucket}")
        # CreateBucket asks the store whether it has the name, then claims it in the
        # database: with the store frozen the request waits between the two, and the
        # database freezes before the claim.
        freeze(*group_pids(own_store.pid))
        try:
            with ThreadPoolExecutor(1) as pool:
                answer = pool.submit(send, signer.port, create, timeout=60)
                time.sleep(1)
                postgres.freeze()
                os.killpg(own_store.pid, signal.SIGCONT)
                refused = answer.result()
        finally:
            os.killpg(own_store.pid, signal.SIGCONT)
            postgres.thaw()
        # Once the claim commits it is given back, and the name can be created.
        deadline = time.monotonic() + 30
        retried = send(signer.port, signer.build("PUT", f"/{bucket}"))
        while retried.status == 409 and time.monotonic() < deadline:
            assert error_code(retried.body) == "BucketAlreadyOwnedByYou"
            time.sleep(0.2)
            retried = send(signer.port, signer.build("PUT", f"/{bucket}"))
        stored = signer.request("PUT", f"/{bucket}/after.txt", body=b"stored")
        given_back = postgres.manage(
            DATABASE,
            "shell",
            "-c",
            LATE_CLAIMS_GIVEN_BACK.replace("{bucket}", bucket),
            env=stack_env(var, own_store, database=postgres.url(DATABASE)),
        )

    _assert_unavailable(refused)
    assert retried.status == 200, retried
    assert stored.status == 200, stored
    assert given_back.split()[-1] == "1"
