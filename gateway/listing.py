"""ListBuckets: the store's whole list, cut down to the buckets of the key's org.

Django-free. The store lists every bucket it holds, whoever's; the gateway reads the
whole answer (a page of it, with its continuation token, would speak of other orgs'
buckets), asks which of the names the org holds, and answers with only those.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable

from . import http1, operations, s3errors

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
LIST_BUCKETS_MAX_BYTES = 16 * 1024 * 1024


async def org_buckets(
    response: http1.Response,
    query: str,
    held: Callable[[list[str]], Awaitable[set[str]]],
) -> bytes:
    """The store's ListBuckets answer with only the buckets ``held`` says are the org's
    (of those matching the request's prefix)."""
    body = await read_whole(response)
    prefix = operations.query_params(query).get("prefix", "")
    names = [name for name in bucket_names(body) if name.startswith(prefix)]
    return filter_list_buckets(body, await held(names))


async def read_whole(response: http1.Response) -> bytes:
    parts = []
    size = 0
    async for piece in response.aiter_raw():
        size += len(piece)
        if size > LIST_BUCKETS_MAX_BYTES:
            raise s3errors.internal_error("The bucket list is too large.")
        parts.append(piece)
    return b"".join(parts)


def filter_list_buckets(body: bytes, allowed: set[str]) -> bytes:
    ET.register_namespace("", S3_NS)
    root = ET.fromstring(body)
    for container in list(root.iter()):
        for child in list(container):
            if _local(child.tag) == "ContinuationToken":
                container.remove(child)
            elif _local(child.tag) == "Bucket":
                names = [c.text for c in child if _local(c.tag) == "Name"]
                if not names or names[0] not in allowed:
                    container.remove(child)
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        + ET.tostring(root, encoding="utf-8").split(b"?>", 1)[-1].lstrip()
    )


def bucket_names(body: bytes) -> list[str]:
    root = ET.fromstring(body)
    return [el.text or "" for el in root.iter() if _local(el.tag) == "Name" and el.text is not None]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
