"""Dates and cursors a client makes up answer 400/422 (or a form error, or the first page
for a page link), never a 500: extreme UTC offsets, years out of range, NaN and broken
base64 included."""

from __future__ import annotations

import base64
import html
import json
from urllib.parse import urlencode

import pytest
from django.test import Client

from accounts.tokens import create_api_token
from audit.trail import Actor
from keys.models import AccessKey, KeyPolicy

from .conftest import client_for, new_key

KEY_ID = "EXCAAAAAAAAAAAAAAAAA"
# Moments that parse, or nearly do, and overflow or make no sense once in UTC.
MOMENTS = [
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59+00:00",
    "9999-12-31T23:59:59",
    "0001-01-01T00:00:00Z",
    "99999-01-01T00:00:00Z",
    "+275760-09-13T00:00:00Z",
    "2026-13-45T99:99:99Z",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "-1",
    "99999999999999999999",
]
DAYS = ["9999-12-31", "0001-01-01", "99999-01-01", "10000-01-01", "0000-00-00", "NaN"]


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Moments a cursor may hold: far, but with a zone and within the years a datetime holds.
FAR_MOMENTS = {"9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00Z"}
FAR_CURSORS = [b64(f"{m}|{KEY_ID}".encode()) for m in sorted(FAR_MOMENTS)]
# Key list cursors no page handed out: base64 of "<moment>|<key ID>" with a moment out of
# range, and base64 that holds no cursor at all.
CURSORS = [b64(f"{m}|{KEY_ID}".encode()) for m in MOMENTS if m not in FAR_MOMENTS] + [
    "!!!",
    "a",
    "====",
    "A" * 199,
    b64(b"\xff\xfe|x"),
    b64(b"no separator"),
    b64(f"2026-01-01T00:00:00|{KEY_ID}".encode()),
    b64(b"2026-01-01T00:00:00+00:00|not-a-key"),
]
SEQS = ["9" * 30, str(2**63), "-1", "0", "NaN", "inf", "1e309", "0x10", "١٢"]


@pytest.fixture
def token(owner) -> str:
    new_key(owner, "laptop")
    return create_api_token(owner, Actor.for_user(owner.user), "cli").plaintext


def api(token: str, method: str, path: str, body=None, **params):
    return Client().generic(
        method,
        f"/api/v1{path}" + (f"?{urlencode(params)}" if params else ""),
        json.dumps(body) if body is not None else "",
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


def assert_api_refusal(r) -> None:
    assert r.status_code in (400, 422), r.content
    assert r["Content-Type"].startswith("application/json")
    assert r.json()["code"] and r.json()["message"]


# The API


@pytest.mark.parametrize("cursor", CURSORS)
def test_the_key_list_api_refuses_a_cursor_it_did_not_give_out(token, cursor):
    assert_api_refusal(api(token, "GET", "/keys", after=cursor))


@pytest.mark.parametrize("cursor", FAR_CURSORS)
def test_the_key_list_api_pages_from_a_far_but_valid_cursor(token, cursor):
    r = api(token, "GET", "/keys", after=cursor)
    assert r.status_code == 200
    assert [k["name"] for k in r.json()["items"]] in ([], ["laptop"])


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("max_age", [0, 90], ids=["no-max-age", "max-age"])
def test_the_key_create_api_refuses_an_out_of_range_expiry(owner, token, moment, max_age):
    KeyPolicy.objects.update_or_create(org=owner.org, defaults={"max_age_days": max_age})
    r = api(token, "POST", "/keys", {"name": "far", "expires_at": moment})
    assert_api_refusal(r)
    assert not AccessKey.objects.filter(name="far").exists()


@pytest.mark.parametrize("value", [*DAYS, *MOMENTS])
@pytest.mark.parametrize("param", ["from", "to"])
def test_the_audit_api_refuses_out_of_range_dates(token, param, value):
    r = api(token, "GET", "/audit/events", **{param: value})
    # A far but real day is a filter like any other.
    if r.status_code != 200:
        assert_api_refusal(r)


@pytest.mark.parametrize("seq", SEQS)
def test_the_audit_api_refuses_out_of_range_cursors(token, seq):
    assert_api_refusal(api(token, "GET", "/audit/events", before=seq))


# The dashboard


@pytest.mark.parametrize("cursor", CURSORS + FAR_CURSORS)
def test_the_keys_page_shows_the_first_page_for_a_cursor_it_cannot_read(owner, cursor):
    r = client_for(owner).get("/orgs/acme/keys/", {"after": cursor})
    assert r.status_code == 200
    assert "laptop" in r.content.decode() or cursor in FAR_CURSORS
    r = client_for(owner).get("/orgs/acme/keys/", {"after": cursor}, HTTP_HX_REQUEST="true")
    assert r.status_code == 200


@pytest.mark.parametrize("day", DAYS)
@pytest.mark.parametrize("max_age", [0, 90], ids=["no-max-age", "max-age"])
def test_the_key_form_refuses_an_out_of_range_expiry(owner, day, max_age):
    KeyPolicy.objects.update_or_create(org=owner.org, defaults={"max_age_days": max_age})
    r = client_for(owner).post("/orgs/acme/keys/new/", {"name": "far", "expires_on": day})
    assert r.status_code == 400
    page = html.unescape(r.content.decode())
    assert any(
        message in page
        for message in (
            "Enter a valid date",
            "Choose an expiry date in the future",
            "Choose an expiry date within the next 100 years",
            "This organisation keeps keys at most 90 days",
        )
    )
    assert not AccessKey.objects.filter(name="far").exists()
    # The keys page still renders.
    assert client_for(owner).get("/orgs/acme/keys/").status_code == 200


@pytest.mark.parametrize("value", [*DAYS, *MOMENTS])
@pytest.mark.parametrize("param", ["from", "to"])
def test_the_audit_page_and_exports_answer_out_of_range_dates(owner, param, value):
    client = client_for(owner)
    page = client.get("/orgs/acme/audit/", {param: value})
    assert page.status_code in (200, 400)
    if page.status_code == 400:
        assert "as YYYY-MM-DD" in page.content.decode()
    for fmt in ("csv", "jsonl"):
        export = client.get(f"/orgs/acme/audit/export.{fmt}", {param: value})
        assert export.status_code in (200, 400)
        if export.status_code == 200:
            b"".join(export.streaming_content)


@pytest.mark.parametrize("seq", SEQS)
def test_the_audit_page_shows_the_newest_page_for_an_out_of_range_cursor(owner, seq):
    assert client_for(owner).get("/orgs/acme/audit/", {"before": seq}).status_code == 200
