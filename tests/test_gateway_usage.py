"""Usage: the gateway counts each key's requests in memory and sends the totals through
the Celery broker to a worker, which adds them up in the database; the key's detail page
shows them. The gateway here reads a read-only database session, so a request path that
wrote to the database would fail."""

from __future__ import annotations

import json
import time
import uuid
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError
from django.urls import reverse
from django.utils import timezone

from audit.trail import Actor
from gateway.models import UsageBatch
from gateway.services import adopt_bucket
from gateway.tasks import USAGE_BATCH_RETENTION, record_usage
from gateway.usage import UsageRecorder
from keys.models import AccessKey, DeniedAttempt, KeyUsage
from keys.services import revoke_key
from tests import usage_stack
from tests.conftest import client_for, new_key
from tests.test_gateway_e2e import bucket_name, s3_client

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_SECONDS = 30


var, gw, celery_worker = usage_stack.fixtures()


def _usage(key) -> KeyUsage | None:
    return KeyUsage.objects.filter(access_key=key).first()


def test_it_counts_requests_per_key_and_hour_without_writing_on_the_request_path(
    gw, store, celery_worker, owner
):
    key, secret = new_key(owner)
    name = bucket_name()
    s3_client(store.url, store.access_key_id, store.secret_access_key).create_bucket(Bucket=name)
    adopt_bucket(owner.org, name, Actor.system())
    s3 = s3_client(gw.url, key.id, secret)

    s3.put_object(Bucket=name, Key="a.txt", Body=b"a" * 1000)
    s3.put_object(Bucket=name, Key="b.txt", Body=b"b" * 1000)
    assert s3.get_object(Bucket=name, Key="a.txt")["Body"].read() == b"a" * 1000
    with pytest.raises(ClientError):
        s3.get_object(Bucket=name, Key="missing.txt")
    s3.list_objects_v2(Bucket=name)
    with pytest.raises(ClientError):  # the ID without its secret: a denied attempt, not a use
        s3_client(gw.url, key.id, "x" * 40).get_object(Bucket=name, Key="a.txt")
    revoke_key(owner, Actor.for_user(owner.user), key)
    with pytest.raises(ClientError):
        s3.get_object(Bucket=name, Key="a.txt")

    deadline = time.monotonic() + WAIT_SECONDS
    while (usage := _usage(key)) is None or usage.requests < 6:
        assert time.monotonic() < deadline, celery_worker.read_text(errors="replace")
        time.sleep(0.2)
    assert usage.requests == 6
    assert usage.errors == 2
    assert usage.denied == 1
    attempt = DeniedAttempt.objects.get(access_key_id=key.id, signed=False)
    assert (attempt.count, attempt.org_id, attempt.source_ip) == (1, owner.org_id, "127.0.0.1")
    # The revoked key's use, signed with its secret, is counted per source too.
    refused = DeniedAttempt.objects.get(access_key_id=key.id, signed=True)
    assert (refused.count, refused.org_id, refused.source_ip) == (1, owner.org_id, "127.0.0.1")
    assert usage.bytes_in >= 2000
    assert usage.bytes_out >= 1000
    key = AccessKey.objects.get(pk=key.pk)
    assert key.last_used_operation == "ListObjectsV2"
    assert key.last_used_bucket == name
    assert key.last_used_ip == "127.0.0.1"
    assert key.last_used_at is not None

    page = client_for(owner).get(reverse("key_detail", args=[owner.org.slug, key.id]))
    html = page.content.decode()
    assert "ListObjectsV2" in html and f"on {name}" in html and "from 127.0.0.1" in html
    assert "<td>6</td><td>" in html


def test_it_counts_exactly_the_body_bytes_each_request_sent(gw, store, celery_worker, owner):
    key, secret = new_key(owner)
    name = bucket_name()
    s3_client(store.url, store.access_key_id, store.secret_access_key).create_bucket(Bucket=name)
    adopt_bucket(owner.org, name, Actor.system())
    s3 = s3_client(gw.url, key.id, secret)

    s3.put_object(Bucket=name, Key="odd.bin", Body=b"o" * 1237)
    s3.put_object(Bucket=name, Key="tiny.bin", Body=b"t" * 5)
    s3.put_object(Bucket=name, Key="empty.bin", Body=b"")
    # Reading sends no body: bytes out, none in.
    assert s3.get_object(Bucket=name, Key="odd.bin")["Body"].read() == b"o" * 1237

    deadline = time.monotonic() + WAIT_SECONDS
    while (usage := _usage(key)) is None or usage.requests < 4:
        assert time.monotonic() < deadline, celery_worker.read_text(errors="replace")
        time.sleep(0.2)
    assert usage.requests == 4
    assert usage.bytes_in == 1237 + 5
    assert usage.bytes_out >= 1237


def _one_request_batch(key) -> dict:
    recorder = UsageRecorder()
    recorder.record(
        key.id,
        at=time.time(),
        ip="192.0.2.1",
        operation="GetObject",
        bucket="b",
        bytes_in=0,
        bytes_out=5,
        status=200,
        denied=False,
        authenticated=True,
    )
    # As the worker gets it: through JSON.
    return json.loads(json.dumps(recorder.drain()))


def test_it_counts_a_batch_once_however_often_it_is_delivered(owner):
    key, _ = new_key(owner)
    batch = _one_request_batch(key)

    assert record_usage(batch) == 1
    assert record_usage(batch) == 0

    assert _usage(key).requests == 1
    assert UsageBatch.objects.filter(pk=batch["id"]).exists()


def test_it_forgets_batches_applied_long_ago(owner):
    key, _ = new_key(owner)
    old = UsageBatch.objects.create(
        id=uuid.uuid4(), applied_at=timezone.now() - USAGE_BATCH_RETENTION - timedelta(hours=1)
    )
    recent = UsageBatch.objects.create(id=uuid.uuid4(), applied_at=timezone.now())

    record_usage(_one_request_batch(key))

    assert not UsageBatch.objects.filter(pk=old.pk).exists()
    assert UsageBatch.objects.filter(pk=recent.pk).exists()
