"""`exc login` in a terminal (a pseudo-terminal here) approved or denied in Chromium; the
installed command then works with the token it received."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from accounts.models import ApiToken
from tests import test_browser

from .conftest import PASSWORD

pytestmark = pytest.mark.browser

open_page = test_browser.open_page
EXC = Path(sys.executable).with_name("exc")
CODE_RE = re.compile(r"enter the code: ([A-Z0-9]{4}-[A-Z0-9]{4})")
URL_RE = re.compile(r"To sign in, open (\S+)")
WAIT_SECONDS = 60


class Terminal:
    """A command on a pseudo-terminal, as a person would run it, and what it printed."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
        )
        os.close(slave)
        self.output = ""

    def _read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                self.output += os.read(self.master, 4096).decode(errors="replace")
            except OSError:  # the command exited and closed the terminal
                pass

    def wait_for(self, pattern: re.Pattern[str]) -> re.Match[str]:
        deadline = time.monotonic() + WAIT_SECONDS
        while not (match := pattern.search(self.output)):
            assert time.monotonic() < deadline, self.output
            assert self.proc.poll() is None or self._drain(), self.output
            self._read(0.5)
        return match

    def _drain(self) -> bool:
        self._read(0.1)
        return True

    def finish(self) -> int:
        code = self.proc.wait(timeout=WAIT_SECONDS)
        self._read(0.5)
        os.close(self.master)
        return code


@pytest.fixture
def terminal_env(tmp_path, settings) -> dict[str, str]:
    # A person's terminal polls every five seconds; the test's every second.
    settings.EXCLOUD_DEVICE_LOGIN_INTERVAL = 1
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "TERM": "xterm"}


def exc_login(live_server, env: dict[str, str]) -> Terminal:
    return Terminal(
        [str(EXC), "login", "--api-url", live_server.url, "--device-name", "ci-box"], env
    )


def open_and_sign_in(page: Page, url: str, email: str) -> None:
    page.goto(url)
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_exc_login_is_approved_in_the_browser(
    transactional_db, owner, open_page, live_server, terminal_env
):
    terminal = exc_login(live_server, terminal_env)
    code = terminal.wait_for(CODE_RE).group(1)
    url = terminal.wait_for(URL_RE).group(1)
    assert url == f"{live_server.url}/device/"

    page = open_page()
    open_and_sign_in(page, f"{url}?code={code}", owner.user.email)
    expect(page.get_by_label("Code")).to_have_value(code)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Is this your device?")).to_be_visible()
    expect(page.locator("#device-name")).to_have_text("ci-box")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("heading", name="Device approved")).to_be_visible()

    assert terminal.finish() == 0, terminal.output
    assert f"Logged in to {owner.org.name}" in terminal.output
    token = ApiToken.objects.get(user=owner.user)
    assert token.name == "ci-box" and token.expires_at is not None
    # The token never reaches the terminal, not even its first characters.
    assert token.prefix not in terminal.output

    listed = subprocess.run(
        [str(EXC), "buckets", "keys", "list"],
        env=terminal_env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:2] == ["ID", "NAME"]


def test_exc_login_denied_in_the_browser_ends_with_the_denial(
    transactional_db, owner, open_page, live_server, terminal_env
):
    terminal = exc_login(live_server, terminal_env)
    code = terminal.wait_for(CODE_RE).group(1)
    page = open_page()
    open_and_sign_in(page, f"{live_server.url}/device/", owner.user.email)
    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Continue").click()
    page.get_by_role("button", name="Deny").click()
    expect(page.get_by_role("heading", name="Device denied")).to_be_visible()

    assert terminal.finish() == 6, terminal.output
    assert "exc: error: the sign-in was denied in the browser; no token" in terminal.output
    assert not ApiToken.objects.exists()
    assert not (Path(terminal_env["HOME"]) / ".config" / "exc" / "config.json").exists()
