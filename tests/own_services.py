"""A Redis and a PostgreSQL of the test's own, on free ports, to kill, freeze and restart.

Fault tests must never stop the machine's shared services (5432, 6379): these run from
temporary directories and are stopped by the context managers that start them. Redis
keeps nothing on disk (``--save "" --appendonly no``), so a restarted Redis is empty, as
after a crash. PostgreSQL runs as the ``postgres`` user from ``/usr/lib/postgresql``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import redis

from excloud_portal import devenv
from tests.gateway_stack import REPO, free_port, freeze

START_TIMEOUT = 30


def _wait(ready, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if time.monotonic() > deadline:
            detail = log.read_text(errors="replace") if log and log.exists() else ""
            raise RuntimeError(f"{what} did not start\n{detail}")
        time.sleep(0.05)


class OwnRedis:
    """redis-server on a free port; ``kill``/``start`` and ``freeze``/``thaw``.

    With ``password``, clients must log in; with ``tls`` (a certificate and its key, the
    certificate also the CA), the port speaks only TLS."""

    def __init__(
        self,
        directory: Path,
        *,
        password: str | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.directory = directory
        self.port = free_port()
        self.log = directory / "redis.log"
        self.proc: subprocess.Popen | None = None
        self.password = password
        self.tls = tls

    def url(self, db: int = 0) -> str:
        scheme = "rediss" if self.tls else "redis"
        login = f":{self.password}@" if self.password else ""
        return f"{scheme}://{login}127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        """A redis-py client of this server's, logged in."""
        tls = {"ssl": True, "ssl_ca_certs": str(self.tls[0])} if self.tls else {}
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            db=db,
            password=self.password,
            socket_timeout=0.5,
            **tls,
        )

    def _answers(self) -> bool:
        try:
            return self.client().ping()
        except redis.RedisError:
            return False

    def _listen_args(self) -> list[str]:
        args = ["--requirepass", self.password] if self.password else []
        if not self.tls:
            return [*args, "--port", str(self.port)]
        certificate, key = (str(path) for path in self.tls)
        return [
            *args,
            "--port",
            "0",
            "--tls-port",
            str(self.port),
            "--tls-cert-file",
            certificate,
            "--tls-key-file",
            key,
            "--tls-ca-cert-file",
            certificate,
            "--tls-auth-clients",
            "no",
        ]

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    "redis-server",
                    *self._listen_args(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            _wait(self._answers, "redis-server", self.log)
        except BaseException:
            # Not left running when it never answered.
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL: gone, with whatever it held."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None

    def freeze(self) -> None:
        """SIGSTOP: connections are accepted by the kernel but nothing answers."""
        assert self.proc is not None
        freeze(self.proc.pid)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None:
            self.kill()


@contextlib.contextmanager
def own_redis(directory: Path, **options) -> Iterator[OwnRedis]:
    server = OwnRedis(directory, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _pg_bin() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda path: int(Path(path).parent.name)
    )
    if not found:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql")
    return Path(found[-1])


class OwnPostgres:
    """A PostgreSQL cluster in a temporary directory, run as the ``postgres`` user."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        # Not under pytest's tmp_path: the postgres user cannot enter root's 0700 tree.
        self.root = Path(tempfile.mkdtemp(prefix="excloud-pg-"))
        user = pwd.getpwnam("postgres")
        os.chown(self.root, user.pw_uid, user.pw_gid)
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()

    def url(self, name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=True,
            capture_output=True,
            cwd=self.root,
        )

    def init(self) -> None:
        self._as_postgres(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "--auth=trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def _answers(self) -> bool:
        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=1) as conn:
                conn.execute("select 1")
            return True
        except psycopg.Error:
            return False

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c full_page_writes=off"
        )
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "start",
        )  # fmt: skip
        _wait(self._answers, "PostgreSQL", self.log)

    def kill(self) -> None:
        """An immediate shutdown: every server process quits at once, without a
        checkpoint, and the next start recovers from the WAL as after a crash."""
        self.thaw()
        self._as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")

    def _processes(self) -> list[int]:
        """The postmaster and every process it started."""
        pid_file = self.data / "postmaster.pid"
        if not pid_file.exists():
            return []
        postmaster = int(pid_file.read_text().split()[0])
        pids = [postmaster]
        for stat in glob.glob("/proc/[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == postmaster:
                    pids.append(int(Path(stat).parent.name))
        return pids

    def freeze(self) -> None:
        """SIGSTOP to every server process: connections hang, nothing is refused."""
        freeze(*self._processes())

    def thaw(self) -> None:
        for pid in self._processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    def create_database(self, name: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'create database "{name}"')

    def manage(self, database: str, *args: str, env: dict[str, str] | None = None) -> str:
        """Run ``manage.py`` on ``database`` of this server; its output. ``env`` is the rest
        of the environment (by default this process's, less its database and Redis)."""
        if env is None:
            env = {
                key: value
                for key, value in os.environ.items()
                if not key.startswith(("DATABASE_", "REDIS_"))
            }
            # Development secrets go to the server's folder, not the work tree's var/.
            env["EXCLOUD_VAR_DIR"] = str(self.root / "var")
            devenv.load(env)
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO,
            env={**env, "DATABASE_URL": self.url(database), "REDIS_URL": env.get("REDIS_URL", "")},
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
        return done.stdout

    def stop(self) -> None:
        self.thaw()
        with contextlib.suppress(subprocess.CalledProcessError):
            self._as_postgres(
                str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"
            )


@contextlib.contextmanager
def own_postgres() -> Iterator[OwnPostgres]:
    server = OwnPostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
