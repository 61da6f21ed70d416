"""Paging the key list by cursor, for the keys page and the API alike: a cursor is base64
of the last key's creation time and ID, and one rule decides which cursors are good."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from .credentials import ACCESS_KEY_ID_RE
from .models import AccessKey, AccessKeyQuerySet

# Far longer than any cursor this module hands out, so nothing larger is worth decoding.
CURSOR_MAX_LENGTH = 200
CURSOR_RE = re.compile(r"^[A-Za-z0-9_-]*$")


class InvalidCursor(ValueError):
    """A cursor that no page handed out."""


@dataclass(frozen=True)
class Page:
    keys: list[AccessKey]
    # Where the next page starts, or None on the last page.
    next_cursor: str | None


def encode_cursor(key: AccessKey) -> str:
    raw = f"{key.created_at.isoformat()}|{key.pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(value: str) -> tuple[datetime, str] | None:
    """The creation time (in UTC) and key ID a cursor holds, or None for anything that is
    not a cursor: too long, outside the URL-safe base64 alphabet, broken base64, a time
    without a zone, or one with an offset that puts it outside the years a datetime can hold."""
    if len(value) > CURSOR_MAX_LENGTH or not CURSOR_RE.match(value):
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        created, key_id = raw.split("|", 1)
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None or not ACCESS_KEY_ID_RE.match(key_id):
            return None
        return moment.astimezone(UTC), key_id
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        return None


def page_of(keys: AccessKeyQuerySet, size: int, after: str = "") -> Page:
    """Up to size keys, newest first, from just past the cursor (from the start without
    one). Raises InvalidCursor for a cursor that is not one this module made."""
    if after:
        cursor = decode_cursor(after)
        if cursor is None:
            raise InvalidCursor("That cursor is not one this list gave out.")
        keys = keys.older_than(*cursor)
    page = list(keys.newest_first()[: size + 1])
    return Page(page[:size], encode_cursor(page[size - 1]) if len(page) > size else None)
