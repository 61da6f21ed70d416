"""Benchmark: the audit page with 1,000,000 events in one org.

Run from the repository root with DATABASE_URL pointing at PostgreSQL::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/excloud .venv/bin/python bench/audit_page.py

The database named in DATABASE_URL is never touched: the script creates its own database
beside it (``<name>_bench_audit_page``), migrates it, fills it, measures, and drops it.

The org under test has 1,000,000 events over a year; a neighbour org has 300,000 more,
interleaved in the same table, so that filtering by org is selective and the planner's
choice of index means something. Each filter is measured on its first page and on a deep
page (a cursor 50 matches from the oldest), REQUESTS requests each.

The rows are loaded with the audit app at migration 0002 (table, first indexes, append-only
triggers); the later migrations then build their indexes over them, as a bulk load would.
``--audit-migration 0002_append_only_triggers`` stops there, to measure without the indexes
added for this page and compare.

Budget: every page costs the same number of queries,
first or deep, filtered or not. The script exits non-zero when a deep page costs more
queries than its first page or a page shows more than 50 rows. Times have no pass mark (these
machines are noisy); those above SLOW_MS get their plan printed.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent))

import audit_fill  # noqa: E402
import benchdb  # noqa: E402

EVENTS = 1_000_000
NEIGHBOUR_EVENTS = 300_000
KEYS = 20_000
NEIGHBOUR_KEYS = 5_000
REQUESTS = 20
WARMUP = 2
# A case slower than this gets fewer samples, so the whole run stays within minutes.
SLOW_SAMPLE_MS = 1000
SLOW_REQUESTS = 5
SLOW_MS = 100
SLUG = "bench"
SEED = 20261127

ROW_RE = re.compile(r'<tr id="event-(\d+)">')


@dataclass
class Measurement:
    case: str
    page: str
    rows: int
    queries: int
    median_ms: float
    samples: int
    events_sql: str
    # The request's slowest query, which is not always the page query (an actor or date
    # filter runs a lookup first).
    slowest_sql: str


def events_query(queries: list[dict]) -> str:
    matches = [
        q["sql"]
        for q in queries
        if 'FROM "audit_auditevent"' in q["sql"] and "LIMIT 51" in q["sql"]
    ]
    if len(matches) != 1:
        sys.exit(f"expected one page query on audit_auditevent, found {len(matches)}")
    return matches[0]


def measure(client, case: str, page: str, url: str) -> Measurement:
    for _ in range(WARMUP):
        first_ms, *_ = benchdb.timed_get(client, url)
    samples = SLOW_REQUESTS if first_ms > SLOW_SAMPLE_MS else REQUESTS
    times, counts, rows, sqls = [], set(), set(), set()
    for _ in range(samples):
        elapsed, count, queries, body = benchdb.timed_get(client, url)
        times.append(elapsed)
        counts.add(count)
        rows.add(len(ROW_RE.findall(body)))
        sqls.add(events_query(queries))
        slowest = max(queries, key=lambda q: float(q["time"]))["sql"]
    return Measurement(
        case=case,
        page=page,
        rows=max(rows),
        queries=max(counts),
        median_ms=statistics.median(times),
        samples=samples,
        events_sql=sqls.pop(),
        slowest_sql=slowest,
    )


def deep_cursor(org, params: dict[str, str]) -> int | None:
    """The `before` that shows the oldest 50 matches, or None when there are fewer than 51."""
    from django.http import QueryDict

    from audit.forms import AuditFilterForm
    from audit.views import PAGE_SIZE

    form = AuditFilterForm(QueryDict(urlencode(params)))
    if not form.is_valid():
        sys.exit(f"bench filter {params} is invalid: {form.errors}")
    seqs = form.to_filter().events(org).order_by("seq").values_list("seq", flat=True)
    found = list(seqs[PAGE_SIZE : PAGE_SIZE + 1])
    return found[0] if found else None


def plan_summary(query: str) -> str:
    """How the page query reads the table: the index scanned, and whether rows are sorted."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + query)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    indexes = re.findall(r"(?:Scan(?: Backward)? using|Bitmap Index Scan on) (\w+)", plan)
    read = ", ".join(dict.fromkeys(indexes))
    if "Seq Scan" in plan:
        read = ", ".join(filter(None, [read, "Seq Scan"]))
    return read + (" + Sort" if re.search(r"\bSort\b", plan) else "")


def index_sizes() -> list[tuple[str, str]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexrelname, pg_size_pretty(pg_relation_size(indexrelid)) "
            "FROM pg_stat_user_indexes WHERE relname = 'audit_auditevent' ORDER BY indexrelname"
        )
        return cursor.fetchall()


def print_table(results: list[Measurement]) -> None:
    header = (
        f"{'filter':<26} {'page':<5} {'rows':>4} {'queries':>7} {'median ms':>9} {'samples':>7}"
        "  page query reads"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        flag = "slow " if r.median_ms > SLOW_MS else ""
        print(
            f"{r.case:<26} {r.page:<5} {r.rows:>4} {r.queries:>7} {r.median_ms:>9.1f}"
            f" {r.samples:>7}  {flag}{plan_summary(r.events_sql)}"
        )


def run(audit_migration: str | None) -> list[str]:
    audit_fill.setup_django()
    from django.test import Client

    from audit.models import AuditEvent
    from keys.models import AccessKey

    rng = random.Random(SEED)
    users = audit_fill.make_users()
    org = audit_fill.make_org(SLUG, users)
    neighbour = audit_fill.make_org("neighbour", users)
    keys = audit_fill.make_keys(org, users[0], KEYS)
    neighbour_keys = audit_fill.make_keys(neighbour, users[0], NEIGHBOUR_KEYS)

    def progress(done: int, total: int, seconds: float) -> None:
        print(f"  {done:,} of {total:,} events in {seconds:.0f} s")

    seconds = audit_fill.fill(
        [
            (audit_fill.Trail(org, users, keys, rng), EVENTS),
            (audit_fill.Trail(neighbour, users, neighbour_keys, rng), NEIGHBOUR_EVENTS),
        ],
        rng,
        progress,
    )
    indexing = audit_fill.finish_load(audit_migration)
    in_org = AuditEvent.objects.filter(org=org).count()
    print(f"filled {in_org:,} events in {SLUG!r} and {NEIGHBOUR_EVENTS:,} more in 'neighbour'")
    print(f"  COPY {seconds:.0f} s; later indexes and ANALYZE {indexing:.0f} s")
    print(f"  audit migration: {audit_migration or 'latest'}; indexes on audit_auditevent:")
    for name, size in index_sizes():
        print(f"    {name:<40} {size:>8}")

    key_id, key_name = keys[4242]
    # A key whose name is a "laptop-..." one: about a quarter of the key events name one.
    week_start = audit_fill.END - audit_fill.SPREAD / 2
    week_end = week_start + timedelta(days=6)
    assert AccessKey.objects.filter(org=org, name=key_name).count() == 1
    cases = [
        ("none", {}),
        ("action, 10% of events", {"action": "access_key.revoked"}),
        ("action, 0.5% of events", {"action": "member.removed"}),
        ("actor, exact", {"actor": audit_fill.user_email(7)}),
        ("actor, prefix", {"actor": "user1"}),
        ("actor, left a year ago", {"actor": audit_fill.LEAVER}),
        ("target, key ID", {"target": key_id}),
        ("target, key name", {"target": key_name}),
        (
            "dates, one week",
            {"from": week_start.date().isoformat(), "to": week_end.date().isoformat()},
        ),
        ("text, common (laptop)", {"q": "laptop"}),
        ("text, rare (part of ID)", {"q": key_id[4:14].lower()}),
        ("text, rare (reason)", {"q": "leaked"}),
        (
            "all of them",
            {
                "actor": "user",
                "action": "access_key.created",
                "target": key_name,
                "from": "2025-01-01",
                "to": "2026-12-31",
                "q": "web",
            },
        ),
    ]

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(users[0])
    base = f"/orgs/{SLUG}/audit/"
    problems: list[str] = []
    results: list[Measurement] = []
    for label, params in cases:
        query = urlencode(params)
        first = measure(client, label, "first", f"{base}?{query}")
        results.append(first)
        cursor = deep_cursor(org, params) if params else 60
        if cursor is None:
            continue
        deep = measure(client, label, "deep", f"{base}?{query}&before={cursor}")
        results.append(deep)
        if deep.queries != first.queries:
            problems.append(f"{label}: {first.queries} queries first, {deep.queries} deep")
        print(f"  measured {label}")
    for r in results:
        if r.rows > 50:
            problems.append(f"{r.case} ({r.page}) showed {r.rows} rows")

    print(f"\nAudit page, {in_org:,} events in the org: median of {REQUESTS} requests")
    print(f"({SLOW_REQUESTS} when a request took over {SLOW_SAMPLE_MS} ms)")
    print_table(results)

    slow = [r for r in results if r.median_ms > SLOW_MS]
    for r in slow:
        print(f"\nEXPLAIN (ANALYZE, BUFFERS), {r.case}, {r.page} page ({r.median_ms:.0f} ms),")
        print("of the request's slowest query:")
        print(r.slowest_sql)
        print(benchdb.explain(r.slowest_sql))
    if not slow:
        print(f"\nNo page took over {SLOW_MS} ms. The plan of the slowest:")
        worst = max(results, key=lambda r: r.median_ms)
        print(f"{worst.case}, {worst.page} page:")
        print(benchdb.explain(worst.events_sql))
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--audit-migration",
        help="migrate the audit app back to this migration before filling (e.g. 0002...)",
    )
    args = parser.parse_args()
    began = time.perf_counter()
    with benchdb.bench_database("bench_audit_page"):
        problems = run(args.audit_migration)
    print(f"\nwhole run: {time.perf_counter() - began:.0f} s")
    return benchdb.report(problems, "Budget met: every page costs the same queries, first or deep.")


if __name__ == "__main__":
    sys.exit(main())
