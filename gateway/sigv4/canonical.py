"""The canonical URI and query string of a raw S3 request target."""

from __future__ import annotations

import re
from urllib.parse import quote_from_bytes, unquote_to_bytes

from .errors import S3Error

# Already canonical: unreserved characters and uppercase escapes of bytes that are not
# unreserved (nor "/" in a path). Such input is its own canonical form, which spares the
# decode and re-encode on the hot path. Two cheap scans beat one regex with alternatives.
_PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~/%]*").fullmatch
_QUERY_CHARS = re.compile(r"[A-Za-z0-9\-._~=&%]*").fullmatch
_QUERY_PART_CHARS = re.compile(r"[A-Za-z0-9\-._~%]*").fullmatch
_PATH_ESCAPE_TO_REWRITE = re.compile(
    r"%(?![0189A-F][0-9A-F]|2[0-9A-C]|3[A-F]|[46]0|5[B-E]|7[B-DF])"
).search
_QUERY_ESCAPE_TO_REWRITE = re.compile(
    r"%(?![0189A-F][0-9A-F]|2[0-9A-CF]|3[A-F]|[46]0|5[B-E]|7[B-DF])"
).search
_RAW_EQUALS_IN_VALUE = re.compile(r"=[^&]*=").search
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})").search


def canonical_uri(path: str) -> str:
    """The canonical URI of a raw S3 path: decoded once, re-encoded once (never twice).

    Only ``A-Za-z0-9-_.~/`` stay literal; every other byte of the UTF-8 form becomes an
    uppercase ``%XX`` (a ``+`` is ``%2B``); ``//`` and dot segments are kept as sent.
    """
    if _PATH_CHARS(path) and not _PATH_ESCAPE_TO_REWRITE(path):
        return path or "/"
    if _BAD_ESCAPE(path):
        raise S3Error("InvalidURI", 400, "Couldn't parse the specified URI.")
    return quote_from_bytes(unquote_to_bytes(path), safe="/~")


def _query_component(raw: str) -> str:
    if _QUERY_PART_CHARS(raw) and not _QUERY_ESCAPE_TO_REWRITE(raw):
        return raw
    if _BAD_ESCAPE(raw):
        raise S3Error("InvalidURI", 400, "Couldn't parse the specified URI.")
    # A literal '+' in a raw query means a space, as MinIO and RGW read it.
    return quote_from_bytes(unquote_to_bytes(raw.replace("+", " ")), safe="~")


def canonical_query(query: str, *, exclude: str | None = None) -> str:
    """The canonical query string: each key and value decoded and re-encoded (RFC 3986),
    ``key`` without ``=`` as ``key=``, sorted by key then value; ``exclude`` drops a key."""
    if not query:
        return ""
    return _canonical_query(query, exclude, None)


def _canonical_query(query: str, exclude: str | None, items: list[str] | None) -> str:
    if (
        _QUERY_CHARS(query)
        and not _QUERY_ESCAPE_TO_REWRITE(query)
        and not _RAW_EQUALS_IN_VALUE(query)
    ):
        # Every key and value is encoded as it must be already: only sort. With "\0" (which
        # no canonical text contains) in place of "=", plain string order is the order by
        # key, then value.
        if items is None:
            items = [
                item if "\0" in item else item + "\0"
                for item in query.replace("=", "\0").split("&")
                if item
            ]
            if exclude is not None:
                prefix = exclude + "\0"
                items = [item for item in items if not item.startswith(prefix)]
        items = sorted(items)
        return "&".join(items).replace("\0", "=")
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        if key == exclude:
            continue
        pairs.append((_query_component(key), _query_component(value)))
    pairs.sort()
    return "&".join([key + "=" + value for key, value in pairs])


def _decode_query_value(raw: str) -> str:
    if "%" not in raw and "+" not in raw:
        return raw
    # X-Amz-Credential only escapes its slashes: spare it the general decoder.
    simple = raw.replace("%2F", "/")
    if "%" not in simple and "+" not in simple:
        return simple
    return unquote_to_bytes(raw.replace("+", " ")).decode("utf-8", "replace")
