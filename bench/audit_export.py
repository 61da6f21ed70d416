"""Benchmark: the audit export streams with flat memory, at 10,000 and at 100,000 events.

Run from the repository root with DATABASE_URL pointing at PostgreSQL::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/excloud .venv/bin/python bench/audit_export.py

The database named in DATABASE_URL is never touched: the script creates its own database
beside it (``<name>_bench_audit_export``), fills it, measures, and drops it.

Two orgs, one with 10,000 events and one with 100,000, are exported as CSV and as JSON Lines
through the Django test client, reading ``response.streaming_content`` chunk by chunk and
throwing each chunk away, as a client downloading the file would. For each export the
script records how much the process's memory grew at its peak: Python allocations
(tracemalloc, exact) and resident set size (sampled every few milliseconds; includes the
database driver's buffers, but noisy, as the allocator keeps freed memory for reuse).

Budget: flat memory. The script exits non-zero when the
Python peak at 100,000 events is more than twice that at 10,000 (a buffered export would
be about ten times), or when an export holds the wrong number of rows.
"""

from __future__ import annotations

import gc
import random
import sys
import threading
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import audit_fill  # noqa: E402
import benchdb  # noqa: E402

SIZES = {"small": 10_000, "large": 100_000}
KEYS = 2_000
FLAT_RATIO = 2.0
RSS_SAMPLE_SECONDS = 0.002
SEED = 20261128
MiB = 1024 * 1024


@dataclass
class Export:
    fmt: str
    events: int
    rows: int
    megabytes: float
    seconds: float
    chunks: int
    python_peak: int
    rss_growth: int


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


class RssSampler(threading.Thread):
    """The highest resident set size seen while running."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = rss()
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss())
            time.sleep(RSS_SAMPLE_SECONDS)

    def stop(self) -> int:
        self.running = False
        self.join()
        return max(self.peak, rss())


def download(client, slug: str, fmt: str) -> tuple[int, int, int]:
    """Read an export chunk by chunk, keeping nothing: (bytes, lines, chunks)."""
    response = client.get(f"/orgs/{slug}/audit/export.{fmt}")
    if response.status_code != 200 or not response.streaming:
        sys.exit(
            f"export of {slug} answered {response.status_code}, streaming={response.streaming}"
        )
    size = lines = chunks = 0
    for chunk in response.streaming_content:
        size += len(chunk)
        lines += chunk.count(b"\n")
        chunks += 1
    response.close()
    return size, lines, chunks


def export(client, slug: str, fmt: str, events: int) -> Export:
    """Export twice: timed and with RSS sampled, then again with tracemalloc on (which
    makes Python several times slower, so it stays out of the timed run)."""
    gc.collect()
    rss_before = rss()
    sampler = RssSampler()
    sampler.start()
    began = time.perf_counter()
    size, lines, chunks = download(client, slug, fmt)
    seconds = time.perf_counter() - began
    rss_peak = sampler.stop()
    gc.collect()
    tracemalloc.start()
    python_before = tracemalloc.get_traced_memory()[0]
    download(client, slug, fmt)
    python_peak = tracemalloc.get_traced_memory()[1] - python_before
    tracemalloc.stop()
    return Export(
        fmt=fmt,
        events=events,
        rows=lines - (1 if fmt == "csv" else 0),
        megabytes=size / MiB,
        seconds=seconds,
        chunks=chunks,
        python_peak=python_peak,
        rss_growth=rss_peak - rss_before,
    )


def run() -> list[str]:
    audit_fill.setup_django()
    from django.test import Client

    from audit.models import AuditEvent

    rng = random.Random(SEED)
    users = audit_fill.make_users()
    trails = []
    for slug, size in SIZES.items():
        org = audit_fill.make_org(slug, users)
        keys = audit_fill.make_keys(org, users[0], KEYS)
        trails.append((audit_fill.Trail(org, users, keys, rng), size))
    seconds = audit_fill.fill(trails, rng)
    audit_fill.finish_load(None)
    print(f"filled {sum(SIZES.values()):,} events in {seconds:.0f} s")

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(users[0])
    # Warm up imports, templates and the connection, so no one-time cost lands in a sample.
    for fmt in ("csv", "jsonl"):
        b"".join(client.get(f"/orgs/small/audit/export.{fmt}").streaming_content)

    results: list[Export] = []
    problems: list[str] = []
    for fmt in ("csv", "jsonl"):
        for slug in SIZES:
            # The org's events before this export: the filled ones, org.created and earlier
            # exports' own events. (The traced second download holds one more.)
            expected = AuditEvent.objects.filter(org__slug=slug).count()
            result = export(client, slug, fmt, expected)
            if result.rows != expected:
                problems.append(f"{fmt} export of {slug}: {result.rows} rows for {expected}")
            results.append(result)

    header = (
        f"{'format':<6} {'events':>8} {'MiB':>6} {'chunks':>6} {'s':>5} {'rows/s':>8}"
        f" {'Python peak':>11} {'RSS growth':>10}"
    )
    print("\nAudit export streamed through the test client, chunks read and dropped")
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r.fmt:<6} {r.events:>8,} {r.megabytes:>6.1f} {r.chunks:>6} {r.seconds:>5.1f}"
            f" {r.rows / r.seconds:>8,.0f} {r.python_peak / MiB:>9.2f}Mi"
            f" {r.rss_growth / MiB:>8.1f}Mi"
        )
    print()
    for fmt in ("csv", "jsonl"):
        small, large = (r for r in results if r.fmt == fmt)
        ratio = large.python_peak / small.python_peak
        # RSS moves in whole pages and arenas; under a MiB it says nothing either way.
        rss_ratio = (
            f"×{large.rss_growth / small.rss_growth:.2f}"
            if small.rss_growth >= MiB
            else f"{small.rss_growth / MiB:.1f} → {large.rss_growth / MiB:.1f} MiB"
        )
        print(
            f"{fmt}: {large.events / small.events:.0f}× the events; Python peak ×{ratio:.2f},"
            f" RSS growth {rss_ratio}"
        )
        if ratio > FLAT_RATIO:
            problems.append(f"{fmt}: Python peak grew ×{ratio:.2f} (budget ×{FLAT_RATIO})")
    print(f"control, the same JSON Lines export of {SIZES['large']:,} kept in memory:", end=" ")
    print(f"Python peak {kept_in_memory(client, 'large', 'jsonl') / MiB:.1f}Mi")
    return problems


def kept_in_memory(client, slug: str, fmt: str) -> int:
    """The Python peak of a client that keeps the whole file: what the measure would show if
    the export were built in memory, so a flat result means something."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    body = b"".join(client.get(f"/orgs/{slug}/audit/export.{fmt}").streaming_content)
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    del body
    return peak


def main() -> int:
    began = time.perf_counter()
    with benchdb.bench_database("bench_audit_export"):
        problems = run()
    print(f"\nwhole run: {time.perf_counter() - began:.0f} s")
    return benchdb.report(
        problems,
        f"Budget met: the Python peak at 100,000 events is within ×{FLAT_RATIO} of 10,000.",
    )


if __name__ == "__main__":
    sys.exit(main())
