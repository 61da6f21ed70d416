"""The `exc` command as a careful client of a hostile portal: tokens kept out of its
output, endless or repeated pages stopped, odd answers and control characters made harmless."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exc_cli import main as cli_main
from tests.cli_support import (
    CONFIG_ANSWER,
    GOOD_TOKEN,
    KEY_ID,
    a_key,
    no_token_in,
    run,
)

# --- A careful client, against a hostile portal --------------------------------------------


def test_a_token_with_a_stray_newline_inside_is_refused_without_showing_it(hostile, monkeypatch):
    bad = GOOD_TOKEN[:20] + "\n" + GOOD_TOKEN[20:]
    monkeypatch.setenv("EXC_TOKEN", bad)
    result = run("buckets", "keys", "list")
    assert result.exit_code == 3
    assert result.output == (
        "exc: error: EXC_TOKEN is not an Excloud API token (exc_ followed by letters and digits)\n"
    )
    assert no_token_in(result.output, GOOD_TOKEN)
    assert hostile.seen == []


def test_a_trailing_newline_is_trimmed_and_the_token_sent_clean(hostile, monkeypatch):
    monkeypatch.setenv("EXC_TOKEN", GOOD_TOKEN + "\n")
    hostile.answers["/keys"] = (200, {"items": [], "next_cursor": None})
    result = run("buckets", "keys", "list")
    assert result.exit_code == 0, result.output
    assert hostile.seen[0][1] == f"Bearer {GOOD_TOKEN}"


def test_a_token_the_portal_echoes_back_is_not_printed(hostile, monkeypatch):
    monkeypatch.setenv("EXC_TOKEN", GOOD_TOKEN)
    echo = (401, {"message": f"Bad token {GOOD_TOKEN} (Bearer {GOOD_TOKEN})"})
    hostile.answers["/keys"] = hostile.answers["/config"] = echo
    result = run("buckets", "keys", "list")
    assert result.exit_code == 3 and "token was refused" in result.output
    assert no_token_in(result.output)
    login = run("login", "--token", GOOD_TOKEN, "--api-url", hostile.url)
    assert login.exit_code == 3 and no_token_in(login.output)


def test_a_repeated_cursor_stops_the_listing(hostile, monkeypatch):
    monkeypatch.setenv("EXC_TOKEN", GOOD_TOKEN)
    hostile.answers["/keys"] = hostile.keys_page([a_key()], "c2FtZQ")
    result = run("buckets", "keys", "list")
    assert result.exit_code == 1
    assert (
        result.output == "exc: error: the portal sent the same page cursor twice; stopped listing\n"
    )
    assert len(hostile.seen) == 2


def test_endless_pages_stop_after_the_maximum(hostile, monkeypatch):
    monkeypatch.setenv("EXC_TOKEN", GOOD_TOKEN)
    monkeypatch.setattr(cli_main, "MAX_PAGES", 5)
    counter = iter(range(10_000))
    hostile.answers["/keys"] = lambda path: hostile.keys_page([a_key()], f"c{next(counter)}")
    result = run("buckets", "keys", "list")
    assert result.exit_code == 1 and "more than 5 pages" in result.output
    assert len(hostile.seen) == 5


@pytest.mark.parametrize(
    ("args", "path", "answer"),
    [
        (("buckets", "keys", "list"), "/keys", (200, {"items": [{"id": KEY_ID}]})),
        (("buckets", "keys", "list"), "/keys", (200, {"next_cursor": None})),
        (("buckets", "keys", "list"), "/keys", (200, [1, 2])),
        (("buckets", "keys", "list"), "/keys", (200, b"<html>not json")),
        (("whoami",), "/config", (200, {"user": "a@b.test"})),
        (("whoami",), "/config", (200, {**CONFIG_ANSWER, "org": "acme"})),
        (("buckets", "keys", "create", "x"), "/keys", (201, {"id": KEY_ID})),
        (("buckets", "keys", "create", "x"), "/keys", (201, {"id": "x\n", "secret_access_key": 1})),
        (("buckets", "keys", "delete", KEY_ID, "--yes"), f"/keys/{KEY_ID}", (200, {})),
    ],
)
def test_an_unexpected_answer_is_one_line_not_a_traceback(hostile, monkeypatch, args, path, answer):
    monkeypatch.setenv("EXC_TOKEN", GOOD_TOKEN)
    hostile.answers[path] = answer
    result = run(*args)
    assert result.exit_code == 1
    assert len(result.output.splitlines()) == 1 and result.output.startswith("exc: error: the ")
    assert not isinstance(result.exception, (KeyError, TypeError, AttributeError, IndexError))
    assert not (
        home_store := Path(os.environ["HOME"]) / ".config" / "exc" / "keys.json"
    ).exists(), home_store.read_text()


ESCAPES = "\x1b]0;owned\x07\x1b[2J\u202e\r"


def test_control_characters_from_the_portal_are_escaped(hostile, monkeypatch):
    monkeypatch.setenv("EXC_TOKEN", GOOD_TOKEN)
    hostile.answers["/config"] = (
        200,
        {**CONFIG_ANSWER, "org": {"slug": "acme", "name": f"Acme{ESCAPES}"}, "user": "a\x1b[31m"},
    )
    scope = {"permission": "read-only", "buckets": [{"name": "b", "prefix": f"p{ESCAPES}"}]}
    hostile.answers["/keys"] = hostile.keys_page(
        [a_key(name=f"lap{ESCAPES}top", scope=scope)], None
    )
    hostile.answers[f"/keys/{KEY_ID}"] = (200, a_key(name=f"gone{ESCAPES}", scope=scope))
    hostile.answers["/keys/EXCAAAAAAAAAAAAAAAAA"] = (404, {"message": f"no{ESCAPES}"})
    outputs = [
        run("whoami"),
        run("login", "--token", GOOD_TOKEN, "--api-url", hostile.url),
        run("buckets", "keys", "list"),
        run("buckets", "keys", "delete", KEY_ID, "--yes"),
        run("buckets", "keys", "delete", "EXCAAAAAAAAAAAAAAAAA", "--yes"),
        run("buckets", "keys", "scope", KEY_ID),
    ]
    for result in outputs:
        assert not any(ch in result.output for ch in "\x1b\x07\u202e\r"), result.output
    assert "Acme\\x1b]0;owned\\x07\\x1b[2J\\u202e\\r" in outputs[0].output
    assert "a\\x1b[31m" in outputs[1].output
    assert "lap\\x1b]0;owned" in outputs[2].output
    assert "gone\\x1b]0;owned" in outputs[3].output
    assert outputs[4].exit_code == 4 and "no\\x1b]0;owned" in outputs[4].output
    assert "read-only · b/p\\x1b]0;owned" in outputs[2].output
    assert "may do read-only on b/p\\x1b]0;owned" in outputs[5].output
