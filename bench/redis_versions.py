"""Benchmark: the read every gateway request makes of Redis (an MGET of the key's and the
buckets' versions), through redis-py's asyncio client and through the gateway's one
pipelined connection (gateway/pipelined_redis.py), in one run.

Run from the repository root::

    .venv/bin/python bench/redis_versions.py

Against BENCH_REDIS_URL (default DB 11 of the local Redis). For each client it prints the
process's CPU time per read, one read at a time and with CONCURRENT reads in flight, and
how many connections to Redis the client held at the end; CPU time moves less between
runs than wall time does on a shared machine, and the two clients are timed back to back.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import redis
import redis.asyncio as aioredis
import uvloop

# The repository's gateway package, not bench/gateway.py beside this script.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.pipelined_redis import PipelinedRedis  # noqa: E402

BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
READS = 20_000
CONCURRENT = 100
ROUNDS = 3
SLOTS = ["excloud:key-version:EXCBENCHBENCHBENCH00", "excloud:bucket-version:bench-bucket"]


def connections(name: str) -> int:
    """Connections to Redis named ``name``."""
    clients = redis.Redis.from_url(BENCH_REDIS_URL).client_list()
    return sum(1 for client in clients if client["name"] == name)


async def cpu_per_read(mget, concurrent: int) -> float:
    """Microseconds of this process's CPU per read."""
    per_worker = READS // concurrent

    async def worker() -> None:
        for _ in range(per_worker):
            await mget(SLOTS)

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrent)))
    return (time.process_time() - started) / (per_worker * concurrent) * 1e6


async def main() -> None:
    timeout = 0.25
    redis_py = aioredis.Redis.from_url(
        BENCH_REDIS_URL,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        client_name="redis-py",
    )
    pipelined = PipelinedRedis(BENCH_REDIS_URL, timeout=timeout)
    await pipelined.execute("CLIENT", "SETNAME", "pipelined")
    clients = {"redis-py": redis_py.mget, "pipelined": pipelined.mget}
    print(f"{READS:,} MGETs of two versions per client and case, {ROUNDS} rounds, median")
    for concurrent in (1, CONCURRENT):
        results: dict[str, list[float]] = {name: [] for name in clients}
        held = {}
        for _ in range(ROUNDS):
            for name, mget in clients.items():
                results[name].append(await cpu_per_read(mget, concurrent))
                held[name] = connections(name)
                # Each count is of the connections used last; drop redis-py's before the
                # next client is counted.
                if name == "redis-py":
                    await redis_py.connection_pool.disconnect()
        medians = {name: sorted(values)[ROUNDS // 2] for name, values in results.items()}
        line = ", ".join(
            f"{name} {medians[name]:.0f} us CPU per read on {held[name]} connection(s)"
            for name in clients
        )
        ratio = medians["redis-py"] / medians["pipelined"]
        print(f"{concurrent:>3} in flight: {line}; redis-py costs {ratio:.1f}x")
    await redis_py.aclose()
    await pipelined.aclose()


if __name__ == "__main__":
    uvloop.run(main())
