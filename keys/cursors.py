"""The key list's page cursor, shared by the keys page and the API: where the last page
ended, as base64 of the last key's creation time and ID."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from .credentials import ACCESS_KEY_ID_RE
from .models import AccessKey


def encode_cursor(key: AccessKey) -> str:
    raw = f"{key.created_at.isoformat()}|{key.pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(value: str) -> tuple[datetime, str] | None:
    """The creation time (in UTC) and key ID a cursor holds, or None for anything that is
    not a cursor: broken base64, a time without a zone, or one with an offset that puts it
    outside the years a datetime can hold."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        created, key_id = raw.split("|", 1)
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None or not ACCESS_KEY_ID_RE.match(key_id):
            return None
        return moment.astimezone(UTC), key_id
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        return None
