"""Benchmark: the S3 gateway against the object store it fronts, as ratios in one run.

Run from the repository root (no database needed: it uses the embedded default, SQLite
in a temporary EXCLOUD_VAR_DIR)::

    .venv/bin/python bench/gateway.py

It migrates, makes a key, starts `rclone serve s3` and the gateway (gateway.serve) on free
ports, then times 1 KiB and 64 MiB GETs and PUTs with boto3 straight to the store and
through the gateway, and samples the gateway's resident memory while one 1 GiB object is
PUT through it in a single request. Budget: memory stays flat while a large
object streams; the script exits non-zero when the gateway's peak grows by more than
PEAK_GROWTH_LIMIT_MIB during the 1 GiB upload. Throughput ratios are printed, with no
pass mark, because these machines are noisy.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.gateway_stack import _stop, _wait_for_http, free_port  # noqa: E402

BIN = REPO / ".venv" / "bin"
MiB = 1024 * 1024
SMALL_REQUESTS = 200
LARGE_REQUESTS = 3
HUGE_SIZE = 1024 * MiB
PEAK_GROWTH_LIMIT_MIB = 64
MAKE_KEY = """
from accounts.models import Membership, Organization, Role, User
from audit.trail import Actor
from keys.services import create_key
org = Organization.objects.create(slug="bench", name="Bench")
user = User.objects.create_user(email="bench@example.test", password=None)
membership = Membership.objects.create(org=org, user=user, role=Role.OWNER)
created = create_key(membership, Actor.for_user(user), "bench")
print("KEY", created.key.id, created.secret)
"""


def client(url: str, key_id: str, secret: str):
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=4),
    )


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1))


def timed(operation, count: int) -> float:
    started = time.perf_counter()
    for index in range(count):
        operation(index)
    return time.perf_counter() - started


def measure(s3, bucket: str, small: bytes, large: bytes) -> dict[str, float]:
    """Throughput (operations or MiB per second) per case."""
    results = {}
    seconds = timed(lambda i: s3.put_object(Bucket=bucket, Key=f"s{i}", Body=small), SMALL_REQUESTS)
    results["1 KiB PUT (req/s)"] = SMALL_REQUESTS / seconds
    seconds = timed(
        lambda i: s3.get_object(Bucket=bucket, Key=f"s{i}")["Body"].read(), SMALL_REQUESTS
    )
    results["1 KiB GET (req/s)"] = SMALL_REQUESTS / seconds
    seconds = timed(lambda i: s3.put_object(Bucket=bucket, Key=f"l{i}", Body=large), LARGE_REQUESTS)
    results["64 MiB PUT (MiB/s)"] = LARGE_REQUESTS * 64 / seconds
    seconds = timed(
        lambda i: s3.get_object(Bucket=bucket, Key=f"l{i}")["Body"].read(), LARGE_REQUESTS
    )
    results["64 MiB GET (MiB/s)"] = LARGE_REQUESTS * 64 / seconds
    return results


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
        env.update(EXCLOUD_VAR_DIR=str(tmp / "var"), PYTHONPATH=str(REPO))
        objects_port, gateway_port = free_port(), free_port()
        env["EXCLOUD_S3_UPSTREAM_URL"] = f"http://127.0.0.1:{objects_port}"
        python = str(BIN / "python")
        run = {"env": env, "cwd": REPO, "check": True, "capture_output": True, "text": True}
        subprocess.run([python, "manage.py", "migrate", "--noinput"], **run)
        made = subprocess.run([python, "manage.py", "shell", "-c", MAKE_KEY], **run).stdout
        key_id, secret = re.search(r"KEY (\S+) (\S+)", made).groups()
        var = tmp / "var"
        upstream_id = (var / "s3-upstream-access-key-id").read_text().strip()
        upstream_secret = (var / "s3-upstream-secret-access-key").read_text().strip()
        procs = []
        try:
            log = open(tmp / "objects.log", "wb")  # noqa: SIM115 - closed with the process
            objects = subprocess.Popen(
                [python, "-m", "gateway.objects"],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            procs.append(objects)
            log = open(tmp / "gateway.log", "wb")  # noqa: SIM115
            gateway = subprocess.Popen(
                [
                    str(BIN / "python"),
                    "-m",
                    "gateway.serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(gateway_port),
                ],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            procs.append(gateway)
            direct_url = f"http://127.0.0.1:{objects_port}"
            gateway_url = f"http://127.0.0.1:{gateway_port}"
            _wait_for_http(direct_url + "/", objects, tmp / "objects.log")
            _wait_for_http(gateway_url + "/", gateway, tmp / "gateway.log")

            through = client(gateway_url, key_id, secret)
            direct = client(direct_url, upstream_id, upstream_secret)
            through.create_bucket(Bucket="bench-bucket")
            small, large = os.urandom(1024), os.urandom(64 * MiB)
            direct_results = measure(direct, "bench-bucket", small, large)
            gateway_results = measure(through, "bench-bucket", small, large)

            print(f"{'case':<22}{'direct':>12}{'gateway':>12}{'ratio':>8}")
            for case, direct_value in direct_results.items():
                value = gateway_results[case]
                print(f"{case:<22}{direct_value:>12.1f}{value:>12.1f}{value / direct_value:>8.2f}")

            huge = tmp / "huge.bin"
            with open(huge, "wb") as f:
                for _ in range(HUGE_SIZE // (64 * MiB)):
                    f.write(large)
            baseline = rss_kib(gateway.pid)
            peak = [baseline]
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], rss_kib(gateway.pid))
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample)
            sampler.start()
            try:
                started = time.perf_counter()
                with open(huge, "rb") as body:
                    through.put_object(Bucket="bench-bucket", Key="huge", Body=body)
                seconds = time.perf_counter() - started
            finally:
                done.set()
                sampler.join()
            growth = (peak[0] - baseline) / 1024
            print(
                f"1 GiB PUT through the gateway: {HUGE_SIZE / MiB / seconds:.0f} MiB/s; gateway "
                f"RSS {baseline / 1024:.0f} MiB before, peak {peak[0] / 1024:.0f} MiB "
                f"(+{growth:.0f} MiB)"
            )
            if growth > PEAK_GROWTH_LIMIT_MIB:
                print(f"FAIL: gateway memory grew by more than {PEAK_GROWTH_LIMIT_MIB} MiB")
                return 1
            return 0
        finally:
            for proc in procs:
                _stop(proc)


if __name__ == "__main__":
    sys.exit(main())
