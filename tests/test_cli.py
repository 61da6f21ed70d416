"""The `exc` command: its AWS-file editing, its local files, its errors, and a run of the
installed binary against a live portal."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import sys
import threading
import urllib.request
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from django.core.management import call_command
from django.utils import timezone

from exc_cli import main as cli_main
from exc_cli.client import Api
from exc_cli.files import set_section
from gateway.models import Bucket
from keys import expiry
from keys.models import AccessKey, KeyStatus
from tests.gateway_stack import gateway, upstream

EXC = Path(sys.executable).with_name("exc")
AWS = Path(sys.executable).with_name("aws")
KEY_ID = "EXCABCDEFGHIJKLMNOPQ"
SECRET = "abcdefghijABCDEFGHIJ0123456789+/abcdefgh"
ENDPOINT = "https://s3.excloud.test"
NEW_KEY_ID = "EXCZYXWVUTSRQPONMLKJ"
NEW_SECRET = "0123456789abcdefghijABCDEFGHIJ+/abcdefgh"

EXISTING_CONFIG = """\
# My AWS setup; do not lose this comment.
[default]
region = eu-west-1
output = json

; work account
[profile work]
region = us-west-2
s3 =
    addressing_style = path

[profile excloud]
# old Excloud settings
region = old-region
endpoint_url = http://old.example
cli_pager =
"""

S3_BLOCK = "s3 =\n    addressing_style = path\n    signature_version = s3v4\n"

EXISTING_CREDENTIALS = """\
[default]
aws_access_key_id = AKIADEFAULT
aws_secret_access_key = defaultsecret

# the work key
[work]
aws_access_key_id = AKIAWORK
aws_secret_access_key = worksecret
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- The INI editor ------------------------------------------------------------------------


def test_it_replaces_one_sections_keys_and_keeps_everything_else():
    updated = set_section(
        EXISTING_CONFIG, "profile excloud", {"region": "us-east-1", "endpoint_url": ENDPOINT}
    )
    assert updated == EXISTING_CONFIG.replace("region = old-region", "region = us-east-1").replace(
        "endpoint_url = http://old.example", f"endpoint_url = {ENDPOINT}"
    )


def test_it_appends_missing_keys_at_the_end_of_the_section():
    updated = set_section(EXISTING_CONFIG, "profile work", {"endpoint_url": ENDPOINT})
    assert "    addressing_style = path\nendpoint_url = https://s3.excloud.test\n\n" in updated
    assert updated.replace(f"endpoint_url = {ENDPOINT}\n", "", 1) == EXISTING_CONFIG


def test_it_writes_a_nested_block_in_place_of_the_old_one():
    block = {"addressing_style": "path", "signature_version": "s3v4"}
    updated = set_section(EXISTING_CONFIG, "profile work", {"s3": block})
    assert f"[profile work]\nregion = us-west-2\n{S3_BLOCK}\n[profile excloud]" in updated
    assert updated.count("addressing_style") == 1


def test_it_replaces_a_key_with_its_continuation_lines():
    updated = set_section(EXISTING_CONFIG, "profile work", {"s3": "x"})
    assert "s3 = x\n\n; work account" not in updated
    assert "[profile work]\nregion = us-west-2\ns3 = x\n\n[profile excloud]" in updated
    assert "addressing_style" not in updated


def test_it_appends_a_missing_section_after_a_blank_line():
    updated = set_section(EXISTING_CREDENTIALS, "excloud", {"aws_access_key_id": KEY_ID})
    assert updated == EXISTING_CREDENTIALS + f"\n[excloud]\naws_access_key_id = {KEY_ID}\n"
    assert set_section("", "x", {"a": "1"}) == "[x]\na = 1\n"
    assert set_section("[y]\nb = 2", "x", {"a": "1"}) == "[y]\nb = 2\n\n[x]\na = 1\n"


def test_it_writes_only_the_first_of_duplicate_keys_and_sections():
    text = "[p]\na = 1\na = 2\n[p]\na = 3\n"
    assert set_section(text, "p", {"a": "9"}) == "[p]\na = 9\n[p]\na = 3\n"


def test_it_matches_section_names_ignoring_extra_spaces():
    text = "[ profile   excloud ]\nregion = x\n"
    assert set_section(text, "profile excloud", {"region": "y"}) == (
        "[ profile   excloud ]\nregion = y\n"
    )


# --- Commands against a stand-in API -------------------------------------------------------


class FakePortal:
    """Answers the API calls the command makes, and remembers them."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.keys = {
            KEY_ID: {
                "id": KEY_ID,
                "name": "laptop",
                "status": "active",
                "created_at": "2026-11-27T10:00:00Z",
                "created_by": "a@b.test",
                "created_via": "api",
                "status_changed_at": None,
                "expires_at": None,
                "last_used_at": None,
            },
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path.removeprefix("/api/v1")
        if request.headers.get("Authorization") != "Bearer exc_good":
            return httpx.Response(401, json={"code": "unauthorized", "message": "Bad token."})
        if path == "/config":
            return httpx.Response(
                200,
                json={
                    "s3_endpoint": ENDPOINT,
                    "region": "us-east-1",
                    "org": {"slug": "acme", "name": "Acme"},
                    "user": "a@b.test",
                    "role": "owner",
                    "token": {
                        "name": "laptop cli",
                        "prefix": "exc_good",
                        "expires_at": "2027-02-28T10:00:00Z",
                    },
                },
            )
        if path == f"/keys/{KEY_ID}/rotate" and request.method == "POST":
            self.keys[KEY_ID]["expires_at"] = "2026-11-28T10:00:00Z"
            new = {**self.keys[KEY_ID], "id": NEW_KEY_ID, "replaces": KEY_ID, "expires_at": None}
            self.keys[NEW_KEY_ID] = new
            return httpx.Response(
                201, json={**new, "secret_access_key": NEW_SECRET, "previous": self.keys[KEY_ID]}
            )
        if path == "/keys" and request.method == "POST":
            return httpx.Response(201, json={**self.keys[KEY_ID], "secret_access_key": SECRET})
        if path == "/keys":
            return httpx.Response(
                200, json={"items": list(self.keys.values()), "next_cursor": None}
            )
        key = self.keys.get(path.removeprefix("/keys/"))
        if key is None:
            return httpx.Response(404, json={"code": "not_found", "message": "No such key."})
        if request.method == "DELETE":
            key["status"] = "revoked"
        return httpx.Response(200, json=key)


@pytest.fixture
def portal(monkeypatch) -> FakePortal:
    fake = FakePortal()

    class FakeApi(Api):
        def __init__(self, url: str, token: str, **kwargs) -> None:
            super().__init__(url, token, transport=httpx.MockTransport(fake))

    monkeypatch.setattr(cli_main, "Api", FakeApi)
    return fake


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh HOME, logged in, with AWS files at the paths the environment names."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws" / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws" / "credentials"))
    monkeypatch.setenv("EXC_TOKEN", "exc_good")
    monkeypatch.setenv("EXC_API_URL", "http://portal.test")
    return tmp_path


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli_main.cli, list(args), input=input, prog_name="exc")


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


# --- The installed binary against a live portal --------------------------------------------


def exc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(EXC), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def aws(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    # The endpoint must come from the profile `exc buckets keys configure` wrote.
    assert not any(arg.startswith("--endpoint-url") for arg in args)
    return subprocess.run(
        [str(AWS), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def refused_with_403(result: subprocess.CompletedProcess, gateway_url: str, path: str) -> bool:
    """Whether an ``aws --debug`` run got a 403 from the gateway for a GET of ``path``.

    The status and the address only appear in urllib3's debug log line for the request.
    """
    line = rf'{re.escape(gateway_url)} "GET {re.escape(path)}(\?[^"]*)? HTTP/1\.1" 403 '
    return result.returncode != 0 and re.search(line, result.stderr) is not None


@pytest.fixture
def gw(transactional_db, tmp_path_factory, settings):
    """The S3 gateway on the test database, caching behind the Redis version check when
    Redis is configured (as in production), and the portal telling clients to use it."""
    with (
        upstream(tmp_path_factory.mktemp("store")) as store,
        gateway(tmp_path_factory.mktemp("gw"), store, redis_url=settings.REDIS_URL) as running,
    ):
        settings.EXCLOUD_S3_ENDPOINT = running.url
        yield running


def test_the_installed_exc_against_a_live_server(live_server, gw, owner, tmp_path):
    """The issue's end-to-end check: keys made, listed, configured and revoked with the
    installed `exc`, used in between by the real aws CLI through the gateway."""
    assert EXC.exists(), "pip install -e . installs the exc command"
    assert AWS.exists(), "the awscli package installs the aws command"
    out = io.StringIO()
    call_command("create_api_token", "--user", owner.user.email, "--org", "acme", stdout=out)
    token = out.getvalue().strip()
    # Built from nothing, so no AWS_* variable (keys, profile, endpoint) leaks in from outside:
    # exc and aws see only the two files in this HOME.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
    }
    (tmp_path / "aws-config").write_text(EXISTING_CONFIG)
    (tmp_path / "aws-credentials").write_text(EXISTING_CREDENTIALS)

    login = exc(env, "login", "--token", token, "--api-url", live_server.url)
    assert login.returncode == 0, login.stderr
    assert mode(tmp_path / ".config" / "exc" / "config.json") == 0o600

    created = exc(env, "buckets", "keys", "create", "laptop")
    assert created.returncode == 0, created.stderr
    match = re.fullmatch(
        r"ACCESS_KEY_ID: (EXC[A-Z2-7]{17})\nSECRET_ACCESS_KEY: ([A-Za-z0-9+/]{40})\n",
        created.stdout,
    )
    assert match, created.stdout
    key_id, secret = match.groups()
    assert AccessKey.objects.get(pk=key_id).created_via == "api"

    for args in (("list",), ("list", "--json")):
        listed = exc(env, "buckets", "keys", *args)
        assert listed.returncode == 0, listed.stderr
        assert key_id in listed.stdout and "laptop" in listed.stdout
        assert secret not in listed.stdout + listed.stderr

    configured = exc(env, "buckets", "keys", "configure", key_id, "--profile", "excloud")
    assert configured.returncode == 0, configured.stderr
    assert secret not in configured.stdout + configured.stderr
    config = (tmp_path / "aws-config").read_text()
    credentials = (tmp_path / "aws-credentials").read_text()
    assert "[profile excloud]\n# old Excloud settings\nregion = us-east-1\n" in config
    assert f"endpoint_url = {gw.url}\n" in config
    assert config.startswith("# My AWS setup; do not lose this comment.\n[default]\n")
    assert "; work account\n[profile work]\nregion = us-west-2\n" in config
    assert credentials.startswith(EXISTING_CREDENTIALS)
    assert credentials.endswith(
        f"[excloud]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
    )
    assert mode(tmp_path / "aws-config") == 0o600 and mode(tmp_path / "aws-credentials") == 0o600

    # The real aws CLI, on the profile alone, through the gateway.
    bucket = "b-" + key_id.lower()
    upload = tmp_path / "upload.bin"
    upload.write_bytes(os.urandom(100_000))
    made = aws(env, "--profile", "excloud", "s3", "mb", f"s3://{bucket}")
    assert made.returncode == 0, made.stderr
    assert Bucket.objects.get(name=bucket).org == owner.org
    put = aws(env, "--profile", "excloud", "s3", "cp", str(upload), f"s3://{bucket}/x")
    assert put.returncode == 0, put.stderr
    listing = aws(env, "--profile", "excloud", "s3", "ls", f"s3://{bucket}")
    assert listing.returncode == 0, listing.stderr
    assert re.search(rf" {upload.stat().st_size} x\n", listing.stdout), listing.stdout
    download = tmp_path / "download.bin"
    got = aws(env, "--profile", "excloud", "s3", "cp", f"s3://{bucket}/x", str(download))
    assert got.returncode == 0, got.stderr
    assert download.read_bytes() == upload.read_bytes()
    # A presigned URL from the same profile (Signature Version 4, from its s3 block)
    # fetches the object with plain HTTP.
    presigned = aws(env, "--profile", "excloud", "s3", "presign", f"s3://{bucket}/x")
    assert presigned.returncode == 0, presigned.stderr
    assert "X-Amz-Signature=" in presigned.stdout
    with urllib.request.urlopen(presigned.stdout.strip(), timeout=30) as response:
        assert response.read() == upload.read_bytes()

    # --set-default points the default profile (its own, non-Excloud key) at the gateway,
    # which then answers it rather than AWS.
    defaulted = exc(
        env, "buckets", "keys", "configure", key_id, "--profile", "excloud", "--set-default"
    )
    assert defaulted.returncode == 0, defaulted.stderr
    as_default = aws(env, "--debug", "s3", "ls", f"s3://{bucket}")
    assert refused_with_403(as_default, gw.url, f"/{bucket}"), as_default.stderr[-3000:]
    assert "InvalidAccessKeyId" in as_default.stderr and "AKIADEFAULT" in as_default.stderr

    refused = exc(env, "buckets", "keys", "delete", key_id)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    deleted = exc(env, "buckets", "keys", "delete", key_id, "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert AccessKey.objects.get(pk=key_id).status == KeyStatus.REVOKED
    listed = exc(env, "buckets", "keys", "list", "--json")
    assert [(k["id"], k["status"]) for k in json.loads(listed.stdout)] == [(key_id, "revoked")]

    # The next aws call with the revoked key is refused, with no grace period.
    after = aws(env, "--debug", "--profile", "excloud", "s3", "ls", f"s3://{bucket}")
    assert refused_with_403(after, gw.url, f"/{bucket}"), after.stderr[-3000:]
    assert "An error occurred (InvalidAccessKeyId) when calling the ListObjectsV2" in after.stderr
    assert after.stdout == ""

    unknown = exc(env, "buckets", "keys", "delete", "EXCAAAAAAAAAAAAAAAAA", "--yes")
    assert unknown.returncode == 4 and unknown.stderr.startswith("exc: error: not found")
    bad = exc({**env, "EXC_TOKEN": "exc_" + "x" * 40}, "buckets", "keys", "list")
    assert bad.returncode == 3 and "token was refused" in bad.stderr


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


# --- A careful client, against a hostile portal --------------------------------------------


class HostilePortal:
    """A real HTTP server on a local port whose answers each test chooses, path by path."""

    def __init__(self) -> None:
        self.answers: dict[str, object] = {}
        self.seen: list[tuple[str, str]] = []
        portal = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                path = self.path.split("?")[0].removeprefix("/api/v1")
                portal.seen.append((self.path, self.headers.get("Authorization", "")))
                answer = portal.answers.get(path, (404, {"message": "nothing here"}))
                status, body = answer(self.path) if callable(answer) else answer
                raw = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def keys_page(self, items: list[dict], cursor: str | None) -> tuple[int, dict]:
        return 200, {"items": items, "next_cursor": cursor}


@pytest.fixture
def hostile(home, monkeypatch):
    server = HostilePortal()
    server.thread.start()
    monkeypatch.setenv("EXC_API_URL", server.url)
    yield server
    server.server.shutdown()
    server.server.server_close()


GOOD_TOKEN = "exc_" + "A1b2" * 10
CONFIG_ANSWER = {
    "s3_endpoint": ENDPOINT,
    "region": "us-east-1",
    "org": {"slug": "acme", "name": "Acme"},
    "user": "a@b.test",
    "role": "owner",
    "token": {"name": "t", "prefix": "exc_A1b2", "expires_at": None},
}


def a_key(**fields) -> dict:
    return {
        "id": KEY_ID,
        "name": "laptop",
        "status": "active",
        "created_at": "2026-11-27T10:00:00Z",
        "created_by": "a@b.test",
        "last_used_at": None,
        **fields,
    }


def no_token_in(text: str, token: str = GOOD_TOKEN) -> bool:
    """Neither the token nor any 8 characters of its secret part appear in the text."""
    secret = token.removeprefix("exc_")
    return token not in text and not any(secret[i : i + 8] in text for i in range(len(secret) - 7))


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
    hostile.answers["/keys"] = hostile.keys_page([a_key(name=f"lap{ESCAPES}top")], None)
    hostile.answers[f"/keys/{KEY_ID}"] = (200, a_key(name=f"gone{ESCAPES}"))
    hostile.answers["/keys/EXCAAAAAAAAAAAAAAAAA"] = (404, {"message": f"no{ESCAPES}"})
    outputs = [
        run("whoami"),
        run("login", "--token", GOOD_TOKEN, "--api-url", hostile.url),
        run("buckets", "keys", "list"),
        run("buckets", "keys", "delete", KEY_ID, "--yes"),
        run("buckets", "keys", "delete", "EXCAAAAAAAAAAAAAAAAA", "--yes"),
    ]
    for result in outputs:
        assert not any(ch in result.output for ch in "\x1b\x07\u202e\r"), result.output
    assert "Acme\\x1b]0;owned\\x07\\x1b[2J\\u202e\\r" in outputs[0].output
    assert "a\\x1b[31m" in outputs[1].output
    assert "lap\\x1b]0;owned" in outputs[2].output
    assert "gone\\x1b]0;owned" in outputs[3].output
    assert outputs[4].exit_code == 4 and "no\\x1b]0;owned" in outputs[4].output


# --- A careful client, with its own files ---------------------------------------------------


def test_a_planted_symlink_is_replaced_not_written_through(hostile, home, monkeypatch):
    monkeypatch.delenv("EXC_TOKEN")
    hostile.answers["/config"] = (200, CONFIG_ANSWER)
    hostile.answers["/keys"] = (201, {**a_key(), "secret_access_key": SECRET})
    folder = home / ".config" / "exc"
    folder.mkdir(parents=True, mode=0o700)
    elsewhere = home / "elsewhere"
    elsewhere.mkdir()
    for name in ("config.json", "keys.json"):
        (elsewhere / name).write_text("theirs\n")
        (folder / name).symlink_to(elsewhere / name)

    assert run("login", "--token", GOOD_TOKEN, "--api-url", hostile.url).exit_code == 0
    assert run("buckets", "keys", "create", "laptop").exit_code == 0

    for name in ("config.json", "keys.json"):
        assert (elsewhere / name).read_text() == "theirs\n"
        assert not (folder / name).is_symlink() and mode(folder / name) == 0o600
    assert json.loads((folder / "config.json").read_text())["token"] == GOOD_TOKEN
    assert SECRET in (folder / "keys.json").read_text()


def test_a_symlinked_config_folder_is_refused(hostile, home, monkeypatch):
    monkeypatch.delenv("EXC_TOKEN")
    hostile.answers["/config"] = (200, CONFIG_ANSWER)
    elsewhere = home / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (home / ".config").mkdir()
    (home / ".config" / "exc").symlink_to(elsewhere)
    result = run("login", "--token", GOOD_TOKEN, "--api-url", hostile.url)
    assert result.exit_code == 1 and "it is a symlink" in result.output
    assert list(elsewhere.iterdir()) == []


def test_a_config_folder_others_may_write_to_is_refused(hostile, home, monkeypatch):
    monkeypatch.delenv("EXC_TOKEN")
    hostile.answers["/config"] = (200, CONFIG_ANSWER)
    folder = home / ".config" / "exc"
    folder.mkdir(parents=True)
    folder.chmod(0o777)
    result = run("login", "--token", GOOD_TOKEN, "--api-url", hostile.url)
    assert result.exit_code == 1
    assert result.output == (
        f"exc: error: refusing to write in {folder}: others may write to it "
        f"(run `chmod go-w {folder}`)\n"
    )
    assert list(folder.iterdir()) == []
    folder.chmod(0o700)
    assert run("login", "--token", GOOD_TOKEN, "--api-url", hostile.url).exit_code == 0


@pytest.mark.skipif(os.getuid() != 0, reason="giving a folder to another user needs root")
def test_a_config_folder_owned_by_someone_else_is_refused(hostile, home, monkeypatch):
    monkeypatch.delenv("EXC_TOKEN")
    hostile.answers["/config"] = (200, CONFIG_ANSWER)
    folder = home / ".config" / "exc"
    folder.mkdir(parents=True, mode=0o700)
    os.chown(folder, 65534, 65534)
    result = run("login", "--token", GOOD_TOKEN, "--api-url", hostile.url)
    assert result.exit_code == 1 and "belongs to another user" in result.output
    assert list(folder.iterdir()) == []


def test_a_linked_aws_config_stays_linked_when_its_target_folder_is_safe(portal, home):
    dotfiles = home / "dotfiles"
    dotfiles.mkdir(mode=0o700)
    (dotfiles / "aws-config").write_text(EXISTING_CONFIG)
    (home / "aws").mkdir(mode=0o700)
    (home / "aws" / "config").symlink_to(dotfiles / "aws-config")
    result = run("buckets", "keys", "configure", KEY_ID, "--profile", "excloud", "--secret", SECRET)
    assert result.exit_code == 0, result.output
    assert (home / "aws" / "config").is_symlink()
    assert f"endpoint_url = {ENDPOINT}" in (dotfiles / "aws-config").read_text()

    dotfiles.chmod(0o777)
    refused = run("buckets", "keys", "configure", KEY_ID, "--profile", "x", "--secret", SECRET)
    assert refused.exit_code == 1 and "others may write to it" in refused.output


def test_a_planted_login_file_is_not_read(hostile, home, monkeypatch):
    monkeypatch.delenv("EXC_TOKEN")
    monkeypatch.delenv("EXC_API_URL")
    hostile.answers["/config"] = (200, CONFIG_ANSWER)
    planted = home / "planted.json"
    planted.write_text(json.dumps({"api_url": hostile.url, "token": GOOD_TOKEN}))
    folder = home / ".config" / "exc"
    folder.mkdir(parents=True, mode=0o700)
    (folder / "config.json").symlink_to(planted)
    result = run("whoami")
    assert result.exit_code == 3 and "not logged in" in result.output
    assert hostile.seen == []


def test_the_installed_exc_rotates_a_key_behind_a_profile(live_server, gw, owner, tmp_path):
    """`rotate --profile` switches aws to the new key at once; the old key works on until
    the expiry sweep after the overlap, and then gets 403."""
    out = io.StringIO()
    call_command("create_api_token", "--user", owner.user.email, "--org", "acme", stdout=out)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
        "EXC_TOKEN": out.getvalue().strip(),
        "EXC_API_URL": live_server.url,
    }
    created = exc(env, "buckets", "keys", "create", "--name", "ci")
    assert created.returncode == 0, created.stderr
    old_id, old_secret = re.findall(r": (\S+)\n", created.stdout)
    assert exc(env, "buckets", "keys", "configure", old_id, "--profile", "excloud").returncode == 0
    assert exc(env, "buckets", "keys", "configure", old_id, "--profile", "old").returncode == 0
    bucket = "b-" + old_id.lower()
    assert aws(env, "--profile", "excloud", "s3", "mb", f"s3://{bucket}").returncode == 0

    rotated = exc(
        env, "buckets", "keys", "rotate", old_id, "--profile", "excloud", "--overlap", "1h"
    )
    assert rotated.returncode == 0, rotated.stderr
    match = re.fullmatch(
        r"ACCESS_KEY_ID: (EXC[A-Z2-7]{17})\nSECRET_ACCESS_KEY: ([A-Za-z0-9+/]{40})\n",
        rotated.stdout,
    )
    assert match, rotated.stdout
    new_id, new_secret = match.groups()
    assert new_id != old_id and AccessKey.objects.get(pk=new_id).rotated_from_id == old_id
    credentials = (tmp_path / "aws-credentials").read_text()
    assert f"[excloud]\naws_access_key_id = {new_id}\naws_secret_access_key = {new_secret}\n" in (
        credentials
    )
    assert f"[old]\naws_access_key_id = {old_id}\n" in credentials

    with_new = aws(env, "--debug", "--profile", "excloud", "s3", "ls", f"s3://{bucket}")
    assert with_new.returncode == 0, with_new.stderr[-3000:]
    assert f"Credential={new_id}/" in with_new.stderr
    with_old = aws(env, "--profile", "old", "s3", "ls", f"s3://{bucket}")
    assert with_old.returncode == 0, with_old.stderr

    # The sweep as it runs once the hour's overlap is over.
    assert expiry.expire_due_keys(timezone.now() + timedelta(hours=1, minutes=1)) == 1
    assert AccessKey.objects.get(pk=old_id).status == KeyStatus.EXPIRED
    after = aws(env, "--debug", "--profile", "old", "s3", "ls", f"s3://{bucket}")
    assert refused_with_403(after, gw.url, f"/{bucket}"), after.stderr[-3000:]
    still = aws(env, "--profile", "excloud", "s3", "ls", f"s3://{bucket}")
    assert still.returncode == 0, still.stderr
    assert old_secret not in rotated.stdout + rotated.stderr


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
