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
through the gateway. The store's own rate moves by a third between minutes on a shared
machine, so each case runs in ROUNDS rounds with the store and the gateway timed back to
back in each; the ratio printed is the median of the rounds' ratios, with their range.
For 1 KiB requests it prints the p50 and p99 latency each way and what the gateway
adds; for 64 MiB ones, the CPU time the gateway and the store spend per request, which
moves far less between runs than the rates do. It samples the gateway's resident memory
while one 1 GiB object is PUT through it in a single request. Budgets (the gateway's
goals): 1 KiB GET and PUT at 0.6x the store's own rate or better on PostgreSQL + Redis
and 0.5x on the embedded default, 64 MiB at 0.9x, memory flat while a large object
streams.
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

from tests.gateway_stack import _stat_fields, _stop, _wait_for_http, free_port  # noqa: E402

BIN = REPO / ".venv" / "bin"
MiB = 1024 * 1024
# Per round and side; each case runs ROUNDS times on each side. A round's ratio can land
# anywhere from 0.65x to 1.5x on a shared machine: with 7 rounds, the median of one case
# moved by 0.2 between runs of the same code, so a verdict took several runs to trust.
ROUNDS = 15
SMALL_REQUESTS = 150
LARGE_REQUESTS = 2
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


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds a process has spent so far."""
    fields = _stat_fields(Path(f"/proc/{pid}/stat"))
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(fraction * 100) - 1]


def cases(bucket: str, small: bytes, large: bytes):
    """Each case: its name, its unit, and a function that runs it once on one client
    (with a name that differs per round) and answers its throughput and latencies."""

    def put(body: bytes, count: int, per_unit: float):
        def run(s3, tag: str):
            seconds, latencies = timed(
                lambda i: s3.put_object(Bucket=bucket, Key=f"{tag}{i}", Body=body), count
            )
            return count * per_unit / seconds, latencies

        return run

    def get(count: int, per_unit: float):
        def run(s3, tag: str):
            seconds, latencies = timed(
                lambda i: s3.get_object(Bucket=bucket, Key=f"{tag}{i}")["Body"].read(), count
            )
            return count * per_unit / seconds, latencies

        return run

    return [
        ("1 KiB PUT", "req/s", "s", put(small, SMALL_REQUESTS, 1)),
        ("1 KiB GET", "req/s", "s", get(SMALL_REQUESTS, 1)),
        ("64 MiB PUT", "MiB/s", "l", put(large, LARGE_REQUESTS, 64)),
        ("64 MiB GET", "MiB/s", "l", get(LARGE_REQUESTS, 64)),
    ]


def measure(direct, through, bucket: str, small: bytes, large: bytes, pids: dict) -> dict:
    """Every case, ROUNDS times, the store and the gateway back to back in each round
    (which goes first alternates), so both see the same moment of a noisy machine.

    Per case: each round's gateway/direct ratio, each side's throughputs and latencies,
    and the CPU seconds each process in ``pids`` (name: pid) spent on each side's requests.
    """
    # Warm the connection pools and the gateway's caches before anything is timed.
    for s3 in (direct, through):
        for index in range(20):
            s3.put_object(Bucket=bucket, Key=f"warm{index}", Body=small)
            s3.get_object(Bucket=bucket, Key=f"warm{index}")["Body"].read()
    results = {}
    for round_ in range(ROUNDS):
        sides = [("direct", direct), ("gateway", through)]
        if round_ % 2:
            sides.reverse()
        for case, unit, stem, run in cases(bucket, small, large):
            entry = results.setdefault(
                case,
                {
                    "unit": unit,
                    "ratios": [],
                    "direct": [],
                    "gateway": [],
                    "latencies": {},
                    "cpu": {},
                },
            )
            rates = {}
            for side, s3 in sides:
                before = {name: cpu_seconds(pid) for name, pid in pids.items()}
                rate, latencies = run(s3, f"{stem}{round_}-{side}-")
                cpu = entry["cpu"].setdefault(side, {})
                for name, pid in pids.items():
                    spent = cpu_seconds(pid) - before[name]
                    cpu[name] = cpu.get(name, 0.0) + spent / len(latencies)
                rates[side] = rate
                entry[side].append(rate)
                entry["latencies"].setdefault(side, []).extend(latencies)
            entry["ratios"].append(rates["gateway"] / rates["direct"])
    return results


def report(mode: str, results: dict) -> None:
    """The median of the rounds' ratios against the goal, with their range; the
    throughputs are medians too, so the ratio column is not their quotient."""
    print(f"\n== {mode} ({ROUNDS} rounds, store and gateway back to back in each) ==")
    print(f"{'case':<12}{'direct':>9}{'gateway':>9}{'ratio':>8}{'range':>13}{'goal':>6}   unit")
    for case, entry in results.items():
        ratio = statistics.median(entry["ratios"])
        goal = GOALS[mode][case]
        mark = "ok" if ratio >= goal else "BELOW"
        spread = f"{min(entry['ratios']):.2f}-{max(entry['ratios']):.2f}"
        print(
            f"{case:<12}{statistics.median(entry['direct']):>9.1f}"
            f"{statistics.median(entry['gateway']):>9.1f}{ratio:>8.2f}{spread:>13}{goal:>6.1f}"
            f"   {entry['unit']} {mark}"
        )
    for case in ("1 KiB PUT", "1 KiB GET"):
        latencies = results[case]["latencies"]
        row = []
        for fraction in (0.5, 0.99):
            d = percentile(latencies["direct"], fraction) * 1000
            g = percentile(latencies["gateway"], fraction) * 1000
            row.append(
                f"p{round(fraction * 100)} {d:.2f} ms direct, {g:.2f} ms gateway, +{g - d:.2f}"
            )
        print(f"{case} latency: " + "; ".join(row))
    for case in ("64 MiB PUT", "64 MiB GET"):
        # CPU per request, averaged over the rounds: steadier than the rates on a shared
        # machine, and what the gateway costs beside the store it fronts.
        cpu = {
            side: {n: 1000 * t / ROUNDS for n, t in c.items()}
            for side, c in results[case]["cpu"].items()
        }
        print(
            f"{case} CPU per request: direct, store {cpu['direct']['store']:.0f} ms; through the "
            f"gateway, gateway {cpu['gateway']['gateway']:.0f} ms and store "
            f"{cpu['gateway']['store']:.0f} ms"
        )


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
            with profiled(gateway.pid, mode):
                pids = {"gateway": gateway.pid, "store": objects.pid}
                results = measure(direct, through, "bench-bucket", small, large, pids)
            report(mode, results)
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
