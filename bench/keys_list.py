"""Benchmark: the dashboard key list at 100 and at 10,000 keys in one org.

Run from the repository root with DATABASE_URL pointing at PostgreSQL::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/excloud .venv/bin/python bench/keys_list.py

The database named in DATABASE_URL is never touched: the script creates its own database
beside it (``<name>_bench``), migrates it, measures, and drops it at the end.

Budget: the page costs the same number of queries at
10,000 keys as at 100. The script exits non-zero when it does not, or when walking the
keyset pages does not visit every live key exactly once. Times are printed as a ratio
measured in the same run, because these machines are noisy; they have no pass mark.
"""

from __future__ import annotations

import html
import random
import re
import statistics
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchdb  # noqa: E402

SIZES = (100, 10_000)
# Another org's keys share the table, as in production, so filtering by org is selective
# and the planner's choice of index means something.
NEIGHBOUR_KEYS = 10_000
REQUESTS = 30
WARMUP = 3
FILTER = "ci-deploy"
NAME_KINDS = ("laptop", "ci-deploy", "backup-agent", "rclone-sync")
INDEX_NAME = "accesskey_live_list_idx"
SLUG = "bench"
SPREAD = timedelta(days=365)
SEED = 20240601

KEY_ID_RE = re.compile(r'id="key-(EXC[A-Z2-7]{17})"')
OLDER_LINK_RE = re.compile(r'<a href="(\?[^"]*after=[^"]*)">Older keys')


@dataclass
class Measurement:
    request: str
    keys_in_org: int
    rows: int
    queries: int
    median_ms: float
    p95_ms: float
    list_sql: str


def make_keys(org, owner, count: int, rng: random.Random, start: int) -> None:
    """Insert keys directly, with properly sealed secrets and created_at spread over a year."""
    from django.utils import timezone

    from keys.credentials import new_access_key_id, new_secret, seal
    from keys.models import AccessKey, CreatedVia, KeyStatus

    now = timezone.now()
    rows = []
    for n in range(start, start + count):
        key_id = new_access_key_id()
        kek_id, sealed = seal(new_secret(), key_id)
        roll = rng.random()
        status = (
            KeyStatus.ACTIVE
            if roll < 0.90
            else KeyStatus.INACTIVE
            if roll < 0.95
            else KeyStatus.REVOKED
        )
        created_at = now - timedelta(seconds=rng.randrange(int(SPREAD.total_seconds())))
        rows.append(
            AccessKey(
                id=key_id,
                org=org,
                name=f"{NAME_KINDS[n % len(NAME_KINDS)]}-{n:05d}",
                secret_sealed=sealed,
                secret_kek_id=kek_id,
                created_at=created_at,
                created_by=owner,
                created_via=CreatedVia.WEB if n % 3 else CreatedVia.API,
                status=status,
                status_changed_at=created_at if status != KeyStatus.ACTIVE else None,
                status_changed_by=owner if status != KeyStatus.ACTIVE else None,
            )
        )
    AccessKey.objects.bulk_create(rows, batch_size=1000)


def analyze() -> None:
    from django.db import connection

    from keys.models import AccessKey

    with connection.cursor() as cursor:
        cursor.execute(f'ANALYZE "{AccessKey._meta.db_table}"')


def list_query(queries: list[dict]) -> str:
    # The page's rows come from the one query that orders keys newest first; the page
    # also counts the keys due soon, which is another query on the same table.
    matches = [
        q["sql"]
        for q in queries
        if 'FROM "keys_accesskey"' in q["sql"]
        and 'ORDER BY "keys_accesskey"."created_at" DESC' in q["sql"]
    ]
    if len(matches) != 1:
        sys.exit(f"expected one list query on keys_accesskey per page, found {len(matches)}")
    return matches[0]


def measure(client, label: str, url: str, keys_in_org: int, problems: list[str]) -> Measurement:
    for _ in range(WARMUP):
        benchdb.timed_get(client, url)
    times, counts, rows, sqls = [], set(), set(), set()
    for _ in range(REQUESTS):
        elapsed, count, queries, body = benchdb.timed_get(client, url)
        times.append(elapsed)
        counts.add(count)
        rows.add(len(KEY_ID_RE.findall(body)))
        sqls.add(list_query(queries))
    if len(counts) != 1:
        problems.append(f"{label} at {keys_in_org} keys: query count varies between requests")
    return Measurement(
        request=label,
        keys_in_org=keys_in_org,
        rows=rows.pop(),
        queries=max(counts),
        median_ms=statistics.median(times),
        p95_ms=statistics.quantiles(times, n=20, method="inclusive")[18],
        list_sql=sqls.pop(),
    )


def walk_pages(client, first_url: str, live: int, problems: list[str]) -> str:
    """Follow the "Older keys" links to the last page; return that page's URL.

    Every live key must appear exactly once on the way, and every page must cost the
    same number of queries.
    """
    url, seen, counts, pages = first_url, [], set(), 0
    while True:
        _, count, _, body = benchdb.timed_get(client, url)
        pages += 1
        counts.add(count)
        seen.extend(KEY_ID_RE.findall(body))
        link = OLDER_LINK_RE.search(body)
        if link is None:
            break
        url = first_url + html.unescape(link.group(1))
    if len(seen) != live or len(set(seen)) != live:
        problems.append(
            f"walking {pages} pages showed {len(seen)} rows ({len(set(seen))} distinct)"
            f" for {live} live keys"
        )
    if len(counts) != 1:
        problems.append(f"query counts differ between keyset pages: {sorted(counts)}")
    print(f"  walked {pages} keyset pages, {len(seen)} rows, queries per page {sorted(counts)}")
    return url


def print_table(results: list[Measurement]) -> None:
    header = (
        f"{'request':<14} {'keys in org':>11} {'rows':>5} {'queries':>7} "
        f"{'median ms':>9} {'p95 ms':>8} {'time ×':>7}"
    )
    print()
    print(f"Dashboard key list, {REQUESTS} requests each (time × = median at 10,000 / at 100 keys)")
    print(header)
    print("-" * len(header))
    base = {r.request: r for r in results if r.keys_in_org == SIZES[0]}
    for r in sorted(results, key=lambda r: (list(base).index(r.request), r.keys_in_org)):
        ratio = (
            "" if r.keys_in_org == SIZES[0] else f"{r.median_ms / base[r.request].median_ms:.2f}"
        )
        print(
            f"{r.request:<14} {r.keys_in_org:>11,} {r.rows:>5} {r.queries:>7} "
            f"{r.median_ms:>9.1f} {r.p95_ms:>8.1f} {ratio:>7}"
        )


def run() -> list[str]:
    benchdb.setup_django()
    from django.test import Client

    from accounts.models import User
    from accounts.services import create_org
    from audit.trail import Actor
    from keys.models import AccessKey

    rng = random.Random(SEED)
    actor = Actor.system("bench/keys_list.py")
    owner = User.objects.create_user(email="owner@bench.test")
    org = create_org(owner, "Bench", actor, slug=SLUG)
    neighbour_owner = User.objects.create_user(email="owner@neighbour.test")
    neighbour = create_org(neighbour_owner, "Neighbour", actor, slug="neighbour")
    make_keys(neighbour, neighbour_owner, NEIGHBOUR_KEYS, rng, start=0)

    # The test client's host must pass ALLOWED_HOSTS without setup_test_environment(),
    # which would instrument template rendering and skew the times.
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(owner)
    base_url = f"/orgs/{SLUG}/keys/"

    problems: list[str] = []
    results: list[Measurement] = []
    made = 0
    for size in SIZES:
        make_keys(org, owner, size - made, rng, start=made)
        made = size
        analyze()
        live = AccessKey.objects.for_org(org).live().count()
        print(f"{size:,} keys in org ({live:,} live), {NEIGHBOUR_KEYS:,} in another org")
        deep_url = walk_pages(client, base_url, live, problems)
        for label, url in (
            ("first page", base_url),
            (f"?q={FILTER}", f"{base_url}?q={FILTER}"),
            ("last page", deep_url),
        ):
            results.append(measure(client, label, url, size, problems))

    print_table(results)

    small = {r.request: r for r in results if r.keys_in_org == SIZES[0]}
    large = {r.request: r for r in results if r.keys_in_org == SIZES[-1]}
    for label, r in large.items():
        if r.queries != small[label].queries:
            problems.append(
                f"{label}: {small[label].queries} queries at {SIZES[0]:,} keys,"
                f" {r.queries} at {SIZES[-1]:,}"
            )

    print(f"\nEXPLAIN (ANALYZE, BUFFERS) of the list query, first page, {SIZES[-1]:,} keys:")
    print(large["first page"].list_sql)
    print(benchdb.explain(large["first page"].list_sql))
    print()
    for label, r in large.items():
        plan = benchdb.explain(r.list_sql)
        uses = "uses" if INDEX_NAME in plan else "does NOT use"
        sort = "; sorts rows (Sort node)" if re.search(r"\bSort\b", plan) else ""
        print(f"{label}: list query {uses} {INDEX_NAME}{sort}")
    return problems


def main() -> int:
    with benchdb.bench_database("bench"):
        problems = run()
    return benchdb.report(problems, "Budget met: constant query count from 100 to 10,000 keys.")


if __name__ == "__main__":
    sys.exit(main())
