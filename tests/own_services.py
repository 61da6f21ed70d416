"""A PostgreSQL server and a Redis server of a test's own, for outage tests.

The shared servers (PostgreSQL on 5432, Redis on 6379) serve every test run on this
machine and must never be stopped. A test that stops, kills or freezes a database starts
its own here, on a free port, and does what it likes with it: ``stop()`` (PostgreSQL's
``immediate`` shutdown, or SIGKILL for Redis), ``start()`` again on the same port and data,
``freeze()`` and ``thaw()`` (SIGSTOP and SIGCONT).

PostgreSQL runs as the ``postgres`` user (it refuses root), from the newest server found
under /usr/lib/postgresql, with its data in a temporary folder owned by that user.
Everything is removed when the context manager (or fixture) ends.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.gateway_stack import REPO, free_port

START_TIMEOUT = 30
POSTGRES_USER = "postgres"
DATABASE = "excloud"


def _postgres_bin() -> Path:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
    )
    if not found:
        raise RuntimeError("no PostgreSQL server under /usr/lib/postgresql")
    return found[-1].parent


def _as_postgres(*command: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["runuser", "-u", POSTGRES_USER, "--", *map(str, command)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )


@dataclass
class OwnPostgres:
    """A PostgreSQL server of the test's own, with one database (``DATABASE``)."""

    port: int
    data: Path
    bin: Path

    @property
    def url(self) -> str:
        return f"postgres://{POSTGRES_USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _pg_ctl(self, *args: str) -> None:
        _as_postgres(self.bin / "pg_ctl", "-D", self.data, "-w", "-t", str(START_TIMEOUT), *args)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl("-o", options, "-l", str(self.data / "server.log"), "start")

    def stop(self) -> None:
        """Stop at once, as a crash would (no checkpoint, connections dropped)."""
        self._pg_ctl("-m", "immediate", "stop")

    def _postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def freeze(self) -> None:
        """SIGSTOP the postmaster and its backends: connections hang, none is refused."""
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def _pids(self) -> list[int]:
        """The postmaster and every process it started."""
        parent = self._postmaster_pid()
        pids = [parent]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                # pid (comm) state ppid ...; comm may hold spaces, so split after it.
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == parent:
                    pids.append(int(stat.parent.name))
        return pids

    def manage(self, *args: str, env: dict[str, str] | None = None) -> str:
        """Run ``manage.py`` on this server's database; its output. ``env`` is the rest of
        the environment (by default this process's, less its database and Redis)."""
        if env is None:
            env = {
                key: value
                for key, value in os.environ.items()
                if not key.startswith(("DATABASE_", "REDIS_"))
            }
            # Development secrets go to the server's folder, not the work tree's var/.
            env["EXCLOUD_VAR_DIR"] = str(self.data.parent / "var")
        done = subprocess.run(
            [str(REPO / ".venv" / "bin" / "python"), "manage.py", *args],
            cwd=REPO,
            env={**env, "DATABASE_URL": self.url, "REDIS_URL": env.get("REDIS_URL", "")},
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
        return done.stdout


@contextlib.contextmanager
def own_postgres_server() -> Iterator[OwnPostgres]:
    """A fresh PostgreSQL cluster on a free port, with an empty ``DATABASE``."""
    postgres = pwd.getpwnam(POSTGRES_USER)
    # Not under pytest's temporary folders: those are private to root.
    home = Path(tempfile.mkdtemp(prefix="excloud-own-pg-"))
    os.chown(home, postgres.pw_uid, postgres.pw_gid)
    server = OwnPostgres(free_port(), home / "data", _postgres_bin())
    try:
        _as_postgres(
            server.bin / "initdb", "-D", server.data, "-U", POSTGRES_USER, "-A", "trust", "-N"
        )
        server.start()
        with psycopg.connect(
            f"postgres://{POSTGRES_USER}@127.0.0.1:{server.port}/postgres", autocommit=True
        ) as connection:
            connection.execute(f"CREATE DATABASE {DATABASE}")
        yield server
    finally:
        if (server.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                server.thaw()
            with contextlib.suppress(subprocess.CalledProcessError):
                server.stop()
        shutil.rmtree(home, ignore_errors=True)


@dataclass
class OwnRedis:
    """A Redis server of the test's own, without persistence."""

    port: int
    log: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited:\n{self.log.read_text()}")
            with contextlib.suppress(OSError):
                with socket.create_connection(("127.0.0.1", self.port), 1) as connection:
                    connection.sendall(b"PING\r\n")
                    if connection.recv(16).startswith(b"+PONG"):
                        return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start:\n{self.log.read_text()}")

    def stop(self) -> None:
        """Kill it (SIGKILL: nothing is saved, connections drop)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def freeze(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


@contextlib.contextmanager
def own_redis_server(tmp: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(free_port(), tmp / "redis.log")
    server.start()
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                server.thaw()
        server.stop()


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[OwnPostgres]:
    """A migrated PostgreSQL server of the module's own, free to stop and start."""
    with own_postgres_server() as server:
        server.manage("migrate", "--no-input")
        yield server


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory) -> Iterator[OwnRedis]:
    """A Redis server of the module's own, free to kill and start."""
    with own_redis_server(tmp_path_factory.mktemp("own-redis")) as server:
        yield server
