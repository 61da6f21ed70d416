"""Shared by the benchmarks: a throw-away database beside DATABASE_URL's, and query capture.

Not a benchmark itself. ``bench_database(suffix)`` creates ``<name>_<suffix>`` beside the
database named in DATABASE_URL (which is never touched), points Django at it, and drops it
at the end; ``setup_django()`` then sets Django up on it and migrates.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def bench_urls(database_url: str, suffix: str) -> tuple[str, str, str]:
    """Return (bench database URL, maintenance URL, bench database name)."""
    parts = urlsplit(database_url)
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        sys.exit(f"DATABASE_URL must point at PostgreSQL, got scheme {parts.scheme!r}")
    name = parts.path.lstrip("/")
    if not name:
        sys.exit("DATABASE_URL names no database")
    bench_name = f"{name}_{suffix}"
    bench = urlunsplit(parts._replace(path=f"/{bench_name}"))
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    return bench, maintenance, bench_name


def recreate_database(maintenance_url: str, name: str, create: bool) -> None:
    with psycopg.connect(maintenance_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        if create:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


@contextmanager
def bench_database(suffix: str) -> Iterator[None]:
    """Point Django at a fresh database beside DATABASE_URL's, and drop it afterwards."""
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url:
        sys.exit("Set DATABASE_URL to a PostgreSQL database; the bench runs beside it.")
    bench_url, maintenance_url, bench_name = bench_urls(database_url, suffix)
    print(f"bench database: {bench_name} (dropped at the end)")
    recreate_database(maintenance_url, bench_name, create=True)
    os.environ["DATABASE_URL"] = bench_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "excloud_portal.settings")
    try:
        yield
    finally:
        if "django" in sys.modules:
            from django.db import connections

            connections.close_all()
        recreate_database(maintenance_url, bench_name, create=False)


def setup_django() -> None:
    """Set Django up on the bench database and migrate it."""
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    # One connection for the whole run: a reconnect every CONN_MAX_AGE seconds would land
    # in some samples and say nothing about what is measured.
    settings.DATABASES["default"]["CONN_MAX_AGE"] = None
    call_command("migrate", verbosity=0)


def timed_get(client, url: str) -> tuple[float, int, list[dict], str]:
    """One request: (milliseconds, query count, the queries with their times, body)."""
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    # The query log keeps at most 9,000 entries; once full, a capture would come back empty.
    reset_queries()
    with CaptureQueriesContext(connection) as ctx:
        start = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - start) * 1000
    if response.status_code != 200:
        sys.exit(f"GET {url} answered {response.status_code}")
    return elapsed, len(ctx.captured_queries), ctx.captured_queries, response.content.decode()


def explain(query: str) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of a query, as text."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query)
        return "\n".join(row[0] for row in cursor.fetchall())


def report(problems: list[str], met: str) -> int:
    """Print the budget's outcome; the script's exit status."""
    if problems:
        print("\nBUDGET FAILED:")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print(f"\n{met}")
    return 0
