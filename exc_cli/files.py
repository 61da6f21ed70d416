"""Files the command writes: its own login and key store, and the AWS config files.

Every write is atomic (a temporary file in the same directory, then os.replace) and leaves
the file readable by its owner only, since each of these files may hold a credential.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Any

PRIVATE_MODE = 0o600
SECTION_RE = re.compile(r"^\s*\[([^\]]*)\]")
KEY_RE = re.compile(r"^([^\s=#;\[][^=]*?)\s*=")


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "exc"


def login_path() -> Path:
    return config_dir() / "config.json"


def key_store_path() -> Path:
    return config_dir() / "keys.json"


def aws_config_path() -> Path:
    return Path(os.path.expanduser(os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config"))


def aws_credentials_path() -> Path:
    return Path(
        os.path.expanduser(os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials")
    )


class UnsafeFileError(OSError):
    """A file or folder exc refuses to write, because someone else could read or swap it."""


def _check_folder(fd: int, folder: Path) -> None:
    info = os.fstat(fd)
    if info.st_uid != os.getuid():
        raise UnsafeFileError(f"refusing to write in {folder}: it belongs to another user")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeFileError(
            f"refusing to write in {folder}: others may write to it (run `chmod go-w {folder}`)"
        )


def _open_folder(folder: Path) -> int:
    """The folder, opened without following a symlink, after checking who may change it."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as e:
        if os.path.islink(folder):
            raise UnsafeFileError(f"refusing to write in {folder}: it is a symlink") from None
        raise OSError(f"cannot open {folder}: {e.strerror}") from None
    try:
        _check_folder(fd, folder)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: Path, text: str, *, follow_link: bool = False) -> None:
    """Replace the file's content in one step, with mode 0600 whatever it had before.

    The new content goes to a fresh file created with O_EXCL | O_NOFOLLOW in the same
    folder, which then takes the file's name; so a symlink planted at the path is replaced,
    never written through, and the folder must belong to this user and be writable by
    nobody else. With ``follow_link`` (the AWS files, which people keep linked from a
    dotfiles repository) a symlink's target is written instead, under the same checks on
    the link's folder and on the target's.
    """
    if follow_link and os.path.islink(path):
        os.close(_open_folder(path.parent))
        path = Path(os.path.realpath(path))
    folder = _open_folder(path.parent)
    tmp = f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            PRIVATE_MODE,
            dir_fd=folder,
        )
        try:
            os.fchmod(fd, PRIVATE_MODE)
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=folder)
            except FileNotFoundError:
                pass
            raise
    finally:
        os.close(folder)


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object in exc's own file; a symlink in its place counts as no file, since
    exc never writes one there (the next write replaces it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return {}
    except OSError as e:
        if os.path.islink(path):
            return {}
        raise OSError(f"cannot read {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise OSError(f"cannot read {path}: {e}") from None
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_private(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _section_name(line: str) -> str | None:
    match = SECTION_RE.match(line)
    return " ".join(match.group(1).split()) if match else None


def _setting(name: str, value: str | dict[str, str]) -> str:
    """One setting's lines; a dict is a nested block, as aws reads ``s3 =`` settings."""
    if isinstance(value, dict):
        return f"{name} =\n" + "".join(f"    {k} = {v}\n" for k, v in value.items())
    return f"{name} = {value}\n"


def set_section(text: str, section: str, values: dict[str, str | dict[str, str]]) -> str:
    """The INI text with these keys set in the section, everything else left as it was.

    configparser would drop comments and reformat the file, so this edits lines: within
    the first section of that name it replaces each key's line (and any indented lines
    that continue it, as in aws's nested ``s3 =`` settings) and adds missing keys after
    the section's last setting; a missing section is appended at the end.
    """
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _section_name(line) == section), None)
    if start is None:
        block = [f"[{section}]\n", *(_setting(k, v) for k, v in values.items())]
        prefix = text if not text or text.endswith("\n") else text + "\n"
        separator = "\n" if prefix.strip() else ""
        return prefix + separator + "".join(block)

    end = next(
        (i for i in range(start + 1, len(lines)) if _section_name(lines[i]) is not None),
        len(lines),
    )
    body: list[str] = []
    written: set[str] = set()
    skipping_continuation = False
    for line in lines[start + 1 : end]:
        if skipping_continuation and line[:1] in (" ", "\t") and line.strip():
            continue
        skipping_continuation = False
        match = KEY_RE.match(line)
        name = match.group(1).strip() if match else None
        if name in values:
            skipping_continuation = True
            if name not in written:
                body.append(_setting(name, values[name]))
                written.add(name)
            continue
        body.append(line)
    missing = [_setting(k, v) for k, v in values.items() if k not in written]
    if missing:
        # After the section's last setting: a comment below it is about the next section.
        last = max(
            (i for i, line in enumerate(body) if line.strip() and line.lstrip()[0] not in "#;"),
            default=-1,
        )
        if last >= 0 and not body[last].endswith("\n"):
            body[last] += "\n"
        body[last + 1 : last + 1] = missing
    header = lines[start] if lines[start].endswith("\n") else lines[start] + "\n"
    return "".join(lines[:start]) + header + "".join(body) + "".join(lines[end:])


def update_ini(path: Path, section: str, values: dict[str, str | dict[str, str]]) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    write_private(path, set_section(text, section, values), follow_link=True)
