"""The request as the server received it: raw path, raw query and header lines."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_from_bytes

# Everything printable in ASCII: a raw request target keeps these as they came, and only
# bytes outside ASCII are percent-encoded, which canonicalization treats identically.
_ASCII_PRINTABLE = "".join(chr(c) for c in range(0x21, 0x7F))


def _raw_to_str(raw: bytes) -> str:
    if raw.isascii():
        return raw.decode("ascii")
    return quote_from_bytes(raw, safe=_ASCII_PRINTABLE)


@dataclass(slots=True)
class Request:
    """A request as the server received it.

    ``path`` is the raw request-target path exactly as sent (still percent-encoded, no
    query), ``query`` the raw query string without ``?``, ``headers`` every header line as
    a (name, value) pair in arrival order (repeats allowed; values decoded as Latin-1 when
    they come as bytes), ``now`` the server's clock in Unix seconds when it arrived.
    """

    method: str
    path: str
    query: str = ""
    headers: Sequence[tuple[str, str]] = ()
    now: float = field(default_factory=time.time)
    # The headers by lowercase name, when the builder already made it (from_asgi does).
    header_map: dict[str, list[str]] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_asgi(cls, scope: Mapping[str, Any], now: float | None = None) -> Request:
        """Build from an ASGI HTTP scope, reading the raw path rather than the decoded one.

        Header names are taken as ASGI requires them, lowercase; values are Latin-1.
        """
        raw_path = scope.get("raw_path")
        if raw_path:
            if b"?" in raw_path:
                # Some servers have been known to leave the query on raw_path.
                raw_path = raw_path.partition(b"?")[0]
            path = raw_path.decode("ascii") if raw_path.isascii() else _raw_to_str(raw_path)
        else:
            path = quote_from_bytes(scope["path"].encode("utf-8"), safe="/")
        raw_query = scope.get("query_string") or b""
        query = raw_query.decode("ascii") if raw_query.isascii() else _raw_to_str(raw_query)
        headers = []
        header_map: dict[str, list[str]] = {}
        for raw_name, raw_value in scope["headers"]:
            # ASGI header names are lowercase already.
            name = raw_name.decode("latin-1")
            value = raw_value.decode("latin-1")
            headers.append((name, value))
            values = header_map.get(name)
            if values is None:
                header_map[name] = [value]
            else:
                values.append(value)
        return cls(
            scope["method"],
            path,
            query,
            headers,
            time.time() if now is None else now,
            header_map,
        )


def _header_map(headers: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for name, value in headers:
        lname = name.lower()
        values = result.get(lname)
        if values is None:
            result[lname] = [value]
        else:
            values.append(value)
    return result
