"""The development environment: secrets generated once into ``var/dev.env``, and the
folders the embedded defaults keep their data in.

Settings only read the environment. This start-up step gives a checkout what production
sets by hand: ``python -m excloud_portal.devenv COMMAND...`` makes ``var/`` and
``var/dev.env`` (mode 0600) if they are missing, adds the values dev.env lacks to the
environment and runs the command in it. `make run` and `make test` start everything
through it; the environment wins over dev.env, so a value set by hand is kept. The test
run loads it as well (excloud_portal.pytest_devenv), so `pytest` alone works too.

Secrets that earlier versions kept in files of their own under ``var/`` are taken over, so
a checkout keeps the key-encryption key its database was sealed under.

Imports nothing of Django: it runs before there are settings to read.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
from collections.abc import Callable, MutableMapping
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
FILE_NAME = "dev.env"


def _key_encryption_key() -> str:
    return "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _signing_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


# Each variable, the file an earlier version kept it in under var/, and how to make one.
SECRETS: dict[str, tuple[str, Callable[[], str]]] = {
    "DJANGO_SECRET_KEY": ("django-secret-key", lambda: secrets.token_urlsafe(50)),
    "EXCLOUD_SECRET_KEYS": ("secret-keys", _key_encryption_key),
    "EXCLOUD_AUDIT_SIGNING_KEY": ("audit-signing-key", _signing_key),
    "EXCLOUD_EMBEDDED_S3_ACCESS_KEY_ID": (
        "s3-upstream-access-key-id",
        lambda: "UP" + secrets.token_hex(9).upper(),
    ),
    "EXCLOUD_EMBEDDED_S3_SECRET_ACCESS_KEY": (
        "s3-upstream-secret-access-key",
        lambda: secrets.token_urlsafe(30),
    ),
    "EXCLOUD_VERIFY_SERVICE_TOKENS": ("verify-service-token", lambda: secrets.token_urlsafe(32)),
    "EXCLOUD_DEMO_PASSWORD": ("demo-password", lambda: secrets.token_urlsafe(12)),
}
# The embedded defaults' folders: the SQLite file's, static files, the filesystem broker's.
FOLDERS = ("", "static", "celery/queue", "celery/processed", "celery/control")


def var_dir(environ: MutableMapping[str, str] = os.environ) -> Path:
    return Path(environ.get("EXCLOUD_VAR_DIR") or BASE_DIR / "var")


def read(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values[name.strip()] = value.strip()
    return values


def prepare(var: Path) -> dict[str, str]:
    """Make var's folders and its dev.env, completing one that lacks a value; its values."""
    for folder in FOLDERS:
        (var / folder).mkdir(parents=True, exist_ok=True)
    path = var / FILE_NAME
    values = read(path) if path.exists() else {}
    missing = [name for name in SECRETS if not values.get(name)]
    if missing:
        for name in missing:
            old_file = var / SECRETS[name][0]
            values[name] = old_file.read_text().strip() if old_file.exists() else SECRETS[name][1]()
        _write(path, values, replace=path.exists())
        values = read(path)
    return values


def _write(path: Path, values: dict[str, str], *, replace: bool) -> None:
    """Write dev.env through a new file (mode 0600 from the start) put in its place.

    A new dev.env is only linked into place while there is none: of two processes that
    start at once, the second reads back the first one's secrets rather than its own."""
    lines = ["# Development secrets (python -m excloud_portal.devenv). Never commit them."]
    lines += [f"{name}={value}" for name, value in values.items()]
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    if replace:
        os.replace(partial, path)
        return
    try:
        os.link(partial, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(partial)


def load(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """prepare() the environment's var folder and add what it lacks from dev.env."""
    values = prepare(var_dir(environ))
    for name, value in values.items():
        if not environ.get(name):
            environ[name] = value
    return values


def main(argv: list[str]) -> None:
    load()
    if argv:
        os.execvp(argv[0], argv)
    print(var_dir() / FILE_NAME)


if __name__ == "__main__":
    main(sys.argv[1:])
