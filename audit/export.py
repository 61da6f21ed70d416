"""Audit events as CSV and as JSON Lines, produced a batch of rows at a time.

Both formats hold the same fields, so either can be checked against the hash chain.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from itertools import islice
from typing import Any

FIELDS = (
    "seq",
    "occurred_at",
    "actor_type",
    "actor_user_id",
    "actor_label",
    "action",
    "target_type",
    "target_id",
    "source_ip",
    "user_agent",
    "request_id",
    "details",
    "prev_hash",
    "hash",
)
FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",
}
# Rows per chunk of the response: large enough that a chunk is a few hundred kilobytes at
# most and small enough to keep memory flat.
ROWS_PER_CHUNK = 500
# A spreadsheet treats a cell that starts with one of these as a formula, also after
# leading spaces, and some read the full-width forms as the ASCII ones. Actor labels, key
# names and user agents are typed by users, so such cells are turned into plain text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# What may stand before a formula's first character: every Unicode space (str.isspace)
# and the invisible ones that are not spaces to Python.
INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"


def neutralised(value: str) -> str:
    """The value, prefixed with an apostrophe if a spreadsheet would read it as a formula."""
    start = 0
    while (
        start < len(value)
        and value[start] not in "\t\r"
        and (value[start].isspace() or value[start] in INVISIBLE)
    ):
        start += 1
    return "'" + value if value.startswith(FORMULA_STARTS, start) else value


def _record(row: tuple) -> dict[str, Any]:
    record = dict(zip(FIELDS, row, strict=True))
    occurred_at: datetime = record["occurred_at"]
    record["occurred_at"] = occurred_at.astimezone(UTC).isoformat(timespec="microseconds")
    return record


def _batches(rows: Iterable[tuple]) -> Iterator[list[tuple]]:
    rows = iter(rows)
    while batch := list(islice(rows, ROWS_PER_CHUNK)):
        yield batch


def csv_chunks(rows: Iterable[tuple]) -> Iterator[str]:
    """A header line, then the rows; every text cell safe to open in a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(FIELDS)
    for batch in _batches(rows):
        for row in batch:
            record = _record(row)
            record["details"] = json.dumps(record["details"], ensure_ascii=False, sort_keys=True)
            writer.writerow(
                neutralised(v) if isinstance(v, str) else ("" if v is None else v)
                for v in record.values()
            )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()


def jsonl_chunks(rows: Iterable[tuple]) -> Iterator[str]:
    """One JSON object per line, the values exactly as stored."""
    for batch in _batches(rows):
        yield "".join(json.dumps(_record(row), ensure_ascii=False) + "\n" for row in batch)
