"""The audit page and its exports: who may read them, what each filter finds, paging, bad
input, the CSV and JSON Lines files, and the event every export writes about itself."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import Membership
from audit.chain import append
from audit.export import FIELDS
from audit.models import ActorType, AuditEvent
from audit.trail import Actor, record
from keys.models import AccessKey
from keys.services import deactivate_key, revoke_key

from .conftest import audit_mark, client_for, events_since, new_key

PAGE = "/orgs/acme/audit/"
EXPORTS = {"csv": "/orgs/acme/audit/export.csv", "jsonl": "/orgs/acme/audit/export.jsonl"}
IP = "198.51.100.23"
HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "audit-table"}
OK = "ok"
LOGIN = "login"
SEQ_RE = re.compile(r'<tr id="event-(\d+)">')
OLDER_RE = re.compile(r'<a href="(\?[^"]*before=[^"]*)"[^>]*>Older events')
READERS = ["owner", "admin", "auditor"]
ROLE_MATRIX = [
    ("owner", OK),
    ("admin", OK),
    ("auditor", OK),
    ("member", 403),
    ("outsider", 404),
    ("anonymous", LOGIN),
]


def client_as(everyone: dict[str, Membership], who: str) -> Client:
    return Client() if who == "anonymous" else client_for(everyone[who])


@dataclass
class History:
    laptop: AccessKey  # revoked
    ci_deploy: AccessKey  # a member's, deactivated by an admin
    laptop_again: AccessKey  # live, the same name as the revoked one
    neighbours_laptop: AccessKey  # another org's key of the same name


@pytest.fixture
def history(everyone) -> History:
    """A short, mixed trail in Acme, and a key of the same name in the other org."""
    owner, admin, member = everyone["owner"], everyone["admin"], everyone["member"]
    laptop, _ = new_key(owner, "laptop")
    ci_deploy, _ = new_key(member, "ci-deploy")
    deactivate_key(admin, Actor.for_user(admin.user), ci_deploy)
    revoke_key(owner, Actor.for_user(owner.user), laptop, "lost on a train")
    laptop_again, _ = new_key(owner, "laptop")
    with transaction.atomic():
        record(
            Actor.for_user(admin.user),
            "member.invited",
            org=owner.org,
            target_type="invitation",
            target_id="7",
            details={"email": "new.hire@acme.test", "role": "member"},
        )
    neighbours_laptop, _ = new_key(everyone["outsider"], "laptop")
    return History(laptop, ci_deploy, laptop_again, neighbours_laptop)


def seqs(response) -> list[int]:
    assert response.status_code == 200
    return [int(s) for s in SEQ_RE.findall(response.content.decode())]


def org_seqs(org, **filters) -> list[int]:
    """The org's events with these exact field values, newest first: what a filter must show."""
    events = AuditEvent.objects.filter(org=org, **filters).order_by("-seq")
    return list(events.values_list("seq", flat=True))


def add_event(org, action: str = "access_key.created", *, at=None, **fields) -> AuditEvent:
    """Append an event stamped at a chosen time (record() always stamps now)."""
    event = AuditEvent(
        org=org,
        actor_type=ActorType.SYSTEM,
        actor_label=fields.pop("actor_label", "robot"),
        action=action,
        **fields,
    )
    with transaction.atomic():
        return append(event, at=at)


def system_event(org, action: str = "access_key.created", **fields) -> AuditEvent:
    with transaction.atomic():
        return record(Actor.system(fields.pop("label", "robot")), action, org=org, **fields)


def download(response) -> str:
    assert response.streaming
    return b"".join(response.streaming_content).decode()


def csv_rows(response) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(download(response))))


def jsonl_rows(response) -> list[dict]:
    return [json.loads(line) for line in download(response).splitlines()]


# Who may read


@pytest.mark.parametrize(("who", "expected"), ROLE_MATRIX)
def test_it_shows_the_page_by_role(everyone, history, who, expected):
    r = client_as(everyone, who).get(PAGE)
    if expected == OK:
        assert r.status_code == 200
        assert seqs(r) == org_seqs(everyone["owner"].org)
    elif expected == LOGIN:
        assert r.status_code == 302
        assert r["Location"].startswith("/accounts/login/?next=")
    else:
        assert r.status_code == expected


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize(("who", "expected"), ROLE_MATRIX)
def test_it_exports_by_role(everyone, history, who, expected, fmt):
    mark = audit_mark()
    r = client_as(everyone, who).get(EXPORTS[fmt], REMOTE_ADDR=IP)
    if expected == OK:
        assert r.status_code == 200
        download(r)
        assert [(e.action, e.actor_user_id) for e in events_since(mark)] == [
            ("audit.exported", everyone[who].user_id)
        ]
        return
    if expected == LOGIN:
        assert r.status_code == 302
        assert r["Location"].startswith("/accounts/login/?next=")
    else:
        assert r.status_code == expected
    assert events_since(mark) == []


@pytest.mark.parametrize(("who", "shown"), [*((w, True) for w in READERS), ("member", False)])
def test_it_links_the_audit_log_only_for_those_who_may_read_it(everyone, who, shown):
    r = client_as(everyone, who).get("/orgs/acme/keys/")
    assert ('href="/orgs/acme/audit/"' in r.content.decode()) is shown


# What the page shows


def test_it_lists_the_orgs_events_newest_first_and_no_one_elses(everyone, history):
    acme, globex = everyone["owner"].org, everyone["outsider"].org
    r = client_for(everyone["auditor"]).get(PAGE)
    shown = seqs(r)
    assert shown == org_seqs(acme)
    assert len(shown) == 6
    assert history.neighbours_laptop.pk not in r.content.decode()
    # The other org's own page shows its own events only.
    r = client_for(everyone["outsider"]).get("/orgs/globex/audit/")
    assert seqs(r) == org_seqs(globex)
    assert history.laptop.pk not in r.content.decode()


def test_it_links_the_orgs_keys_and_shows_actor_ip_and_details(everyone, history):
    owner = everyone["owner"]
    with transaction.atomic():
        record(
            Actor("user", owner.user.email, owner.user_id, ip=IP),
            "access_key.deactivated",
            org=owner.org,
            target_type="access_key",
            target_id=history.laptop_again.pk,
            details={"name": "laptop", "from": ["active"], "to": "inactive"},
        )
    body = client_for(owner).get(PAGE).content.decode()
    row = body[body.index('<tr id="event-7">') :].split("</tr>")[0]
    assert f'href="/orgs/acme/keys/{history.laptop_again.pk}/"' in row
    assert IP in row
    assert "owner@acme.test" in row
    assert "access_key.deactivated" in row
    assert "from: active · name: laptop · to: inactive" in html.unescape(row)
    # An invitation is shown as what it is, without a key link.
    row = body[body.index('<tr id="event-6">') :].split("</tr>")[0]
    assert "invitation" in row and "/keys/" not in row


def test_it_swaps_only_the_table_for_htmx(everyone, history):
    r = client_for(everyone["owner"]).get(PAGE + "?action=access_key.revoked", **HTMX)
    body = r.content.decode()
    assert r.status_code == 200
    assert body.lstrip().startswith('<div id="audit-table">')
    assert "<html" not in body
    assert seqs(r) == [4]
    assert "/orgs/acme/audit/export.csv?action=access_key.revoked" in body


def test_it_says_so_when_nothing_matches(everyone, history):
    r = client_for(everyone["owner"]).get(PAGE + "?actor=nobody@")
    assert seqs(r) == []
    assert "No events match these filters." in r.content.decode()


def test_it_says_so_when_the_org_has_no_events_yet(everyone):
    r = client_for(everyone["owner"]).get(PAGE)
    assert seqs(r) == []
    assert "No events yet." in r.content.decode()


# Filters


@pytest.mark.parametrize(
    ("actor", "label"),
    [
        ("admin@acme.test", "admin@acme.test"),
        ("ADMIN@Acme.Test", "admin@acme.test"),
        ("admin@", "admin@acme.test"),
        ("memb", "member@acme.test"),
    ],
)
def test_it_filters_by_actor_exactly_or_by_prefix(everyone, history, actor, label):
    r = client_for(everyone["owner"]).get(PAGE, {"actor": actor})
    expected = org_seqs(everyone["owner"].org, actor_label=label)
    assert expected and seqs(r) == expected


@pytest.mark.parametrize(
    ("actor", "labels"),
    [
        ("sam@acme.test", ["sam@acme.test"]),
        ("SAM@ACME.TEST", ["sam@acme.test"]),
        ("sam@", ["sam@acme.test", "sam@acme.test.example"]),
        ("sam@acme.test.", ["sam@acme.test.example"]),
    ],
)
def test_it_prefers_an_exact_actor_to_a_prefix(everyone, actor, labels):
    org = everyone["owner"].org
    made = {}
    for label in ["sam@acme.test", "sam@acme.test.example", "sam@acme.test", "samuel@acme.test"]:
        made.setdefault(label, []).insert(0, system_event(org, label=label).seq)
    expected = sorted((seq for label in labels for seq in made[label]), reverse=True)
    assert seqs(client_for(everyone["owner"]).get(PAGE, {"actor": actor})) == expected


def test_it_matches_actors_by_prefix_only(everyone, history):
    r = client_for(everyone["owner"]).get(PAGE, {"actor": "acme.test"})
    assert seqs(r) == []


@pytest.mark.parametrize(
    "action", ["access_key.created", "access_key.deactivated", "member.invited"]
)
def test_it_filters_by_action(everyone, history, action):
    r = client_for(everyone["owner"]).get(PAGE, {"action": action})
    expected = org_seqs(everyone["owner"].org, action=action)
    assert expected and seqs(r) == expected


@pytest.mark.parametrize("transform", [str, str.lower])
def test_it_filters_by_key_id(everyone, history, transform):
    key = history.ci_deploy
    r = client_for(everyone["owner"]).get(PAGE, {"target": transform(key.pk)})
    # Created, then deactivated.
    assert seqs(r) == [3, 2]


@pytest.mark.parametrize("name", ["laptop", "LAPTOP"])
def test_it_filters_by_key_name_over_live_and_retired_keys_of_the_org(everyone, history, name):
    r = client_for(everyone["owner"]).get(PAGE, {"target": name})
    # The revoked laptop (created, revoked) and the new one; not the other org's laptop.
    assert seqs(r) == [5, 4, 1]
    assert history.neighbours_laptop.pk not in r.content.decode()


@pytest.mark.parametrize("target", ["no-such-key", "EXCAAAAAAAAAAAAAAAAA"])
def test_it_finds_nothing_for_an_unknown_key(everyone, history, target):
    assert seqs(client_for(everyone["owner"]).get(PAGE, {"target": target})) == []


def test_it_finds_nothing_for_another_orgs_key(everyone, history):
    key_id = history.neighbours_laptop.pk
    assert seqs(client_for(everyone["owner"]).get(PAGE, {"target": key_id})) == []


def d(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def dated(everyone) -> None:
    """Events around 10–20 January 2026 (seq = position + 1), two stamped out of seq order
    by a few minutes, as when an append waits for the chain's lock."""
    org = everyone["owner"].org
    for at in [
        d(2026, 1, 1),  # 1
        d(2026, 1, 9, 23, 59, 59, 999999),  # 2: the last instant before the range
        d(2026, 1, 10),  # 3: the first instant in it
        d(2026, 1, 9, 23, 55),  # 4: before the range, though after #3 in the chain
        d(2026, 1, 15, 12),  # 5
        d(2026, 1, 20, 23, 59, 59, 999999),  # 6: the last instant in the range
        d(2026, 1, 21),  # 7: the first instant after it
        d(2026, 1, 20, 23, 50),  # 8: in the range, though after #7 in the chain
        d(2026, 2, 1),  # 9
    ]:
        add_event(org, at=at)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"from": "2026-01-10", "to": "2026-01-20"}, [8, 6, 5, 3]),
        ({"from": "2026-01-10"}, [9, 8, 7, 6, 5, 3]),
        ({"to": "2026-01-20"}, [8, 6, 5, 4, 3, 2, 1]),
        ({"from": "2026-01-21", "to": "2026-01-21"}, [7]),
        ({"from": "2026-01-09", "to": "2026-01-09"}, [4, 2]),
        ({"from": "2026-03-01"}, []),
        ({"to": "2025-12-31"}, []),
        ({"from": "0001-01-01", "to": "9999-12-31"}, [9, 8, 7, 6, 5, 4, 3, 2, 1]),
    ],
)
def test_it_filters_by_dates_inclusive_in_utc(everyone, dated, params, expected):
    assert seqs(client_for(everyone["owner"]).get(PAGE, params)) == expected


def test_it_filters_by_dates_in_the_export_too(everyone, dated):
    r = client_for(everyone["owner"]).get(
        EXPORTS["jsonl"], {"from": "2026-01-10", "to": "2026-01-20"}
    )
    assert [row["seq"] for row in jsonl_rows(r)] == [8, 6, 5, 3]


@pytest.fixture
def texts(everyone) -> dict[str, int]:
    """Events whose details hold characters that LIKE and JSON treat specially."""
    org = everyone["owner"].org
    made = {}
    for name, details in [
        ("percent", {"note": "100% done"}),
        ("digits", {"note": "1000 done"}),
        ("underscore", {"note": "a_b"}),
        ("letters", {"note": "axb"}),
        ("quote", {"name": 'O"Brien'}),
        ("backslash", {"path": "C:\\keys"}),
        ("accent", {"note": "École"}),
    ]:
        made[name] = system_event(org, "member.invited", details=details).seq
    made["label"] = system_event(org, label="Nightly-Expiry").seq
    made["target"] = system_event(
        org, "access_key.revoked", target_type="access_key", target_id="EXCTARGETTARGET23456"
    ).seq
    return made


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("100%", ["percent"]),
        ("00 done", ["digits"]),
        ("a_b", ["underscore"]),
        ('O"Brien', ["quote"]),
        ('"name"', []),
        ("C:\\keys", ["backslash"]),
        ("école", ["accent"]),
        ("nightly-exp", ["label"]),
        ("targettarget", ["target"]),
        ("revoked", ["target"]),
        ("invited", ["percent", "digits", "underscore", "letters", "quote", "backslash", "accent"]),
    ],
)
def test_it_searches_action_actor_target_and_details_literally(everyone, texts, text, names):
    r = client_for(everyone["owner"]).get(PAGE, {"q": text})
    assert seqs(r) == sorted((texts[n] for n in names), reverse=True)


def test_it_searches_details_of_real_events(everyone, history):
    r = client_for(everyone["owner"]).get(PAGE, {"q": "lost on a train"})
    assert seqs(r) == [4]


def test_it_combines_filters(everyone, history):
    r = client_for(everyone["owner"]).get(
        PAGE, {"actor": "owner@", "action": "access_key.created", "target": "laptop"}
    )
    assert seqs(r) == [5, 1]
    r = client_for(everyone["owner"]).get(PAGE, {"actor": "owner@", "q": "lost"})
    assert seqs(r) == [4]


# Paging


def follow(client: Client, params: dict) -> tuple[list[int], int]:
    """Walk the "Older events" links from the first page: (every seq shown, pages)."""
    r = client.get(PAGE, params)
    shown, pages = seqs(r), 1
    while link := OLDER_RE.search(r.content.decode()):
        r = client.get(PAGE + html.unescape(link.group(1)))
        shown += seqs(r)
        pages += 1
    return shown, pages


def test_it_walks_every_event_exactly_once(everyone):
    org = everyone["owner"].org
    for n in range(130):
        system_event(org, "access_key.created" if n % 2 else "member.invited")
    shown, pages = follow(client_for(everyone["owner"]), {})
    assert shown == list(range(130, 0, -1))
    assert pages == 3
    shown, pages = follow(client_for(everyone["owner"]), {"action": "member.invited"})
    assert shown == org_seqs(org, action="member.invited")
    assert len(shown) == 65 and pages == 2


def test_it_stops_at_exactly_one_full_page(everyone):
    org = everyone["owner"].org
    for _ in range(50):
        system_event(org)
    r = client_for(everyone["owner"]).get(PAGE)
    assert len(seqs(r)) == 50
    assert OLDER_RE.search(r.content.decode()) is None


def test_it_pages_within_the_org(everyone, history):
    # A cursor is only a seq: it cannot reach into another org's events.
    r = client_for(everyone["owner"]).get(PAGE, {"before": 100})
    assert seqs(r) == org_seqs(everyone["owner"].org)


# Bad input


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({"from": "yesterday"}, 400, "Enter the start date as YYYY-MM-DD."),
        ({"to": "2026-02-30"}, 400, "Enter the end date as YYYY-MM-DD."),
        ({"from": "99999-01-01"}, 400, "Enter the start date as YYYY-MM-DD."),
        ({"from": "2026-02-01", "to": "2026-01-01"}, 400, "The start date is after the end date."),
        ({"q": "x" * 101}, 400, "at most 100 characters"),
        ({"actor": "x" * 255}, 400, "at most 254 characters"),
        ({"target": "x" * 65}, 400, "at most 64 characters"),
        ({"q": "nul\x00"}, 400, "Null characters are not allowed."),
        ({"actor": "nul\x00"}, 400, "Null characters are not allowed."),
        ({"action": "access_key.exploded"}, 400, "Select a valid choice."),
        ({"before": "abc"}, 200, ""),
        ({"before": "-5"}, 200, ""),
        ({"before": "9" * 30}, 200, ""),
        ({"before": "1" * 5000}, 200, ""),
        ({"q": "%"}, 200, ""),
        ({"q": "'; DROP TABLE audit_auditevent; --"}, 200, ""),
    ],
)
def test_it_answers_bad_filters_with_a_message(everyone, history, params, status, message):
    client = client_for(everyone["owner"])
    r = client.get(PAGE, params)
    assert r.status_code == status
    if message:
        assert message in html.unescape(r.content.decode())
        assert "Fix the filters above to see events." in r.content.decode()
    # Through htmx the same problem comes back inline, with 200 as the swap needs.
    r = client.get(PAGE, params, **HTMX)
    assert r.status_code == 200
    if message:
        assert message in html.unescape(r.content.decode())


def test_it_shows_the_newest_page_for_a_malformed_cursor(everyone, history):
    r = client_for(everyone["owner"]).get(PAGE, {"before": "abc"})
    assert seqs(r) == org_seqs(everyone["owner"].org)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_it_refuses_an_export_with_bad_filters_and_records_nothing(everyone, history, fmt):
    mark = audit_mark()
    r = client_for(everyone["owner"]).get(EXPORTS[fmt], {"from": "2026-13-01"})
    assert r.status_code == 400
    assert "Enter the start date as YYYY-MM-DD." in r.content.decode()
    assert events_since(mark) == []


# Exports


def expected_row(event: AuditEvent) -> dict:
    return {
        "seq": event.seq,
        "occurred_at": event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_type": event.actor_type,
        "actor_user_id": event.actor_user_id,
        "actor_label": event.actor_label,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "source_ip": event.source_ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "details": event.details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def with_dates_around(request):
    """The response and the UTC dates from just before to just after it: an export made
    across midnight may carry either day's date in its name, and no other."""
    before = timezone.now().date()
    response = request()
    after = timezone.now().date()
    return response, {before.isoformat(), after.isoformat()}


def test_it_exports_the_filtered_events_as_csv(everyone, history):
    org = everyone["owner"].org
    r, days = with_dates_around(
        lambda: client_for(everyone["auditor"]).get(
            EXPORTS["csv"], {"action": "access_key.created"}
        )
    )
    assert r["Content-Type"] == "text/csv; charset=utf-8"
    assert r["Content-Disposition"] in {
        f'attachment; filename="acme-audit-{day}.csv"' for day in days
    }
    rows = csv_rows(r)
    assert list(rows[0]) == list(FIELDS)
    events = list(AuditEvent.objects.filter(org=org, action="access_key.created").order_by("-seq"))
    assert len(rows) == len(events) == 3
    for row, event in zip(rows, events, strict=True):
        expected = {
            k: "" if v is None else str(v) for k, v in expected_row(event).items() if k != "details"
        }
        assert {k: v for k, v in row.items() if k != "details"} == expected
        assert json.loads(row["details"]) == event.details


def test_it_exports_the_filtered_events_as_json_lines(everyone, history):
    org = everyone["owner"].org
    r, days = with_dates_around(
        lambda: client_for(everyone["auditor"]).get(EXPORTS["jsonl"], {"target": "laptop"})
    )
    assert r["Content-Type"] == "application/x-ndjson; charset=utf-8"
    assert r["Content-Disposition"] in {
        f'attachment; filename="acme-audit-{day}.jsonl"' for day in days
    }
    events = AuditEvent.objects.filter(
        org=org, target_id__in=[history.laptop.pk, history.laptop_again.pk]
    ).order_by("-seq")
    assert jsonl_rows(r) == [expected_row(e) for e in events]


def test_it_exports_everything_without_filters_and_nothing_of_other_orgs(everyone, history):
    expected = org_seqs(everyone["owner"].org)
    rows = jsonl_rows(client_for(everyone["owner"]).get(EXPORTS["jsonl"]))
    assert [row["seq"] for row in rows] == expected
    assert history.neighbours_laptop.pk not in {row["target_id"] for row in rows}


def test_it_neutralises_formulas_in_csv_cells(everyone):
    org = everyone["owner"].org
    evil = Actor(
        ActorType.USER,
        '=HYPERLINK("http://evil.test","click")',
        ip=IP,
        user_agent="-2+3",
        request_id="@SUM(A1)",
    )
    with transaction.atomic():
        record(
            evil,
            "access_key.created",
            org=org,
            target_type="access_key",
            target_id="+cmd|' /C calc'!A0",
            details={"name": "=1+1"},
        )
    rows = csv_rows(client_for(everyone["owner"]).get(EXPORTS["csv"]))
    row = rows[0]
    assert row["actor_label"] == "'" + '=HYPERLINK("http://evil.test","click")'
    assert row["target_id"] == "'+cmd|' /C calc'!A0"
    assert row["user_agent"] == "'-2+3"
    assert row["request_id"] == "'@SUM(A1)"
    assert json.loads(row["details"]) == {"name": "=1+1"}
    for cell in row.values():
        assert not cell.startswith(("=", "+", "-", "@"))
    # JSON Lines is read by programs, not spreadsheets: the values stay exactly as stored.
    line = jsonl_rows(client_for(everyone["owner"]).get(EXPORTS["jsonl"]))[-1]
    assert line["actor_label"] == '=HYPERLINK("http://evil.test","click")'
    assert line["user_agent"] == "-2+3"


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_it_records_one_event_per_export_with_actor_ip_and_filters(everyone, history, fmt):
    auditor = everyone["auditor"]
    mark = audit_mark()
    r = client_for(auditor).get(
        EXPORTS[fmt],
        {"actor": "owner@", "from": "2020-01-01", "q": "laptop"},
        REMOTE_ADDR=IP,
        HTTP_USER_AGENT="curl/8.5",
    )
    # The event is written before the first byte, whether or not the reader finishes.
    [event] = events_since(mark)
    content = download(r)
    assert events_since(mark) == [event]
    assert event.org_id == auditor.org_id
    assert event.action == "audit.exported"
    assert (event.actor_user_id, event.actor_label) == (auditor.user_id, "auditor@acme.test")
    assert (event.source_ip, event.user_agent) == (IP, "curl/8.5")
    assert event.request_id == r["X-Request-ID"]
    assert event.details == {
        "format": fmt,
        "filters": {"actor": "owner@", "from": "2020-01-01", "q": "laptop"},
    }
    # The export holds what was there when it was asked for, not its own event.
    assert "audit.exported" not in content


def test_it_lists_earlier_exports_in_later_ones(everyone, history):
    client = client_for(everyone["owner"])
    download(client.get(EXPORTS["csv"]))
    rows = jsonl_rows(client.get(EXPORTS["jsonl"], {"action": "audit.exported"}))
    assert [(row["action"], row["details"]["format"]) for row in rows] == [
        ("audit.exported", "csv")
    ]


# Cost


def test_it_costs_the_same_queries_at_10_and_200_events(
    everyone, history, django_assert_max_num_queries
):
    org = everyone["owner"].org
    client = client_for(everyone["owner"])
    urls = [
        PAGE,
        PAGE + "?before=5",
        PAGE + "?actor=owner@&action=access_key.created&target=laptop"
        "&from=2020-01-01&to=2099-12-31&q=a",
    ]

    def counts() -> list[int]:
        result = []
        for url in urls:
            with CaptureQueriesContext(connection) as ctx:
                assert client.get(url).status_code == 200
            result.append(len(ctx.captured_queries))
        return result

    for _ in range(10 - AuditEvent.objects.filter(org=org).count()):
        system_event(org, target_type="access_key", target_id=history.laptop_again.pk)
    at_10 = counts()
    for _ in range(190):
        system_event(org, target_type="access_key", target_id=history.laptop_again.pk)
    assert AuditEvent.objects.filter(org=org).count() == 200
    assert counts() == at_10
    # Session, user, membership, the org switcher, the events and the keys they name;
    # the full filter adds the exact-actor check, the key-name lookup and two date bounds.
    with django_assert_max_num_queries(6):
        client.get(PAGE)
    with django_assert_max_num_queries(10):
        client.get(urls[2])
