"""Browser uploads: S3's POST Object with a SigV4 POST policy.

Django-free. A web application signs a policy (what may be uploaded where, until when)
with a key's signing key, as boto3's ``generate_presigned_post`` does, and a browser
posts a multipart form straight to the bucket. The form is read as it streams:
``FormReader`` collects the fields before the file (at most MAX_FIELDS_BYTES) and then
hands the file out piece by piece, so a large upload never sits in memory. ``Policy``
checks the expiration and every condition against the form.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from . import s3errors, sigv4
from .sigv4 import S3Error

# S3 refuses a form whose fields before the file exceed 20 KB.
MAX_FIELDS_BYTES = 20 * 1024
MAX_PART_HEADER_BYTES = 8 * 1024
MAX_OBJECT_BYTES = 5 * 1024**3
# The most a form adds to its file: the fields before it, part heads and boundaries.
MAX_FORM_BYTES = MAX_OBJECT_BYTES + 64 * 1024
# Fields every SigV4 POST carries.
REQUIRED_FIELDS = ("key", "policy", "x-amz-algorithm", "x-amz-credential", "x-amz-date")
# Fields the policy need not name.
UNCONDITIONED_FIELDS = frozenset({"policy", "x-amz-signature", "file"})
_DISPOSITION_PARAM = re.compile(r';\s*([a-zA-Z*]+)="((?:[^"\\]|\\.)*)"')
_BOUNDARY = re.compile(r'boundary="?([^";]{1,70})"?')


class ClientGone(Exception):
    """The client disconnected before its body was read."""


def boundary_of(content_type: str) -> bytes | None:
    """The multipart boundary of a ``multipart/form-data`` Content-Type, or None."""
    if not content_type.lower().startswith("multipart/form-data"):
        return None
    found = _BOUNDARY.search(content_type)
    return found.group(1).encode("latin-1") if found else None


@dataclass(slots=True)
class FilePart:
    filename: str
    content_type: str | None


class FormReader:
    """A multipart/form-data body read as it arrives from ``receive`` (ASGI messages)."""

    def __init__(self, boundary: bytes, receive: Callable[[], Awaitable[dict[str, Any]]]):
        self._delimiter = b"\r\n--" + boundary
        self._receive = receive
        # The body starts with the first boundary line, without the leading CRLF.
        self._buffer = bytearray(b"\r\n")
        self._more = True

    async def _fill(self) -> bool:
        if not self._more:
            return False
        message = await self._receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        self._more = message.get("more_body", False)
        self._buffer += message.get("body", b"")
        return True

    async def _read_until(self, marker: bytes, limit: int) -> bytes:
        while True:
            index = self._buffer.find(marker)
            if index >= 0:
                found = bytes(self._buffer[:index])
                del self._buffer[: index + len(marker)]
                return found
            if len(self._buffer) > limit + len(marker):
                raise s3errors.post_fields_too_large()
            if not await self._fill():
                raise s3errors.malformed_post(
                    "The body of your POST request is not well-formed multipart."
                )

    async def fields(self) -> tuple[dict[str, str], FilePart]:
        """The form's fields up to the file, by lowercase name, and the file part."""
        await self._read_until(self._delimiter, MAX_FIELDS_BYTES)
        fields: dict[str, str] = {}
        used = 0
        while True:
            ending = await self._read_until(b"\r\n", MAX_PART_HEADER_BYTES)
            if ending.startswith(b"--"):
                raise s3errors.not_one_file()
            head = await self._read_until(b"\r\n\r\n", MAX_PART_HEADER_BYTES)
            name, filename, content_type = _part_head(head)
            if name == "file":
                return fields, FilePart(filename or "", content_type)
            value = await self._read_until(self._delimiter, MAX_FIELDS_BYTES - used)
            used += len(value)
            if used > MAX_FIELDS_BYTES:
                raise s3errors.post_fields_too_large()
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                raise s3errors.malformed_post(f"The field {name} is not UTF-8.") from None
            if name in fields:
                raise s3errors.invalid_argument(f"The field {name} appears twice.")
            fields[name] = text

    async def file(self) -> AsyncIterator[bytes]:
        """The file's bytes, in pieces, up to the boundary after it (later fields are
        ignored, as S3 ignores them)."""
        keep = len(self._delimiter) - 1
        while True:
            index = self._buffer.find(self._delimiter)
            if index >= 0:
                if index:
                    yield bytes(self._buffer[:index])
                return
            if len(self._buffer) > keep:
                piece = bytes(self._buffer[:-keep])
                del self._buffer[:-keep]
                yield piece
            if not await self._fill():
                raise s3errors.malformed_post(
                    "The body of your POST request ended inside the file."
                )


def check_fields(fields: dict[str, str]) -> None:
    """Refuse a form that is not a SigV4 POST S3 would take: signed the old way, missing
    a field, or asking for an ACL."""
    if "awsaccesskeyid" in fields or "signature" in fields:
        raise s3errors.signature_v2_refused()
    for name in REQUIRED_FIELDS:
        if name not in fields:
            raise s3errors.invalid_argument(f"Bucket POST must contain a field named '{name}'.")
    if fields["x-amz-algorithm"] != sigv4.ALGORITHM or "x-amz-signature" not in fields:
        raise s3errors.invalid_argument(
            "POST requires x-amz-algorithm AWS4-HMAC-SHA256 and x-amz-signature."
        )
    if fields.get("acl", "private") != "private":
        raise s3errors.not_implemented("the acl field (ACLs)")


def signature_check(
    fields: dict[str, str], access_key_id: str, date: str, region: str
) -> Callable[[sigv4.SigningKeyProvider], None]:
    """The check that the form's policy was signed with the key's signing key, to run
    with the signing keys of the key it names."""

    def verify(signing_keys: sigv4.SigningKeyProvider) -> None:
        expected = sigv4.signature(signing_keys(access_key_id, date, region), fields["policy"])
        sigv4.check_signature(expected, fields["x-amz-signature"], access_key_id, fields["policy"])

    return verify


def _part_head(head: bytes) -> tuple[str, str | None, str | None]:
    name = filename = content_type = None
    for line in head.decode("utf-8", "replace").split("\r\n"):
        header, _, value = line.partition(":")
        header = header.strip().lower()
        if header == "content-disposition":
            params = {
                k.lower(): v.replace('\\"', '"') for k, v in _DISPOSITION_PARAM.findall(value)
            }
            name = params.get("name")
            filename = params.get("filename")
        elif header == "content-type":
            content_type = value.strip()
    if not name:
        raise s3errors.malformed_post("Each part of the form needs a name.")
    return name.lower(), filename, content_type


@dataclass(slots=True)
class Policy:
    expiration: float
    conditions: list[Any]
    encoded: str

    @classmethod
    def parse(cls, encoded: str) -> Policy:
        try:
            document = json.loads(base64.b64decode(encoded, validate=True))
            expiration = datetime.fromisoformat(document["expiration"].replace("Z", "+00:00"))
            conditions = document["conditions"]
            if expiration.tzinfo is None or not isinstance(conditions, list):
                raise ValueError
        except (binascii.Error, ValueError, KeyError, TypeError, AttributeError):
            raise s3errors.invalid_policy_document("Invalid JSON or expiration.") from None
        return cls(expiration.timestamp(), conditions, encoded)

    def check(
        self, fields: dict[str, str], bucket: str, now: float | None = None
    ) -> tuple[int, int]:
        """Check the expiration and every condition against the form (with ``bucket``);
        return the (min, max) content length allowed."""
        if (time.time() if now is None else now) > self.expiration:
            raise s3errors.policy_failed("Policy expired.")
        values = {**fields, "bucket": bucket}
        covered: set[str] = set()
        length = (0, MAX_OBJECT_BYTES)
        for condition in self.conditions:
            if isinstance(condition, dict) and len(condition) == 1:
                [(name, expected)] = condition.items()
                name = name.lower()
                _require(values, name, str(expected), exact=True)
                covered.add(name)
            elif isinstance(condition, list) and len(condition) == 3:
                operator = str(condition[0]).lower()
                if operator == "content-length-range":
                    try:
                        # No policy lets one upload past S3's size for a single PUT.
                        length = (int(condition[1]), min(int(condition[2]), MAX_OBJECT_BYTES))
                    except (TypeError, ValueError):
                        raise _invalid_policy(condition) from None
                    continue
                target = condition[1]
                if not isinstance(target, str) or not target.startswith("$"):
                    raise _invalid_policy(condition)
                name = target[1:].lower()
                if operator == "eq":
                    _require(values, name, str(condition[2]), exact=True)
                elif operator == "starts-with":
                    _require(values, name, str(condition[2]), exact=False)
                else:
                    raise _invalid_policy(condition)
                covered.add(name)
            else:
                raise _invalid_policy(condition)
        if "bucket" not in covered:
            raise s3errors.policy_failed("Policy Condition failed: the policy names no bucket.")
        for name in fields:
            if (
                name not in covered
                and name not in UNCONDITIONED_FIELDS
                and not name.startswith("x-ignore-")
            ):
                raise s3errors.policy_failed(f"Extra input fields: {name}")
        return length


def _require(values: dict[str, str], name: str, expected: str, *, exact: bool) -> None:
    value = values.get(name)
    if value is None and not exact and not expected:
        return  # ["starts-with", "$field", ""] allows the field to be absent
    if value is None or ((value != expected) if exact else not value.startswith(expected)):
        operator = "eq" if exact else "starts-with"
        condition = json.dumps([operator, "$" + name, expected])
        raise s3errors.policy_failed(f"Policy Condition failed: {condition}")


def _invalid_policy(condition: Any) -> S3Error:
    return s3errors.invalid_policy_document(f"Invalid Condition: {json.dumps(condition)[:200]}")


def object_key(template: str, filename: str) -> str:
    """The key field with ``${filename}`` replaced, as S3 does."""
    return template.replace("${filename}", filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1])


# Pieces of an upload larger than this go to the store as a multipart upload, so memory
# holds one piece at a time whatever the file's size.
PART_BYTES = 8 * 1024 * 1024
Ask = Callable[..., Awaitable[Any]]


async def store(
    ask: Ask,
    path: str,
    headers: list[tuple[str, str]],
    pieces: AsyncIterator[bytes],
    length: tuple[int, int],
    check_still_allowed: Callable[[], Awaitable[None]],
) -> str:
    """Put the file at ``path`` in the store through ``ask`` (the gateway's own upstream
    requests), in one PUT or, past PART_BYTES, as a multipart upload; return its ETag.

    The size is checked against ``length`` (min, max) as the file arrives, and the upload
    is completed only if ``check_still_allowed()`` raises nothing at the end (a key revoked
    or narrowed mid-way leaves no object)."""
    low, high = length
    buffer = bytearray()
    total = 0
    upload_id: str | None = None
    parts: list[str] = []
    try:
        async for piece in pieces:
            total += len(piece)
            if total > high:
                raise s3errors.entity_too_large(None, high)
            buffer += piece
            while len(buffer) >= PART_BYTES:
                if upload_id is None:
                    upload_id = await _start_multipart(ask, path, headers)
                parts.append(await _part(ask, path, upload_id, len(parts) + 1, buffer[:PART_BYTES]))
                del buffer[:PART_BYTES]
        if total < low:
            raise s3errors.entity_too_small(low)
        await check_still_allowed()
        if upload_id is None:
            response = await ask("PUT", path, "", headers, bytes(buffer))
            _expect_ok(response)
            return response.headers.get("etag", "")
        if buffer or not parts:
            parts.append(await _part(ask, path, upload_id, len(parts) + 1, buffer))
        return await _complete(ask, path, upload_id, parts)
    except BaseException:
        if upload_id is not None:
            try:
                await ask("DELETE", path, _query(uploadId=upload_id))
            except Exception:  # noqa: BLE001 - the store expires abandoned uploads anyway
                pass
        raise


def _query(**params: str) -> str:
    return "&".join(f"{name}={quote(value, safe='')}" for name, value in sorted(params.items()))


def _expect_ok(response: Any) -> None:
    if response.status_code >= 300:
        raise s3errors.store_refused_upload()


async def _start_multipart(ask: Ask, path: str, headers: list[tuple[str, str]]) -> str:
    response = await ask("POST", path, "uploads=", headers)
    _expect_ok(response)
    found = re.search(rb"<UploadId>([^<]+)</UploadId>", response.content)
    if found is None:
        raise s3errors.store_refused_upload()
    return found.group(1).decode()


async def _part(ask: Ask, path: str, upload_id: str, number: int, data: bytes | bytearray) -> str:
    response = await ask(
        "PUT", path, _query(partNumber=str(number), uploadId=upload_id), [], bytes(data)
    )
    _expect_ok(response)
    return response.headers.get("etag", "")


async def _complete(ask: Ask, path: str, upload_id: str, parts: list[str]) -> str:
    body = (
        "<CompleteMultipartUpload>"
        + "".join(
            f"<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part>"
            for number, etag in enumerate(parts, 1)
        )
        + "</CompleteMultipartUpload>"
    )
    response = await ask(
        "POST",
        path,
        _query(uploadId=upload_id),
        [("content-type", "application/xml")],
        body.encode(),
    )
    _expect_ok(response)
    # A store may answer 200 with an error in the body; the ETag comes XML-escaped.
    try:
        root = ET.fromstring(response.content)
    except ET.ParseError:
        root = None
    etag = None if root is None else root.find("{*}ETag")
    if root is None or root.tag.rsplit("}", 1)[-1] == "Error" or etag is None:
        raise s3errors.store_refused_upload()
    return etag.text or ""


# Form fields stored with the object as the headers of a PutObject would be.
OBJECT_FIELDS = (
    "cache-control",
    "content-disposition",
    "content-encoding",
    "expires",
    "x-amz-storage-class",
)


def object_headers(fields: dict[str, str], file: FilePart) -> list[tuple[str, str]]:
    """The headers of the PutObject that stores the file."""
    headers = [(name, fields[name]) for name in OBJECT_FIELDS if name in fields]
    headers += [(name, value) for name, value in fields.items() if name.startswith("x-amz-meta-")]
    content_type = fields.get("content-type") or file.content_type
    if content_type:
        headers.append(("content-type", content_type))
    return headers


def answer(
    fields: dict[str, str], bucket: str, key: str, etag: str, endpoint: str
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """S3's answer to a stored POST: a redirect when the form asks for one, else the
    success_action_status (204 by default; 201 with an XML body)."""
    location = f"{endpoint}/{bucket}/{quote(key, safe='/~')}"
    headers = [(b"etag", etag.encode("latin-1", "replace")), (b"location", location.encode())]
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect and redirect.startswith(("http://", "https://")):
        joiner = "&" if "?" in redirect else "?"
        target = f"{redirect}{joiner}bucket={quote(bucket)}&key={quote(key)}&etag={quote(etag)}"
        return 303, b"", [*headers[:1], (b"location", target.encode())]
    status = fields.get("success_action_status", "204")
    if status == "201":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<PostResponse>'
            f"<Location>{_xml(location)}</Location><Bucket>{_xml(bucket)}</Bucket>"
            f"<Key>{_xml(key)}</Key><ETag>{_xml(etag)}</ETag></PostResponse>"
        ).encode()
        return 201, body, [*headers, (b"content-type", b"application/xml")]
    return (200 if status == "200" else 204), b"", headers


def _xml(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
