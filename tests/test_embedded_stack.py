"""The embedded default end to end, as `make run` starts it.

No DATABASE_URL and no REDIS_URL: SQLite and the filesystem Celery broker in a fresh
EXCLOUD_VAR_DIR. Migrate, create the demo login, start the web server and a worker, sign
in through the real login form over HTTP, open the demo org's keys page, and have the
worker run a task it took from the filesystem broker.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from excloud_portal import devenv

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"
PYTHON = str(BIN / "python")
CELERY = str(BIN / "celery")
MANAGE = str(REPO / "manage.py")
# What picks a backend or a secret; the embedded default is what runs without them, and
# the secrets are the ones the start-up step generates into EXCLOUD_VAR_DIR.
UNSET = ("DATABASE_URL", "REDIS_URL", *devenv.SECRETS)
START_TIMEOUT = 60
STOP_TIMEOUT = 15
PROCFILE_PROCESSES = {"web", "worker", "beat", "gateway", "objects"}


class Stack:
    """Subprocesses, each in its own process group so stopping one stops its children."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.cwd = tmp_path / "cwd"
        self.cwd.mkdir()
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        self.env = env
        self.procs: dict[str, subprocess.Popen] = {}

    def run(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            args,
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    def start(self, name: str, *args: str) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                args,
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def all_logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log(name)}" for name in self.procs)

    def stop(self) -> list[str]:
        """Stop every process group; return the names of groups that outlived SIGKILL."""
        for proc in self.procs.values():
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        survivors = []
        for name, proc in self.procs.items():
            # The leader may be gone while its children (the worker's pool) are not.
            if _signal_group(proc, signal.SIGKILL):
                survivors.append(name)
            proc.wait(timeout=STOP_TIMEOUT)
        return survivors


def _signal_group(proc: subprocess.Popen, sig: int) -> bool:
    """Send sig to the process's group; False when the group no longer exists."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(what: str, check, stack: Stack, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if check():
            return
        if proc.poll() is not None:
            pytest.fail(f"{what}: the process exited with {proc.returncode}\n{stack.all_logs()}")
        time.sleep(0.2)
    pytest.fail(f"{what}: nothing after {START_TIMEOUT}s\n{stack.all_logs()}")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture
def stack(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in UNSET}
    env.update(
        EXCLOUD_VAR_DIR=str(tmp_path / "var"),
        DJANGO_DEBUG="1",
        DJANGO_SETTINGS_MODULE="excloud_portal.settings",
        # The processes run in an empty directory, to show they write nothing outside
        # EXCLOUD_VAR_DIR; the project is found through PYTHONPATH instead.
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
    )
    # `make run`'s start-up step: var/dev.env, loaded into the environment.
    devenv.load(env)
    stack = Stack(tmp_path, env)
    try:
        yield stack
    finally:
        survivors = stack.stop()
    assert not survivors, f"still running after SIGKILL: {survivors}"


def test_it_runs_the_embedded_stack(stack, tmp_path):
    var = tmp_path / "var"
    stack.run(PYTHON, MANAGE, "migrate", "--noinput")
    demo = stack.run(PYTHON, MANAGE, "demo_setup")
    email = re.search(r"Sign in as:\s+(\S+)", demo).group(1)
    password = re.search(r"Password:\s+(\S+)", demo).group(1)

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    web = stack.start("web", PYTHON, MANAGE, "runserver", f"127.0.0.1:{port}", "--noreload")
    worker = stack.start(
        "worker", CELERY, "-A", "excloud_portal", "worker", "--concurrency=1", "--loglevel=INFO"
    )
    _wait_for("web server", lambda: _answers(f"{base}/accounts/login/"), stack, web)

    # Sign in through the form, as a browser does: session and CSRF cookies in a jar.
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with browser.open(f"{base}/orgs/demo/keys/") as response:
        assert urllib.parse.urlsplit(response.url).path == "/accounts/login/"
        form = response.read().decode()
    fields = {
        "csrfmiddlewaretoken": re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)[1],
        "username": email,
        "password": password,
        "next": re.search(r'name="next" value="([^"]*)"', form)[1],
    }
    with browser.open(
        f"{base}/accounts/login/", data=urllib.parse.urlencode(fields).encode()
    ) as response:
        assert response.url == f"{base}/orgs/demo/keys/"
        page = response.read().decode()
    assert "<h1>Access keys</h1>" in page
    assert f"Signed in as {email}" in page
    # Plain http, as `make run` serves it: no redirect to https, no cookie marked Secure.
    assert {cookie.name: cookie.secure for cookie in jar} == {
        "csrftoken": False,
        "sessionid": False,
    }
    assert "No keys yet." in page

    # The worker takes a task from the filesystem broker and runs it: celery.accumulate
    # is built into every Celery app and returns its arguments, which the worker logs.
    _wait_for("worker", lambda: " ready." in stack.log("worker"), stack, worker)
    assert "Connected to filesystem://" in stack.log("worker")
    token = uuid.uuid4().hex
    task_id = stack.run(
        CELERY, "-A", "excloud_portal", "call", "celery.accumulate", "--args", json.dumps([token])
    ).strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", task_id), task_id
    done = re.compile(
        rf"Task celery\.accumulate\[{re.escape(task_id)}\] succeeded in [0-9.e-]+s: \('{token}',\)"
    )
    _wait_for("task result", lambda: done.search(stack.log("worker")), stack, worker)

    # Remote control goes through the same broker, by broadcast.
    node = re.search(r"(\S+@\S+) ready\.", stack.log("worker")).group(1)
    pong = stack.run(
        CELERY, "-A", "excloud_portal", "inspect", "ping", "-d", node, "--timeout", "10"
    )
    assert f"{node}: OK" in pong

    # Everything lives under EXCLOUD_VAR_DIR: the SQLite database with the demo org,
    # development secrets readable only by their owner, and the broker's folders.
    with sqlite3.connect(var / "db.sqlite3") as db:
        assert db.execute("SELECT slug FROM accounts_organization").fetchall() == [("demo",)]
    assert stat.S_IMODE((var / "dev.env").stat().st_mode) == 0o600
    dev_env = devenv.read(var / "dev.env")
    for secret in ("DJANGO_SECRET_KEY", "EXCLOUD_SECRET_KEYS", "EXCLOUD_DEMO_PASSWORD"):
        assert dev_env[secret] == stack.env[secret]
    assert list(stack.cwd.iterdir()) == []


def test_it_has_a_procfile_that_honcho_accepts():
    result = subprocess.run(
        [str(BIN / "honcho"), "-f", "Procfile.dev", "check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    detected = re.search(r"Valid procfile detected \(([^)]*)\)", result.stdout + result.stderr)
    assert detected, result.stdout + result.stderr
    assert PROCFILE_PROCESSES <= set(detected.group(1).split(", "))
    # honcho accepts any command; each must also name a program that exists.
    for line in (REPO / "Procfile.dev").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() in PROCFILE_PROCESSES:
            program = shlex.split(command)[0]
            path = REPO / program if "/" in program else shutil.which(program)
            assert path and os.access(path, os.X_OK), line
