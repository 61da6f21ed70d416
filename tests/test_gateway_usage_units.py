"""Usage counting without a network: the recorder, operation names, and the task that
adds a gateway's totals (and denied attempts) to the database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from gateway.asgi_io import Receiver
from gateway.operations import classify
from gateway.tasks import record_usage
from gateway.usage import (
    MAX_DENIED_ENTRIES,
    MAX_DETAIL_ENTRIES,
    MAX_UNSENT_BATCHES,
    UsageRecorder,
)
from keys.models import AccessKey, DeniedAttempt, KeyBucketDay, KeySourceDay, KeyUsage
from tests.conftest import new_key

HOUR = 1_800_000_000 // 3600 * 3600  # an hour boundary


def _record(recorder, key_id="K", at=HOUR + 10, **overrides):
    values = dict(
        at=at,
        ip="192.0.2.1",
        operation="GetObject",
        bucket="bkt",
        bytes_in=10,
        bytes_out=100,
        status=200,
        denied=False,
        authenticated=True,
    )
    values.update(overrides)
    recorder.record(key_id, **values)


def test_it_adds_up_requests_per_key_and_hour():
    recorder = UsageRecorder()
    _record(recorder)
    _record(recorder, status=404, operation="HeadObject")
    _record(recorder, at=HOUR + 3600, status=403, denied=True, authenticated=False)
    _record(recorder, key_id="L")

    batch = recorder.drain()

    assert sorted(batch["counts"]) == [
        ["K", HOUR, 2, 20, 200, 1, 0],
        ["K", HOUR + 3600, 1, 10, 100, 1, 1],
        ["L", HOUR, 1, 10, 100, 0, 0],
    ]
    # The denied request is not the key's latest use; the one before it is.
    assert sorted(batch["last_used"]) == [
        ["K", HOUR + 10, "192.0.2.1", "HeadObject", "bkt", ""],
        ["L", HOUR + 10, "192.0.2.1", "GetObject", "bkt", ""],
    ]
    assert recorder.drain() is None


def test_it_keeps_a_batch_that_could_not_be_sent_to_send_it_again_unchanged():
    recorder = UsageRecorder()
    _record(recorder)
    [batch] = recorder.outgoing()
    _record(recorder, at=HOUR + 20, operation="PutObject")

    recorder.restore(batch)

    again, newer = recorder.outgoing()
    assert again == batch
    assert newer["id"] != batch["id"]
    assert newer["counts"] == [["K", HOUR, 1, 10, 100, 0, 0]]
    assert newer["last_used"] == [["K", HOUR + 20, "192.0.2.1", "PutObject", "bkt", ""]]
    assert recorder.outgoing() == []


def test_it_bounds_the_batches_it_keeps_through_a_long_outage():
    recorder = UsageRecorder()
    ids = []
    for _ in range(MAX_UNSENT_BATCHES + 5):
        _record(recorder)
        batch = recorder.drain()
        ids.append(batch["id"])
        recorder.restore(batch)

    kept = recorder.outgoing()

    assert len(kept) == MAX_UNSENT_BATCHES
    # Nothing counted is dropped: the oldest batches were merged under the oldest ID.
    assert sum(row[2] for batch in kept for row in batch["counts"]) == MAX_UNSENT_BATCHES + 5
    assert kept[0]["id"] == ids[0]
    assert [batch["id"] for batch in kept[1:]] == ids[6:]


@pytest.mark.parametrize(
    ("method", "has_bucket", "has_key", "query", "copy", "name"),
    [
        ("GET", False, False, "", False, "ListBuckets"),
        ("PUT", True, False, "", False, "CreateBucket"),
        ("DELETE", True, False, "", False, "DeleteBucket"),
        ("GET", True, False, "list-type=2&prefix=a", False, "ListObjectsV2"),
        ("GET", True, False, "prefix=a", False, "ListObjects"),
        ("GET", True, False, "location=", False, "GetBucketLocation"),
        ("HEAD", True, False, "", False, "HeadBucket"),
        ("POST", True, False, "delete=", False, "DeleteObjects"),
        ("GET", True, True, "", False, "GetObject"),
        ("HEAD", True, True, "", False, "HeadObject"),
        ("PUT", True, True, "", False, "PutObject"),
        ("PUT", True, True, "", True, "CopyObject"),
        ("PUT", True, True, "partNumber=1&uploadId=x", False, "UploadPart"),
        ("PUT", True, True, "partNumber=1&uploadId=x", True, "UploadPartCopy"),
        ("POST", True, True, "uploads=", False, "CreateMultipartUpload"),
        ("POST", True, True, "uploadId=x", False, "CompleteMultipartUpload"),
        ("DELETE", True, True, "uploadId=x", False, "AbortMultipartUpload"),
        ("DELETE", True, True, "", False, "DeleteObject"),
        ("GET", True, True, "uploadId=x", False, "ListParts"),
    ],
)
def test_it_names_s3_operations(method, has_bucket, has_key, query, copy, name):
    path = "/" + ("bkt" if has_bucket else "") + ("/k" if has_key else "")
    headers = {"host": ["127.0.0.1"]}
    if copy:
        headers["x-amz-copy-source"] = ["/src/k"]
    assert classify(method, path, query, headers, None).name == name


def test_it_counts_denied_attempts_apart_from_the_keys_usage():
    recorder = UsageRecorder()
    for _ in range(3):
        recorder.record_denied_attempt("K", at=HOUR + 5, ip="192.0.2.7")
    recorder.record_denied_attempt("K", at=HOUR + 5, ip="192.0.2.8")

    batch = recorder.drain()

    assert batch["counts"] == []
    assert batch["last_used"] == []
    assert sorted(batch["denied_attempts"]) == [
        ["K", "192.0.2.7", HOUR, 3],
        ["K", "192.0.2.8", HOUR, 1],
    ]
    recorder.restore(batch)
    assert recorder.outgoing() == [batch]


def test_it_counts_a_refused_use_of_a_known_key_per_source_ip():
    recorder = UsageRecorder()
    for ip in ("192.0.2.7", "192.0.2.7", "192.0.2.8"):
        _record(recorder, ip=ip, status=403, denied=True, authenticated=False)
    _record(recorder, ip="192.0.2.9")  # a use that was let in: not refused

    batch = recorder.drain()

    assert batch["counts"] == [["K", HOUR, 4, 40, 400, 3, 3]]
    assert sorted(batch["refused_uses"]) == [
        ["K", "192.0.2.7", HOUR, 2],
        ["K", "192.0.2.8", HOUR, 1],
    ]
    assert batch["denied_attempts"] == []
    # Kept through a failed send and merged with the next batch, the counts stay whole.
    recorder.restore(batch)
    _record(recorder, ip="192.0.2.8", status=403, denied=True, authenticated=False)
    recorder.restore(recorder.drain())
    for _ in range(MAX_UNSENT_BATCHES):
        recorder.restore({"counts": [], "last_used": []})
    [merged] = [b for b in recorder.outgoing() if b.get("refused_uses")]
    assert sorted(merged["refused_uses"]) == [
        ["K", "192.0.2.7", HOUR, 2],
        ["K", "192.0.2.8", HOUR, 2],
    ]


@pytest.mark.django_db
def test_it_stores_refused_uses_as_signed_denied_attempts_of_known_keys(owner):
    key, _ = new_key(owner)
    unknown = "EXC" + "Q" * 17
    batch = {
        "counts": [],
        "last_used": [],
        "denied_attempts": [[key.id, "192.0.2.7", HOUR, 1]],
        "refused_uses": [[key.id, "192.0.2.7", HOUR, 3], [unknown, "192.0.2.7", HOUR, 2]],
    }

    record_usage(batch)

    rows = DeniedAttempt.objects.order_by("signed").values_list(
        "access_key_id", "source_ip", "signed", "count", "org_id"
    )
    assert list(rows) == [
        (key.id, "192.0.2.7", False, 1, owner.org_id),
        (key.id, "192.0.2.7", True, 3, owner.org_id),
    ]


def test_it_counts_each_keys_buckets_sources_and_user_agent_per_day():
    recorder = UsageRecorder()
    _record(recorder, ip="192.0.2.1", bucket="one", user_agent="rclone/v1.66")
    _record(recorder, ip="192.0.2.1", bucket="two", at=HOUR + 20)
    _record(recorder, ip="192.0.2.2", bucket="", at=HOUR + 30, user_agent="u" * 300)
    _record(recorder, ip="192.0.2.3", bucket="one", denied=True, authenticated=False)

    batch = recorder.drain()

    day = HOUR // 86400 * 86400
    assert sorted(batch["buckets"]) == [
        ["K", "one", day, 1, 10, 100],
        ["K", "two", day, 1, 10, 100],
    ]
    assert sorted(batch["sources"]) == [["K", "192.0.2.1", day, 2], ["K", "192.0.2.2", day, 1]]
    assert batch["last_used"] == [["K", HOUR + 30, "192.0.2.2", "GetObject", "", "u" * 200]]


def test_it_bounds_the_buckets_and_sources_it_keeps_per_key():
    recorder = UsageRecorder()
    for number in range(MAX_DETAIL_ENTRIES + 50):
        _record(
            recorder,
            ip=f"10.{number // 65536}.{number // 256 % 256}.{number % 256}",
            bucket=f"b{number}",
        )

    batch = recorder.drain()

    day = HOUR // 86400 * 86400
    assert len(batch["buckets"]) == len(batch["sources"]) == MAX_DETAIL_ENTRIES + 1
    assert ["K", "", day, 50, 500, 5000] in batch["buckets"]
    assert ["K", None, day, 50] in batch["sources"]
    assert sum(row[3] for row in batch["buckets"]) == MAX_DETAIL_ENTRIES + 50


@pytest.mark.django_db
def test_it_stores_buckets_sources_and_a_last_use_from_an_older_gateway(owner):
    key, _ = new_key(owner)
    day = HOUR // 86400 * 86400
    batch = {
        "counts": [[key.id, HOUR, 2, 20, 200, 0, 0]],
        "last_used": [[key.id, HOUR + 5, "192.0.2.1", "GetObject", "bkt"]],
        "buckets": [[key.id, "bkt", day, 2, 20, 200]],
        "sources": [[key.id, "192.0.2.1", day, 2]],
    }

    record_usage(batch)
    record_usage(
        {**batch, "last_used": [[key.id, HOUR + 9, "192.0.2.1", "GetObject", "bkt", "ua"]]}
    )

    key = AccessKey.objects.get(pk=key.pk)
    assert (key.last_used_ip, key.last_used_user_agent) == ("192.0.2.1", "ua")
    assert list(KeyBucketDay.objects.values_list("bucket", "requests", "bytes_in")) == [
        ("bkt", 4, 40)
    ]
    assert list(KeySourceDay.objects.values_list("source_ip", "requests")) == [("192.0.2.1", 4)]


def test_it_counts_a_batch_whose_source_addresses_are_not_addresses(owner):
    key, _ = new_key(owner)
    day = HOUR // 86400 * 86400
    garbage = '"><img src=x onerror=alert(1)>' + "x" * 300
    record_usage(
        {
            "counts": [[key.id, HOUR, 1, 0, 0, 0, 0]],
            "last_used": [[key.id, HOUR + 5, garbage, "GetObject", "bkt", "ua"]],
            "sources": [[key.id, garbage, day, 1], [key.id, "::ffff:192.0.2.1", day, 1]],
            "denied_attempts": [[key.id, garbage, HOUR, 1]],
            "refused_uses": [[key.id, garbage, HOUR, 1]],
        }
    )

    key = AccessKey.objects.get(pk=key.pk)
    assert (key.last_used_ip, key.last_used_user_agent) == (None, "ua")
    assert KeyUsage.objects.get(access_key=key).requests == 1
    assert sorted(KeySourceDay.objects.values_list("source_ip", "requests")) == [
        ("", 1),
        ("::ffff:192.0.2.1", 1),
    ]
    assert sorted(DeniedAttempt.objects.values_list("source_ip", "signed", "count")) == [
        ("", False, 1),
        ("", True, 1),
    ]


def test_it_bounds_what_a_flood_of_made_up_key_ids_can_make_it_hold():
    recorder = UsageRecorder()
    for number in range(MAX_DENIED_ENTRIES + 500):
        recorder.record_denied_attempt(f"EXC{number:017d}", at=HOUR, ip="192.0.2.7")

    attempts = recorder.drain()["denied_attempts"]

    assert len(attempts) == MAX_DENIED_ENTRIES + 1
    assert ["", None, HOUR, 500] in attempts
    assert sum(row[3] for row in attempts) == MAX_DENIED_ENTRIES + 500


@pytest.mark.django_db
def test_it_stores_denied_attempts_with_the_named_keys_org(owner):
    key, _ = new_key(owner)
    unknown = "EXC" + "Q" * 17
    batch = {
        "counts": [],
        "last_used": [],
        "denied_attempts": [[key.id, "192.0.2.7", HOUR, 3], [unknown, None, HOUR, 2]],
    }

    assert record_usage(batch) == 0
    record_usage(batch)

    rows = {row.access_key_id: row for row in DeniedAttempt.objects.all()}
    assert (rows[key.id].count, rows[key.id].org_id, rows[key.id].source_ip) == (
        6,
        owner.org_id,
        "192.0.2.7",
    )
    assert (rows[unknown].count, rows[unknown].org_id, rows[unknown].source_ip) == (4, None, "")
    assert not KeyUsage.objects.filter(access_key=key).exists()


@pytest.mark.django_db
def test_it_adds_batches_to_hourly_rows_and_keeps_the_latest_use(owner):
    key, _ = new_key(owner)
    at = datetime.fromtimestamp(HOUR, UTC)
    first = {
        "counts": [[key.id, HOUR, 3, 30, 300, 1, 0], ["EXC" + "Z" * 17, HOUR, 1, 1, 1, 0, 0]],
        "last_used": [[key.id, HOUR + 50, "192.0.2.1", "PutObject", "bkt"]],
    }
    second = {
        "counts": [[key.id, HOUR, 2, 20, 200, 0, 1]],
        "last_used": [[key.id, HOUR + 40, "192.0.2.9", "GetObject", "bkt"]],  # older
    }

    assert record_usage(first) == 1  # the unknown key is ignored
    assert record_usage(second) == 1

    row = KeyUsage.objects.get(access_key=key, hour=at)
    assert (row.requests, row.bytes_in, row.bytes_out, row.errors, row.denied) == (
        5,
        50,
        500,
        1,
        1,
    )
    key = AccessKey.objects.get(pk=key.pk)
    assert key.last_used_operation == "PutObject"
    assert key.last_used_ip == "192.0.2.1"
    assert key.last_used_bucket == "bkt"
    assert key.last_used_at == datetime.fromtimestamp(HOUR + 50, UTC)


@pytest.mark.django_db
def test_it_cuts_a_reported_operation_and_bucket_to_what_the_key_page_keeps(owner):
    # What a gateway reports comes from the request: the store keeps at most 64 characters
    # of the operation and 63 of the bucket (the longest bucket name there is).
    key, _ = new_key(owner)
    report = [key.id, HOUR + 5, "192.0.2.1", "O" * 100, "b" * 100]
    record_usage({"counts": [], "last_used": [report]})
    key = AccessKey.objects.get(pk=key.pk)
    assert (key.last_used_operation, key.last_used_bucket) == ("O" * 64, "b" * 63)


def test_it_counts_every_piece_of_a_body_the_gateway_receives():
    messages = [
        {"type": "http.request", "body": b"abc", "more_body": True},
        {"type": "http.request", "body": b"", "more_body": True},
        {"type": "http.request", "body": b"defghij", "more_body": True},
        {"type": "http.request", "body": b"k", "more_body": False},
    ]

    async def receive():
        return messages.pop(0)

    async def read_all(receiver):
        pieces = []
        while not receiver.done:
            pieces.append((await receiver())["body"])
        return b"".join(pieces)

    receiver = Receiver(receive, timeout=5)
    assert asyncio.run(read_all(receiver)) == b"abcdefghijk"
    assert receiver.bytes == 11
