"""The SeaweedFS cluster the gateway's end-to-end tests also run on is a distributed store:
what is uploaded through the gateway is written to both of its volume servers."""

from __future__ import annotations

import os

import pytest

from tests.conftest import new_key
from tests.gateway_stack import gateway
from tests.seaweed import REPLICATION
from tests.test_gateway_e2e import bucket_name, s3_client

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.parametrize("store", ["seaweedfs"], indirect=True, scope="module"),
]

UPLOADS = 5


def test_it_writes_each_object_to_both_volume_servers(store, owner, tmp_path):
    cluster = store.cluster
    before = cluster.files_per_volume_server()
    key, secret = new_key(owner)
    name = bucket_name()

    with gateway(tmp_path, store) as gw:
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
