"""Benchmark: the S3 gateway against the object store it fronts, as ratios in one run.

Run from the repository root::

    .venv/bin/python bench/gateway.py [--mode embedded|postgres|both]

With BENCH_PROFILE=PATH (and py-spy installed in the venv) the gateway is sampled while
it serves and the stacks are written to PATH.<mode>.

Two configurations, each timed against the same store in the same run:

- ``embedded``: the default with nothing configured (SQLite in a temporary
  EXCLOUD_VAR_DIR, no Redis), as ``make run`` starts it.
- ``postgres``: PostgreSQL (a scratch database next to BENCH_DATABASE_URL's, default
  ``postgres://postgres@127.0.0.1:5432/excloud_bench_gateway``) and Redis
  (BENCH_REDIS_URL, default DB 11 of the local Redis), as production runs it.

Each migrates, makes a key, starts `rclone serve s3` and the gateway (gateway.serve) on
free ports, then times 1 KiB and 64 MiB GETs and PUTs with boto3 straight to the store and
through the gateway, and prints the ratio and, for 1 KiB requests, the p50 and p99 latency
each way and what the gateway adds. It samples the gateway's resident memory while one
1 GiB object is PUT through it in a single request. Budgets (the gateway's
goals): 1 KiB GET and PUT at 0.6x the store's own rate or better on PostgreSQL + Redis and
0.5x on the embedded default, 64 MiB at 0.9x, memory flat while a large object streams.
The script exits non-zero when the gateway's peak grows by more than
PEAK_GROWTH_LIMIT_MIB during the 1 GiB upload; throughput goals are printed beside the
ratios with no exit status, because these machines are noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import boto3
from botocore.config import Config

from excloud_portal import devenv

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import benchdb  # noqa: E402 - beside this script

from tests.gateway_stack import _stop, _wait_for_http, free_port  # noqa: E402

BIN = REPO / ".venv" / "bin"
MiB = 1024 * 1024
SMALL_REQUESTS = 400
LARGE_REQUESTS = 3
HUGE_SIZE = 1024 * MiB
PEAK_GROWTH_LIMIT_MIB = 64
GOALS = {
    "embedded": {"1 KiB PUT": 0.5, "1 KiB GET": 0.5, "64 MiB PUT": 0.9, "64 MiB GET": 0.9},
    "postgres": {"1 KiB PUT": 0.6, "1 KiB GET": 0.6, "64 MiB PUT": 0.9, "64 MiB GET": 0.9},
}
BENCH_DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/excloud_bench_gateway"
)
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
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


def timed(operation, count: int) -> tuple[float, list[float]]:
    """Total seconds for ``count`` calls, and each call's seconds."""
    latencies = []
    started = time.perf_counter()
    for index in range(count):
        begun = time.perf_counter()
        operation(index)
        latencies.append(time.perf_counter() - begun)
    return time.perf_counter() - started, latencies


def percentile(values: list[float], fraction: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


def measure_small(s3, bucket: str, small: bytes) -> dict[str, tuple[float, list[float]]]:
    """Per case: throughput (requests per second) and each request's seconds."""
    results = {}
    # Warm the connection pool and the gateway's caches before anything is timed.
    for index in range(20):
        s3.put_object(Bucket=bucket, Key=f"warm{index}", Body=small)
        s3.get_object(Bucket=bucket, Key=f"warm{index}")["Body"].read()
    seconds, latencies = timed(
        lambda i: s3.put_object(Bucket=bucket, Key=f"s{i}", Body=small), SMALL_REQUESTS
    )
    results["1 KiB PUT"] = (SMALL_REQUESTS / seconds, latencies)
    seconds, latencies = timed(
        lambda i: s3.get_object(Bucket=bucket, Key=f"s{i}")["Body"].read(), SMALL_REQUESTS
    )
    results["1 KiB GET"] = (SMALL_REQUESTS / seconds, latencies)
    return results


def measure_large(s3, bucket: str, large: bytes) -> dict[str, tuple[float, list[float]]]:
    """Per case: throughput (MiB per second) and each request's seconds."""
    results = {}
    seconds, latencies = timed(
        lambda i: s3.put_object(Bucket=bucket, Key=f"l{i}", Body=large), LARGE_REQUESTS
    )
    results["64 MiB PUT"] = (LARGE_REQUESTS * 64 / seconds, latencies)
    seconds, latencies = timed(
        lambda i: s3.get_object(Bucket=bucket, Key=f"l{i}")["Body"].read(), LARGE_REQUESTS
    )
    results["64 MiB GET"] = (LARGE_REQUESTS * 64 / seconds, latencies)
    return results


def report(mode: str, direct: dict, through: dict) -> None:
    print(f"\n== {mode} ==")
    print(f"{'case':<14}{'direct':>10}{'gateway':>10}{'ratio':>8}{'goal':>7}   unit")
    for case, (direct_value, _) in direct.items():
        value = through[case][0]
        ratio = value / direct_value
        goal = GOALS[mode][case]
        mark = "ok" if ratio >= goal else "BELOW"
        unit = "req/s" if case.startswith("1 KiB") else "MiB/s"
        print(
            f"{case:<14}{direct_value:>10.1f}{value:>10.1f}{ratio:>8.2f}{goal:>7.1f}   "
            f"{unit} {mark}"
        )
    for case in ("1 KiB PUT", "1 KiB GET"):
        row = []
        for fraction in (0.5, 0.99):
            d = percentile(direct[case][1], fraction) * 1000
            g = percentile(through[case][1], fraction) * 1000
            row.append(
                f"p{round(fraction * 100)} {d:.2f} ms direct, {g:.2f} ms gateway, +{g - d:.2f}"
            )
        print(f"{case} latency: " + "; ".join(row))


@contextlib.contextmanager
def profiled(pid: int, mode: str):
    """With BENCH_PROFILE=PATH, py-spy samples the gateway into PATH.<mode> (collapsed
    stacks, for flamegraph tools) while the block runs."""
    path = os.environ.get("BENCH_PROFILE")
    if not path:
        yield
        return
    spy = subprocess.Popen(
        [str(BIN / "py-spy"), "record", "--pid", str(pid), "--format", "raw", "--rate", "250"]
        + ["--output", f"{path}.{mode}", "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=30)


def scratch_database() -> str:
    """Drop and create the bench's PostgreSQL database; its URL."""
    parts = urlsplit(BENCH_DATABASE_URL)
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    benchdb.recreate_database(maintenance, parts.path.lstrip("/"), create=True)
    return BENCH_DATABASE_URL


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(BENCH_REDIS_URL).flushdb()


def start(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        argv,
        env=env,
        cwd=REPO,
        stdout=open(log, "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def run_mode(mode: str, huge_upload: bool) -> int:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
        env.update(EXCLOUD_VAR_DIR=str(tmp / "var"), PYTHONPATH=str(REPO))
        devenv.load(env)
        if mode == "postgres":
            flush_redis()
            env.update(DATABASE_URL=scratch_database(), REDIS_URL=BENCH_REDIS_URL)
        objects_port, gateway_port = free_port(), free_port()
        env["EXCLOUD_S3_UPSTREAM_URL"] = f"http://127.0.0.1:{objects_port}"
        python = str(BIN / "python")
        run = {"env": env, "cwd": REPO, "check": True, "capture_output": True, "text": True}
        subprocess.run([python, "manage.py", "migrate", "--noinput"], **run)
        made = subprocess.run([python, "manage.py", "shell", "-c", MAKE_KEY], **run).stdout
        key_id, secret = re.search(r"KEY (\S+) (\S+)", made).groups()
        upstream_id = env["EXCLOUD_EMBEDDED_S3_ACCESS_KEY_ID"]
        upstream_secret = env["EXCLOUD_EMBEDDED_S3_SECRET_ACCESS_KEY"]
        procs = []
        try:
            objects = start([python, "-m", "gateway.objects"], env, tmp / "objects.log")
            procs.append(objects)
            serve = [python, "-m", "gateway.serve", "--host", "127.0.0.1"]
            gateway = start([*serve, "--port", str(gateway_port)], env, tmp / "gateway.log")
            procs.append(gateway)
            direct_url = f"http://127.0.0.1:{objects_port}"
            gateway_url = f"http://127.0.0.1:{gateway_port}"
            _wait_for_http(direct_url + "/", objects, tmp / "objects.log")
            _wait_for_http(gateway_url + "/", gateway, tmp / "gateway.log")

            through = client(gateway_url, key_id, secret)
            direct = client(direct_url, upstream_id, upstream_secret)
            through.create_bucket(Bucket="bench-bucket")
            small, large = os.urandom(1024), os.urandom(64 * MiB)
            direct_results = measure_small(direct, "bench-bucket", small)
            with profiled(gateway.pid, mode):
                gateway_results = measure_small(through, "bench-bucket", small)
            direct_results |= measure_large(direct, "bench-bucket", large)
            gateway_results |= measure_large(through, "bench-bucket", large)
            report(mode, direct_results, gateway_results)
            if not huge_upload:
                return 0

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["embedded", "postgres", "both"], default="both")
    parser.add_argument(
        "--no-huge", action="store_true", help="skip the 1 GiB upload's memory check"
    )
    args = parser.parse_args()
    modes = ["embedded", "postgres"] if args.mode == "both" else [args.mode]
    return max(run_mode(mode, huge_upload=not args.no_huge) for mode in modes)


if __name__ == "__main__":
    sys.exit(main())
