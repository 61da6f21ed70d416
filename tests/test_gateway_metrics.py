"""The gateway's /metrics, read after real traffic through a real gateway process; and
/healthz beside a bucket named "healthz"."""

from __future__ import annotations

import json
import secrets

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import new_key
from tests.gateway_stack import gateway

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = secrets.token_urlsafe(32)
BODY = b"x" * 1000


@pytest.fixture(scope="module")
def gw(tmp_path_factory, store):
    # Loopback is not an allowed network here: /metrics opens only to the token.
    with gateway(
        tmp_path_factory.mktemp("gw"),
        store,
        EXCLOUD_METRICS_ALLOWED_NETWORKS="10.99.0.0/16",
        EXCLOUD_METRICS_TOKEN=TOKEN,
    ) as running:
        yield running


def s3_client(url: str, key_id: str, secret: str):
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"}, retries={"max_attempts": 1}, signature_version="s3v4"
        ),
    )


def samples(gw_url: str) -> dict[tuple[str, frozenset], float]:
    r = httpx.get(gw_url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def test_it_counts_the_traffic_it_served(gw, owner):
    key, secret = new_key(owner)
    bucket = "metrics-" + secrets.token_hex(4)
    before = samples(gw.url)

    s3 = s3_client(gw.url, key.id, secret)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="object", Body=BODY)
    assert s3.get_object(Bucket=bucket, Key="object")["Body"].read() == BODY
    with pytest.raises(ClientError) as bad_signature:
        s3_client(gw.url, key.id, "A" * 40).list_objects_v2(Bucket=bucket)
    assert error_code(bad_signature) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as unknown:
        s3_client(gw.url, "EXC" + "A" * 17, "A" * 40).delete_object(Bucket=bucket, Key="object")
    assert error_code(unknown) == "InvalidAccessKeyId"

    after = samples(gw.url)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "excloud_s3_requests_total"
    assert grew(requests, operation="CreateBucket", status="200") == 1
    assert grew(requests, operation="PutObject", status="200") == 1
    assert grew(requests, operation="GetObject", status="200") == 1
    assert grew(requests, operation="ListObjectsV2", status="403") == 1
    assert grew(requests, operation="DeleteObject", status="403") == 1
    failures = "excloud_s3_auth_failures_total"
    assert grew(failures, reason="SignatureDoesNotMatch") == 1
    assert grew(failures, reason="InvalidAccessKeyId") == 1
    # The object's bytes, each way (the upload's framing, if any, counts as received).
    assert grew("excloud_s3_received_bytes_total", operation="PutObject") >= len(BODY)
    assert grew("excloud_s3_sent_bytes_total", operation="GetObject") == len(BODY)
    assert grew("excloud_s3_request_duration_seconds_count", operation="PutObject") == 1
    # The lookups of the one key ID that exists (the unknown one is refused by ID).
    lookups = sum(
        grew("excloud_s3_key_lookups_total", result=result) for result in ("hit", "miss", "unknown")
    )
    assert lookups >= 4
    assert grew("excloud_s3_upstream_errors_total", kind="unreachable") == 0


def test_it_answers_metrics_only_to_allowed_clients(gw):
    # From loopback, which this gateway does not allow, and with a wrong token: what S3
    # answers an anonymous or malformed request, as before.
    for headers in ({}, {"Authorization": "Bearer " + "x" * 43}):
        r = httpx.get(gw.url + "/metrics", headers=headers)
        assert r.status_code in (400, 403)
        assert b"<Error>" in r.content
        assert b"excloud_s3" not in r.content


def test_it_keeps_a_bucket_named_healthz_usable(gw, owner):
    key, secret = new_key(owner)
    s3 = s3_client(gw.url, key.id, secret)
    try:
        s3.create_bucket(Bucket="healthz")
    except ClientError as error:
        # Left by an earlier run on the same store folder; ours either way.
        assert error.response["Error"]["Code"] == "BucketAlreadyOwnedByYou"
    s3.put_object(Bucket="healthz", Key="inside", Body=b"kept")

    # Signed, by header and by presigned URL: S3 requests, which reach the store.
    listed = s3.list_objects_v2(Bucket="healthz")
    assert [o["Key"] for o in listed["Contents"]] == ["inside"]
    presigned = s3.generate_presigned_url("list_objects_v2", Params={"Bucket": "healthz"})
    r = httpx.get(presigned)
    assert r.status_code == 200
    assert b"<Key>inside</Key>" in r.content

    # Unsigned: the probe.
    r = httpx.get(gw.url + "/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "alive"}
    assert r.headers["cache-control"] == "no-store"
    head = httpx.head(gw.url + "/healthz")
    assert (head.status_code, head.content) == (200, b"")
    # With a query, it is S3's again (refused: no credentials).
    r = httpx.get(gw.url + "/healthz?list-type=2")
    assert r.status_code == 403
    assert b"<Code>AccessDenied</Code>" in r.content
    assert json.loads(httpx.get(gw.url + "/healthz").content)["status"] == "alive"
