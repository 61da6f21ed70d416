"""What the tests of the `exc` command share: the keys and AWS files they start from, a
stand-in API behind httpx, a hostile portal on a local port, and the fixtures that put
the command in a fresh HOME against one or the other."""

from __future__ import annotations

import json
import stat
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from exc_cli import main as cli_main
from exc_cli.client import Api

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


# --- A hostile portal ------------------------------------------------------------------------


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
