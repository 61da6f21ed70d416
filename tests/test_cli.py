"""The `exc` command against a stand-in API: each command's output, errors and exit
codes, the documented usage, and device login."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from exc_cli import main as cli_main
from tests.cli_support import (
    CONFIG_ANSWER,
    ENDPOINT,
    EXISTING_CONFIG,
    EXISTING_CREDENTIALS,
    GOOD_TOKEN,
    KEY_ID,
    NEW_KEY_ID,
    NEW_SECRET,
    S3_BLOCK,
    SECRET,
    mode,
    no_token_in,
    run,
)

# --- Commands against a stand-in API -------------------------------------------------------


def test_configure_with_secret_writes_the_profile_and_keeps_the_rest(portal, home):
    config, credentials = home / "aws" / "config", home / "aws" / "credentials"
    config.parent.mkdir()
    config.write_text(EXISTING_CONFIG)
    credentials.write_text(EXISTING_CREDENTIALS)
    config.chmod(0o644)

    result = run("buckets", "keys", "configure", KEY_ID, "--profile", "excloud", "--secret", SECRET)

    assert result.exit_code == 0, result.output
    # Changed keys are replaced where they stand; the new s3 block follows the last setting.
    assert (
        config.read_text()
        == EXISTING_CONFIG.replace("region = old-region", "region = us-east-1").replace(
            "endpoint_url = http://old.example", f"endpoint_url = {ENDPOINT}"
        )
        + S3_BLOCK
    )
    assert credentials.read_text() == EXISTING_CREDENTIALS + (
        f"\n[excloud]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"
    )
    assert mode(config) == 0o600 and mode(credentials) == 0o600
    assert not [p for p in config.parent.iterdir() if p.name.endswith(".tmp")]


def test_configure_refuses_without_a_secret_and_says_how_to_get_one(portal, home):
    result = run("buckets", "keys", "configure", KEY_ID, "--profile", "excloud")
    assert result.exit_code == 1
    assert "no secret for " + KEY_ID in result.output
    assert "--secret" in result.output and "exc buckets keys create" in result.output
    assert not (home / "aws").exists()
    assert portal.requests == []


def test_configure_refuses_a_malformed_secret_or_profile(portal, home):
    bad_secret = run("buckets", "keys", "configure", KEY_ID, "--profile", "x", "--secret", "a\nb")
    assert bad_secret.exit_code == 1 and "not an Excloud secret" in bad_secret.output
    bad_profile = run(
        "buckets", "keys", "configure", KEY_ID, "--profile", "a]\n[b", "--secret", SECRET
    )
    assert bad_profile.exit_code == 1 and "not a usable profile name" in bad_profile.output
    assert not (home / "aws").exists()


def test_create_prints_two_lines_and_configure_uses_the_stored_secret(portal, home):
    created = run("buckets", "keys", "create", "laptop")
    assert created.exit_code == 0
    assert created.output == f"ACCESS_KEY_ID: {KEY_ID}\nSECRET_ACCESS_KEY: {SECRET}\n"
    store = home / ".config" / "exc" / "keys.json"
    assert mode(store) == 0o600
    assert json.loads(store.read_text())["keys"][KEY_ID]["secret_access_key"] == SECRET

    result = run("buckets", "keys", "configure", KEY_ID, "--profile", "default")
    assert result.exit_code == 0, result.output
    assert (home / "aws" / "config").read_text() == (
        f"[default]\nregion = us-east-1\nendpoint_url = {ENDPOINT}\n{S3_BLOCK}"
    )
    assert f"aws_secret_access_key = {SECRET}" in (home / "aws" / "credentials").read_text()


def test_create_json(portal, home):
    result = run("buckets", "keys", "create", "laptop", "--json")
    assert json.loads(result.output)["secret_access_key"] == SECRET


def test_set_default_points_the_default_profile_at_excloud(portal, home):
    config = home / "aws" / "config"
    config.parent.mkdir()
    config.write_text(EXISTING_CONFIG)
    result = run(
        "buckets",
        "keys",
        "configure",
        KEY_ID,
        "--profile",
        "excloud",
        "--secret",
        SECRET,
        "--set-default",
    )
    assert result.exit_code == 0, result.output
    text = config.read_text()
    assert f"[default]\nregion = eu-west-1\noutput = json\nendpoint_url = {ENDPOINT}\n" in text


def test_list_shows_a_table_and_json_without_secrets(portal, home):
    run("buckets", "keys", "create", "laptop")
    table = run("buckets", "keys", "list")
    assert table.exit_code == 0
    assert table.output.splitlines()[0].split() == [
        "ID",
        "NAME",
        "STATUS",
        "SCOPE",
        "CREATED",
        "LAST",
        "USED",
    ]
    assert KEY_ID in table.output and "never" in table.output and SECRET not in table.output
    as_json = run("buckets", "keys", "list", "--json")
    assert json.loads(as_json.output)[0]["id"] == KEY_ID and SECRET not in as_json.output


def test_delete_needs_yes_when_not_interactive(portal, home):
    result = run("buckets", "keys", "delete", KEY_ID)
    assert result.exit_code == 1 and "--yes" in result.output
    assert [r.method for r in portal.requests] == []
    deleted = run("buckets", "keys", "delete", KEY_ID, "--yes")
    assert deleted.exit_code == 0 and "Revoked" in deleted.output
    assert portal.keys[KEY_ID]["status"] == "revoked"


def test_delete_asks_on_a_terminal(portal, home, monkeypatch):
    monkeypatch.setattr(cli_main, "_interactive", lambda: True)
    declined = run("buckets", "keys", "delete", KEY_ID, input="n\n")
    assert declined.exit_code == 1 and "Revoke key" in declined.output
    assert portal.keys[KEY_ID]["status"] == "active"
    accepted = run("buckets", "keys", "delete", KEY_ID, input="y\n")
    assert accepted.exit_code == 0 and portal.keys[KEY_ID]["status"] == "revoked"


def test_login_checks_and_stores_the_token_privately_under_xdg(portal, home, monkeypatch):
    monkeypatch.delenv("EXC_TOKEN")
    monkeypatch.delenv("EXC_API_URL")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg"))
    result = run("login", "--token", "exc_good", "--api-url", "http://portal.test/")
    assert result.exit_code == 0, result.output
    assert "Acme" in result.output
    stored = home / "xdg" / "exc" / "config.json"
    assert mode(stored) == 0o600
    assert json.loads(stored.read_text()) == {"api_url": "http://portal.test", "token": "exc_good"}
    assert str(portal.requests[-1].url) == "http://portal.test/api/v1/config"

    # EXC_TOKEN and EXC_API_URL win over the stored login.
    monkeypatch.setenv("EXC_API_URL", "http://other.test")
    monkeypatch.setenv("EXC_TOKEN", "exc_bad")
    result = run("buckets", "keys", "list")
    assert str(portal.requests[-1].url).startswith("http://other.test/api/v1/keys")
    assert portal.requests[-1].headers["Authorization"] == "Bearer exc_bad"
    assert result.exit_code == 3


def test_a_refused_login_stores_nothing(portal, home):
    result = run("login", "--token", "exc_bad", "--api-url", "http://portal.test")
    assert result.exit_code == 3
    assert result.output.startswith("exc: error: the API token was refused (Bad token.)")
    assert not (home / ".config" / "exc" / "config.json").exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("buckets", "keys", "delete", "EXCAAAAAAAAAAAAAAAAA", "--yes"), 4, "not found"),
        (("buckets", "keys", "delete", "laptop", "--yes"), 1, "not an access key ID"),
    ],
)
def test_errors_are_one_line_with_an_exit_code(portal, home, args, code, message):
    result = run(*args)
    assert result.exit_code == code
    assert len(result.output.strip().splitlines()) == 1 and message in result.output


def test_a_network_failure_is_one_line(home, monkeypatch):
    monkeypatch.setenv("EXC_API_URL", "http://127.0.0.1:1")
    result = run("buckets", "keys", "list")
    assert result.exit_code == 5
    assert result.output.startswith("exc: error: cannot reach the Excloud API at")
    assert len(result.output.strip().splitlines()) == 1


def test_not_logged_in(home, monkeypatch):
    monkeypatch.delenv("EXC_TOKEN")
    result = run("buckets", "keys", "list")
    assert result.exit_code == 3 and "exc login" in result.output


@pytest.mark.parametrize(
    "command",
    [
        (),
        ("login",),
        ("buckets",),
        ("buckets", "keys"),
        ("buckets", "keys", "create"),
        ("buckets", "keys", "list"),
        ("buckets", "keys", "delete"),
        ("buckets", "keys", "configure"),
        ("buckets", "keys", "rotate"),
        ("buckets", "keys", "scope"),
        ("whoami",),
        ("completion",),
    ],
)
def test_every_command_has_help(command):
    result = run(*command, "--help")
    assert result.exit_code == 0 and result.output.startswith("Usage: exc")


def test_the_command_imports_no_django():
    code = "import sys, exc_cli.main; print(sorted(m for m in sys.modules if 'django' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- The documented usage ------------------------------------------------------------------


def test_create_takes_the_name_as_an_option_too(portal, home):
    created = run("buckets", "keys", "create", "--name", "laptop")
    assert created.exit_code == 0, created.output
    assert created.output == f"ACCESS_KEY_ID: {KEY_ID}\nSECRET_ACCESS_KEY: {SECRET}\n"
    sent = [r for r in portal.requests if r.method == "POST"]
    assert json.loads(sent[0].content) == {"name": "laptop"}


@pytest.mark.parametrize("args", [("create",), ("create", "laptop", "--name", "laptop")])
def test_create_wants_the_name_exactly_once(portal, home, args):
    result = run("buckets", "keys", *args)
    assert result.exit_code == 2
    assert "give the key's name once" in result.output
    assert portal.requests == []


def test_rotate_prints_the_new_pair_keeps_it_and_switches_the_profile(portal, home):
    credentials = home / "aws" / "credentials"
    credentials.parent.mkdir(mode=0o700)
    credentials.write_text(
        EXISTING_CREDENTIALS
        + f"\n[excloud]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"
    )
    result = CliRunner().invoke(
        cli_main.cli,
        ["buckets", "keys", "rotate", KEY_ID, "--profile", "excloud", "--overlap", "2d"],
        prog_name="exc",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == f"ACCESS_KEY_ID: {NEW_KEY_ID}\nSECRET_ACCESS_KEY: {NEW_SECRET}\n"
    assert "keeps working until 2026-11-28 10:00 UTC" in result.stderr
    sent = [r for r in portal.requests if r.method == "POST"]
    assert sent[0].url.path == f"/api/v1/keys/{KEY_ID}/rotate"
    assert json.loads(sent[0].content) == {"overlap_hours": 48}
    store = json.loads((home / ".config" / "exc" / "keys.json").read_text())["keys"]
    assert store[NEW_KEY_ID]["secret_access_key"] == NEW_SECRET
    # The profile is rewritten where it stands; the other profiles are untouched.
    assert credentials.read_text() == EXISTING_CREDENTIALS + (
        f"\n[excloud]\naws_access_key_id = {NEW_KEY_ID}\naws_secret_access_key = {NEW_SECRET}\n"
    )
    assert f"endpoint_url = {ENDPOINT}" in (home / "aws" / "config").read_text()


@pytest.mark.parametrize("overlap", ["0h", "31d", "soon", "-1"])
def test_rotate_refuses_an_overlap_out_of_range(portal, home, overlap):
    result = run("buckets", "keys", "rotate", KEY_ID, "--overlap", overlap)
    assert result.exit_code == 2 and "--overlap" in result.output
    assert portal.requests == []


def test_rotate_without_a_profile_leaves_the_aws_files_alone(portal, home):
    result = run("buckets", "keys", "rotate", KEY_ID, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["access_key_id"] == NEW_KEY_ID
    assert not (home / "aws").exists()


def test_whoami_names_the_user_org_and_token_expiry(portal, home):
    result = run("whoami")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "User:          a@b.test",
        "Organisation:  Acme (acme)",
        "Role:          owner",
        "Portal:        http://portal.test",
        "Token:         laptop cli",
        "Token expires: 2027-02-28 10:00 UTC",
    ]


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert re.fullmatch(r"exc \d+\.\d+\.\d+\S*\n", result.output)


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "complete -o nosort -F"), ("zsh", "compdef"), ("fish", "complete --no-files")],
)
def test_completion_prints_a_script_for_each_shell(shell, marker):
    result = run("completion", shell)
    assert result.exit_code == 0
    assert marker in result.output and "_EXC_COMPLETE" in result.output


def test_completion_completes_commands(monkeypatch):
    monkeypatch.setenv("_EXC_COMPLETE", "bash_complete")
    monkeypatch.setenv("COMP_WORDS", "exc buckets keys ro")
    monkeypatch.setenv("COMP_CWORD", "3")
    result = CliRunner().invoke(cli_main.cli, [], prog_name="exc")
    assert result.output == "plain,rotate\n"


# --- Device login against a stand-in portal --------------------------------------------------

DEVICE_START = {
    "device_code": "d" * 43,
    "user_code": "BCDF-GHJK",
    "verification_uri": "http://portal.test/device/",
    "verification_uri_complete": "http://portal.test/device/?code=BCDF-GHJK",
    "expires_in": 600,
    "interval": 1,
}


def device_answers(*errors: str, then: tuple[int, dict] | None = None):
    """Token-endpoint answers in turn: these RFC 8628 errors, then ``then``."""
    answers = [(400, {"error": e, "error_description": e}) for e in errors]
    answers += [then] if then else []
    return lambda path: answers.pop(0) if len(answers) > 1 else answers[0]


@pytest.fixture
def device_portal(hostile, monkeypatch):
    monkeypatch.delenv("EXC_TOKEN")
    monkeypatch.setattr("exc_cli.device.pause", lambda seconds: None)
    hostile.answers["/device/code"] = (200, DEVICE_START)
    return hostile


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        ("access_denied", 6, "the sign-in was denied in the browser; no token"),
        ("expired_token", 7, "the code expired before it was approved; run `exc login` again"),
        ("invalid_grant", 7, "the portal no longer knows this code (it was used)"),
    ],
)
def test_device_login_ends_with_its_own_exit_code(device_portal, home, error, code, message):
    device_portal.answers["/device/token"] = device_answers(
        "authorization_pending", "slow_down", error
    )
    result = run("login", "--no-browser", "--device-name", "box")
    assert result.exit_code == code, result.output
    assert "open http://portal.test/device/" in result.output
    assert "enter the code: BCDF-GHJK" in result.output
    assert (
        result.output.splitlines()[-1] == f"exc: error: {message}"
        or message in (result.output.splitlines()[-1])
    )
    assert [p for p, _ in device_portal.seen].count("/api/v1/device/token") == 3
    assert not (home / ".config" / "exc" / "config.json").exists()


def test_device_login_stores_the_granted_token_without_printing_it(device_portal, home):
    device_portal.answers["/device/token"] = device_answers(
        "authorization_pending",
        then=(
            200,
            {
                "access_token": GOOD_TOKEN,
                "token_type": "Bearer",
                "expires_at": "2027-03-01T00:00:00+00:00",
                "org": {"slug": "acme", "name": "Acme"},
                "user": "a@b.test",
            },
        ),
    )
    device_portal.answers["/config"] = (200, CONFIG_ANSWER)
    result = run("login", "--no-browser", "--device-name", "box")
    assert result.exit_code == 0, result.output
    assert "Logged in to Acme" in result.output and no_token_in(result.output)
    stored = json.loads((home / ".config" / "exc" / "config.json").read_text())
    assert stored["token"] == GOOD_TOKEN
    assert device_portal.seen[-1][1] == f"Bearer {GOOD_TOKEN}"


def test_device_login_refuses_a_portal_answer_it_cannot_use(device_portal, home):
    device_portal.answers["/device/code"] = (
        200,
        {**DEVICE_START, "user_code": "\x1b]0;x\x07", "verification_uri": "javascript:x"},
    )
    result = run("login", "--no-browser")
    assert result.exit_code == 1
    assert (
        result.output == "exc: error: the portal's device login answer was not what exc expects\n"
    )
