"""The SeaweedFS cluster the gateway's end-to-end tests also run on is a distributed store:
what is uploaded through the gateway is written to both of its volume servers. And the
gateway's own multipart upload to the store (a browser's POST of a file over one part)
works on it, as on the embedded store (tests/test_gateway_post_object.py)."""

from __future__ import annotations

import os

import pytest

from tests.conftest import new_key
from tests.gateway_stack import gateway
from tests.seaweed import REPLICATION
from tests.test_gateway_e2e import bucket_name, s3_client
from tests.test_gateway_post_object import post_in_two_parts

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.parametrize("store", ["seaweedfs"], indirect=True, scope="module"),
]

UPLOADS = 5


@pytest.fixture(scope="module")
def gw(tmp_path_factory, store):
    with gateway(tmp_path_factory.mktemp("gw"), store) as running:
        yield running


def test_it_writes_each_object_to_both_volume_servers(gw, store, owner):
    cluster = store.cluster
    before = cluster.files_per_volume_server()
    key, secret = new_key(owner)
    name = bucket_name()
    s3 = s3_client(gw.url, key.id, secret)

    s3.create_bucket(Bucket=name)
    for n in range(UPLOADS):
        s3.put_object(Bucket=name, Key=f"object-{n}.bin", Body=os.urandom(1000 + n))

    after = cluster.files_per_volume_server()
    assert len(after) == 2
    for url in cluster.volume_urls:
        assert after[url] - before[url] >= UPLOADS, after
    # Each volume of the bucket (its collection) is on both servers, with the same files.
    volumes = [
        {
            volume["Id"]: (volume["FileCount"], volume["ReplicaPlacement"])
            for volume in cluster.volume_status(url)["Volumes"] or []
            if volume["Collection"] == name
        }
        for url in cluster.volume_urls
    ]
    assert volumes[0] and volumes[0] == volumes[1]
    assert sum(count for count, _ in volumes[0].values()) == UPLOADS
    # Replication 001: one more copy on another server of the same rack.
    assert REPLICATION == "001"
    assert {placement["node"] for _, placement in volumes[0].values()} == {1}


def test_it_stores_a_posted_file_in_parts(gw, owner):
    key, secret = new_key(owner)
    s3 = s3_client(gw.url, key.id, secret)
    bucket = bucket_name()
    s3.create_bucket(Bucket=bucket)
    answer, data = post_in_two_parts(s3, bucket)
    stored = s3.get_object(Bucket=bucket, Key="uploads/parts.bin")
    assert stored["Body"].read() == data
    assert stored["ETag"] == answer.headers["ETag"]
