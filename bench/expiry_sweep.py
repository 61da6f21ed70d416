"""Benchmark: the expiry sweep over 10,000 and over 100,000 keys, 10,000 of them due.

Run from the repository root with DATABASE_URL pointing at PostgreSQL::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/excloud .venv/bin/python bench/expiry_sweep.py

The database named in DATABASE_URL is never touched: the script creates its own database
beside it (``<name>_bench_expiry``), migrates it, measures, and drops it at the end.

Budget: the sweep is batched and its query count does
not depend on how many keys exist, only on how many are due. The script exits non-zero
when the count differs between the two sizes or when a due key is left unexpired.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchdb  # noqa: E402

TOTALS = (10_000, 100_000)
DUE = 10_000
ORGS = 20


def fill(orgs, owner, total: int) -> None:
    """Replace all keys with ``total`` keys spread over the orgs, ``DUE`` of them due:
    a third each stale, past their expiry date and too old (one org caps key age)."""
    from django.db import connection
    from django.utils import timezone

    from keys.credentials import new_access_key_id, new_secret, seal
    from keys.models import AccessKey, CreatedVia

    AccessKey.objects.all().delete()
    now = timezone.now()
    # Sealing is not what is measured; one sealed secret serves every row's bytes.
    kek_id, sealed = seal(new_secret(), "EXCBENCHBENCHBENCHBE")
    rows = []
    for n in range(total):
        org = orgs[n % len(orgs)]
        fields = {"created_at": now - timedelta(days=10), "last_used_at": now}
        if n < DUE:
            kind = n % 3
            if kind == 0:
                fields = {"created_at": now - timedelta(days=200), "last_used_at": None}
            elif kind == 1:
                fields["expires_at"] = now - timedelta(hours=1)
            else:
                # Too old only in the org with a maximum age; elsewhere it is past expiry.
                fields["created_at"] = now - timedelta(days=400)
                if org is not orgs[0]:
                    fields["expires_at"] = now - timedelta(minutes=5)
        rows.append(
            AccessKey(
                id=new_access_key_id(),
                org=org,
                name=f"key-{n:06d}",
                secret_sealed=sealed,
                secret_kek_id=kek_id,
                created_by=owner,
                created_via=CreatedVia.API,
                **fields,
            )
        )
    AccessKey.objects.bulk_create(rows, batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute('ANALYZE "keys_accesskey"')


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def run() -> list[str]:
    benchdb.setup_django()
    from django.db import connection
    from django.utils import timezone

    from accounts.models import User
    from accounts.services import create_org
    from audit.trail import Actor
    from keys import expiry
    from keys.models import AccessKey, KeyPolicy, KeyStatus

    actor = Actor.system("bench/expiry_sweep.py")
    owner = User.objects.create_user(email="owner@bench.test")
    orgs = [create_org(owner, f"Bench {i}", actor, slug=f"bench-{i}") for i in range(ORGS)]
    KeyPolicy.objects.create(org=orgs[0], max_age_days=365)

    problems: list[str] = []
    results = []
    for total in TOTALS:
        fill(orgs, owner, total)
        due = expiry.due_keys(timezone.now()).count()
        # Counted through an execute wrapper: Django's query log keeps only 9,000 entries.
        counter = QueryCounter()
        with connection.execute_wrapper(counter):
            start = time.perf_counter()
            expired = expiry.expire_due_keys()
            elapsed = time.perf_counter() - start
        queries = counter.count
        results.append((total, due, expired, queries, elapsed))
        left = expiry.due_keys(timezone.now()).count()
        if expired != DUE or due != DUE or left:
            problems.append(f"{total:,} keys: {due} due, {expired} expired, {left} left")
        if AccessKey.objects.filter(status=KeyStatus.EXPIRED).count() != DUE:
            problems.append(f"{total:,} keys: expired count is not {DUE}")

    print(f"\nExpiry sweep, {DUE:,} due keys, batches of {expiry.SWEEP_BATCH}")
    header = f"{'keys':>8} {'due':>7} {'expired':>7} {'queries':>8} {'seconds':>8} {'ms/key':>7}"
    print(header)
    print("-" * len(header))
    for total, due, expired, queries, elapsed in results:
        print(
            f"{total:>8,} {due:>7,} {expired:>7,} {queries:>8,} {elapsed:>8.2f}"
            f" {elapsed * 1000 / max(expired, 1):>7.3f}"
        )
    if results[0][3] != results[1][3]:
        problems.append(
            f"query count grew with the number of keys: {results[0][3]} at {TOTALS[0]:,},"
            f" {results[1][3]} at {TOTALS[1]:,}"
        )
    return problems


def main() -> int:
    os.environ.pop("REDIS_URL", None)
    with benchdb.bench_database("bench_expiry"):
        problems = run()
    return benchdb.report(
        problems, "Budget met: the sweep's query count does not grow with the number of keys."
    )


if __name__ == "__main__":
    sys.exit(main())
