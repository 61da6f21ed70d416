"""Benchmark: the org usage page and a key's page at 100 and at 10,000 keys in one org,
each key with 30 days of traffic.

Run from the repository root with DATABASE_URL pointing at PostgreSQL::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/excloud .venv/bin/python bench/usage_page.py

The database named in DATABASE_URL is never touched: the script creates its own database
beside it (``<name>_usagebench``), migrates it, measures, and drops it at the end.

Each key has 30 days of hourly traffic as the pages find it once the rollup task has run
(keys.rollups): one daily row per day older than two days, and hourly rows for today and
the two days before; plus one source IP and one bucket per day. The rows are written
with INSERT ... SELECT generate_series, which is what makes 10,000 keys quick to set up.

Budget: each page costs the same number of queries at 10,000 keys as at 100. The script
exits non-zero when it does not. Median times are printed, with the ratio between the
two sizes measured in the same run; they have no pass mark.
"""

from __future__ import annotations

import re
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchdb  # noqa: E402

SIZES = (100, 10_000)
REQUESTS = 15
WARMUP = 2
SLUG = "bench"
# The keys' traffic goes to this many buckets, named bench-0 and on.
BUCKETS = 64
ROW_RE = re.compile(r'<tr id="(?:usage|bucket)-([\w-]+)">')
BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def key_id(number: int) -> str:
    """A well-formed access key ID (EXC + 17 base32 characters) for a number."""
    digits = []
    for _ in range(17):
        number, digit = divmod(number, 32)
        digits.append(BASE32[digit])
    return "EXC" + "".join(reversed(digits))


@dataclass
class Measurement:
    page: str
    keys_in_org: int
    rows: int
    queries: int
    median_ms: float


def make_keys(org, owner, start: int, count: int) -> None:
    from keys.models import AccessKey, CreatedVia

    AccessKey.objects.bulk_create(
        (
            AccessKey(
                id=key_id(number),
                org=org,
                name=f"key-{number:05d}",
                secret_sealed=b"",
                secret_kek_id="bench",
                created_by=owner,
                created_via=CreatedVia.API,
            )
            for number in range(start, start + count)
        ),
        batch_size=2000,
    )


def fill_usage(start: int, count: int) -> None:
    """30 days of traffic for keys number start .. start + count - 1, as after rollups."""
    from django.db import connection

    from keys import rollups

    cutoff = rollups.cutoff()
    ids = [key_id(number) for number in range(start, start + count)]
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO keys_keyusageday
                (access_key_id, day, requests, bytes_in, bytes_out, errors, denied)
            SELECT k, d::date, 24 * (1 + (hashtext(k) & 7)), 24 * 4096, 24 * 65536, 1, 0
            FROM unnest(%s::text[]) AS k,
                 generate_series(%s::timestamptz - interval '28 days',
                                 %s::timestamptz - interval '1 day', interval '1 day') AS d
            """,
            [ids, cutoff, cutoff],
        )
        cursor.execute(
            """
            INSERT INTO gateway_keyusage
                (access_key_id, hour, requests, bytes_in, bytes_out, errors, denied)
            SELECT k, h, 1 + (hashtext(k) & 7), 4096, 65536, 0, 0
            FROM unnest(%s::text[]) AS k,
                 generate_series(%s::timestamptz, now(), interval '1 hour') AS h
            """,
            [ids, cutoff],
        )
        for table, column, value in (
            ("keys_keysourceday", "source_ip", "'198.51.100.' || (hashtext(k) & 255)"),
            ("keys_keybucketday", "bucket", "'bench-' || (hashtext(k) & 63)"),
        ):
            extra = ", bytes_in, bytes_out" if table == "keys_keybucketday" else ""
            extra_values = ", 4096, 65536" if extra else ""
            cursor.execute(
                f"""
                INSERT INTO {table} (access_key_id, {column}, day, requests{extra})
                SELECT k, {value}, d::date, 24{extra_values}
                FROM unnest(%s::text[]) AS k,
                     generate_series(now() - interval '29 days', now(), interval '1 day') AS d
                """,
                [ids],
            )
        for table in (
            "keys_accesskey",
            "keys_keyusageday",
            "gateway_keyusage",
            "keys_keysourceday",
            "keys_keybucketday",
        ):
            cursor.execute(f"ANALYZE {table}")


def measure(client, page: str, url: str, keys_in_org: int, problems: list[str]) -> Measurement:
    for _ in range(WARMUP):
        benchdb.timed_get(client, url)
    times, counts, rows = [], set(), set()
    for _ in range(REQUESTS):
        elapsed, count, _queries, body = benchdb.timed_get(client, url)
        times.append(elapsed)
        counts.add(count)
        rows.add(len(ROW_RE.findall(body)))
    if len(counts) != 1:
        problems.append(f"{page} at {keys_in_org} keys: query count varies between requests")
    return Measurement(page, keys_in_org, rows.pop(), max(counts), statistics.median(times))


def run() -> list[str]:
    benchdb.setup_django()
    from django.test import Client

    from accounts.models import User
    from accounts.services import create_org
    from audit.trail import Actor
    from gateway.models import Bucket

    actor = Actor.system("bench/usage_page.py")
    owner = User.objects.create_user(email="owner@bench.test")
    org = create_org(owner, "Bench", actor, slug=SLUG)
    Bucket.objects.bulk_create(Bucket(name=f"bench-{n}", org=org) for n in range(BUCKETS))
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(owner)
    key_url = f"/orgs/{SLUG}/keys/{key_id(0)}/"
    pages = {
        "usage page": f"/orgs/{SLUG}/usage/",
        "usage, by name": f"/orgs/{SLUG}/usage/?sort=name&order=asc",
        "key page": key_url,
        "buckets page": f"/orgs/{SLUG}/buckets/",
    }
    problems: list[str] = []
    results: list[Measurement] = []
    made = 0
    for size in SIZES:
        make_keys(org, owner, made, size - made)
        fill_usage(made, size - made)
        made = size
        print(f"{size:,} keys in org, each with 30 days of traffic")
        for page, url in pages.items():
            results.append(measure(client, page, url, size, problems))

    base = {r.page: r for r in results if r.keys_in_org == SIZES[0]}
    header = (
        f"{'page':<16} {'keys in org':>11} {'rows':>5} {'queries':>7} "
        f"{'median ms':>9} {'time ×':>7}"
    )
    print()
    print(f"Usage pages, {REQUESTS} requests each (time × = median at 10,000 / at 100 keys)")
    print(header)
    print("-" * len(header))
    for r in sorted(results, key=lambda r: (list(pages).index(r.page), r.keys_in_org)):
        ratio = "" if r.keys_in_org == SIZES[0] else f"{r.median_ms / base[r.page].median_ms:.2f}"
        print(
            f"{r.page:<16} {r.keys_in_org:>11,} {r.rows:>5} {r.queries:>7} "
            f"{r.median_ms:>9.1f} {ratio:>7}"
        )
        if r.keys_in_org != SIZES[0] and r.queries != base[r.page].queries:
            problems.append(
                f"{r.page}: {base[r.page].queries} queries at {SIZES[0]:,} keys,"
                f" {r.queries} at {r.keys_in_org:,}"
            )
    return problems


def main() -> int:
    with benchdb.bench_database("usagebench"):
        problems = run()
    return benchdb.report(
        problems, "Budget met: constant query count from 100 to 10,000 keys on every usage page."
    )


if __name__ == "__main__":
    sys.exit(main())
