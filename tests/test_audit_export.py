"""CSV exports open in a spreadsheet as text: no cell is read as a formula."""

from __future__ import annotations

import csv
import io

import pytest
from django.db import transaction

from audit.export import neutralised
from audit.models import ActorType
from audit.trail import Actor, record

from .conftest import client_for

CSV_EXPORT = "/orgs/acme/audit/export.csv"

# Rows: (stored value, CSV cell). Each formula start, alone, behind spaces of every kind and
# behind invisible characters, in ASCII and full width.
NASTY = [
    ("=1+1", "'=1+1"),
    ("+1", "'+1"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"),
    ("\tplain", "'\tplain"),
    ("\rplain", "'\rplain"),
    (" =1+1", "' =1+1"),
    ("   +1", "'   +1"),
    ("\n=1", "'\n=1"),
    ("  \t-1", "'  \t-1"),
    ("\u00a0=1", "'\u00a0=1"),
    ("\u3000=1", "'\u3000=1"),
    ("\u2003@x", "'\u2003@x"),
    ("\u200b=1", "'\u200b=1"),
    ("\ufeff=1", "'\ufeff=1"),
    ("\uff1dcmd|' /C calc'!A0", "'\uff1dcmd|' /C calc'!A0"),
    ("\uff0b1", "'\uff0b1"),
    ("\uff0d1", "'\uff0d1"),
    ("\uff20SUM(A1)", "'\uff20SUM(A1)"),
    (" \uff1d1", "' \uff1d1"),
    # Text that only contains a formula character elsewhere stays as it is.
    ("laptop", "laptop"),
    ("a=b", "a=b"),
    ("owner@acme.test", "owner@acme.test"),
    ("  spaced", "  spaced"),
    ("", ""),
]


@pytest.mark.parametrize(("value", "cell"), NASTY)
def test_it_neutralises_every_formula_start(value, cell):
    assert neutralised(value) == cell


@pytest.mark.parametrize(("value", "cell"), NASTY, ids=[repr(v) for v, _ in NASTY])
def test_it_neutralises_formulas_in_exported_cells(everyone, value, cell):
    org = everyone["owner"].org
    with transaction.atomic():
        record(
            Actor(ActorType.USER, value or "empty", user_agent=value),
            "access_key.created",
            org=org,
            target_type="access_key",
            target_id="EXCAAAAAAAAAAAAAAAAA",
            details={"name": value},
        )
    r = client_for(everyone["owner"]).get(CSV_EXPORT)
    assert r.status_code == 200
    body = b"".join(r.streaming_content).decode()
    # The event just recorded is the org's only one (the export's own is not in it).
    (row,) = csv.DictReader(io.StringIO(body, newline=""))
    assert row["user_agent"] == cell
    assert row["actor_label"] == (cell if value else "empty")
