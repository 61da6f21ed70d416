"""Starting the embedded object store (rclone serve s3) and the gateway for tests.

Both run as subprocesses on free ports, each in its own process group, and are stopped
by the context managers that start them. The gateway reads the pytest database, so tests
that use it need committed rows (``transactional_db``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from excloud_portal import devenv
from gateway import objects

REPO = Path(__file__).resolve().parent.parent
# The programs of the environment running the tests: .venv, or .venv-3.12 and .venv-3.13
# under `make test-pythons`.
BIN = Path(sys.executable).parent
RCLONE = str(BIN / "rclone")
PROCFILE_PROD = REPO / "Procfile.prod"
START_TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_http(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited early:\n{log.read_text(errors='replace')}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not start:\n{log.read_text(errors='replace')}")


def _stop(proc: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM the process group, and SIGKILL it if it has not exited ``grace`` seconds
    later."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _stat_fields(stat: Path) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (state first), or None once the
    process or thread is gone."""
    try:
        return stat.read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def group_pids(pgid: int) -> list[int]:
    """The processes of process group ``pgid``."""
    return [
        int(stat.parent.name)
        for stat in Path("/proc").glob("[0-9]*/stat")
        if (fields := _stat_fields(stat)) is not None and int(fields[2]) == pgid
    ]


# /proc states of a thread that runs no more: stopped, traced, zombie, dead.
STOPPED = frozenset("TtZX")


def freeze(*pids: int) -> None:
    """SIGSTOP each process and wait until every thread of each has stopped.

    kill() returns once the signal is queued: the kernel hands a process's stop to one of
    its threads, and the others (a Go program's, say) run on until that one is scheduled,
    so on a busy machine a request sent just after kill() could still be answered. A
    process that has exited counts as frozen, and so does one that exited as the stop
    came: its parent, stopped too, cannot reap it, so it stays a zombie until thawed."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + START_TIMEOUT
    running = list(pids)
    while running:
        running = [
            pid
            for pid in running
            if any(
                (fields := _stat_fields(stat)) is not None and fields[0] not in STOPPED
                for stat in Path(f"/proc/{pid}/task").glob("*/stat")
            )
        ]
        if running:
            assert time.monotonic() < deadline, f"processes {running} did not stop"
            time.sleep(0.005)


def thaw(*pids: int) -> None:
    """SIGCONT each process (one that has exited is skipped)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


@dataclass
class Upstream:
    url: str
    access_key_id: str
    secret_access_key: str
    root: Path
    # The store's process: a test that owns the store may freeze it (SIGSTOP).
    pid: int = 0


@contextlib.contextmanager
def upstream(tmp: Path) -> Iterator[Upstream]:
    """rclone serve s3 over ``tmp/objects`` with fresh credentials."""
    root = tmp / "objects"
    root.mkdir(parents=True, exist_ok=True)
    access_key_id = "UP" + secrets.token_hex(8).upper()
    secret = secrets.token_urlsafe(30)
    port = free_port()
    log = tmp / "rclone.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            objects.command(root, f"127.0.0.1:{port}"),
            env={**os.environ, **objects.credentials_env(access_key_id, secret)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for_http(url + "/", proc, log)
        yield Upstream(url, access_key_id, secret, root, proc.pid)
    finally:
        _stop(proc)


@dataclass
class Gateway:
    url: str
    log: Path
    pid: int


def database_url() -> str:
    db = settings.DATABASES["default"]
    assert db["ENGINE"] == "django.db.backends.postgresql", "gateway tests need PostgreSQL"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = f"{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
    return f"postgres://{user}{password}@{host}/{db['NAME']}"


def stack_env(
    var: Path,
    store: Upstream,
    *,
    redis_url: str = "",
    endpoint: str = "http://127.0.0.1:9000",
    read_only: bool = False,
    database: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """The environment of a gateway or worker process on the test database (or the
    ``database`` URL given).

    ``read_only`` makes every database session of the process read-only, so any write it
    attempts fails (the gateway may only read on its request path).
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "REDIS_", "EXCLOUD_", "DJANGO_"))
    }
    db_url = database or database_url()
    if read_only:
        db_url += "?options=-c%20default_transaction_read_only%3Don"
    env.update(
        DATABASE_URL=db_url,
        REDIS_URL=redis_url,
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        EXCLOUD_SECRET_KEYS=settings.EXCLOUD_SECRET_KEYS,
        EXCLOUD_VAR_DIR=str(var),
        EXCLOUD_S3_ENDPOINT=endpoint,
        EXCLOUD_S3_REGION=settings.EXCLOUD_S3_REGION,
        EXCLOUD_S3_UPSTREAM_URL=store.url,
        EXCLOUD_S3_UPSTREAM_ACCESS_KEY_ID=store.access_key_id,
        EXCLOUD_S3_UPSTREAM_SECRET_ACCESS_KEY=store.secret_access_key,
        **extra,
    )
    # The rest as `make run`'s start-up step gives it, in the process's own var folder.
    devenv.load(env)
    return env


@contextlib.contextmanager
def gateway(
    tmp: Path,
    store: Upstream,
    *,
    redis_url: str = "",
    endpoint_host: str = "127.0.0.1",
    var: Path | None = None,
    read_only: bool = False,
    http: str = "httptools",
    forwarded_allow_ips: str = "",
    database: str | None = None,
    **extra: str,
) -> Iterator[Gateway]:
    """gateway.serve (uvicorn) serving gateway.app against the test database (and Redis,
    if given), with the ``http`` parser implementation: httptools or h11, believing
    X-Forwarded-For only from ``forwarded_allow_ips``.

    ``endpoint_host`` is the public host name: requests to <bucket>.<endpoint_host> are
    virtual-hosted style. The gateway listens on 127.0.0.1 whatever it is.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    if var is None:
        var = tmp / f"var-{port}"
        var.mkdir(parents=True)
    env = stack_env(
        var,
        store,
        redis_url=redis_url,
        endpoint=f"http://{endpoint_host}:{port}",
        read_only=read_only,
        database=database,
        **extra,
    )
    log = tmp / f"gateway-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "python"),
                "-m",
                "gateway.serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--http",
                http,
                "--forwarded-allow-ips",
                forwarded_allow_ips,
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_http(url + "/", proc, log)
        yield Gateway(url, log, proc.pid)
    finally:
        _stop(proc)


@contextlib.contextmanager
def web(tmp: Path, store: Upstream, *, var: Path, **env: str) -> Iterator[str]:
    """The portal itself (uvicorn serving excloud_portal.asgi) on a free port, with the
    environment stack_env() gives for ``env`` (redis_url, database, settings); its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp / f"web-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "python"),
                "-m",
                "uvicorn",
                "excloud_portal.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=REPO,
            env=stack_env(var, store, **env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_http(url + "/accounts/login/", proc, log)
        yield url
    finally:
        _stop(proc)


@contextlib.contextmanager
def worker(
    tmp: Path,
    store: Upstream,
    *,
    redis_url: str = "",
    var: Path,
    database: str | None = None,
    **extra: str,
) -> Iterator[Path]:
    """A Celery worker on the test database (or ``database``) and the same broker as a
    gateway given the same ``redis_url`` and ``var`` (Redis, or the filesystem broker in
    ``var``)."""
    log = tmp / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "celery"),
                "-A",
                "excloud_portal",
                "worker",
                "--pool=solo",
                "--loglevel=INFO",
                "--without-mingle",
                "--without-gossip",
            ],
            cwd=REPO,
            env=stack_env(var, store, redis_url=redis_url, database=database, **extra),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while " ready." not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        yield log
    finally:
        _stop(proc)


@dataclass
class Served:
    """A process of a Procfile, serving HTTP at ``url``."""

    url: str
    log: Path
    pid: int


def procfile_command(name: str, procfile: Path = PROCFILE_PROD) -> str:
    """The command line of process type ``name`` in ``procfile``."""
    for line in procfile.read_text().splitlines():
        kind, _, command = line.partition(":")
        if kind.strip() == name:
            return command.strip()
    raise LookupError(f"{procfile.name} has no {name!r} process")


@contextlib.contextmanager
def procfile_process(
    tmp: Path, name: str, env: dict[str, str], ready_url: str, procfile: Path = PROCFILE_PROD
) -> Iterator[Served]:
    """Process type ``name`` of ``procfile`` run as honcho runs it (its command line by
    /bin/sh in the repository, with ``env``), once ``ready_url`` answers: its URL (the
    scheme and address of ``ready_url``), log and process ID."""
    address = urllib.parse.urlsplit(ready_url)
    log = tmp / f"{name}-{address.port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", procfile_command(name, procfile)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_http(ready_url, proc, log)
        yield Served(f"{address.scheme}://{address.netloc}", log, proc.pid)
    finally:
        _stop(proc)
