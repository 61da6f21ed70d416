"""The body checksums S3 accepts (x-amz-checksum-*): CRC32, CRC32C, CRC64NVME, SHA1, SHA256."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from typing import Protocol

import anycrc
from zlib_ng import zlib_ng

from .errors import S3Error

# The checksum headers S3 accepts on a body, by algorithm: x-amz-checksum-<name>.
CHECKSUM_ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")
CHECKSUM_HEADERS = {f"x-amz-checksum-{name}": name for name in CHECKSUM_ALGORITHMS}


class _Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...

    def digest(self) -> bytes: ...


class _Crc:
    """A CRC as a hasher: ``function(data, previous)`` continues the running value, as
    zlib.crc32 does. Each runs in C at several GB/s, so whichever algorithm a client picks,
    checking a piece of its body holds the event loop no longer than the payload's SHA-256
    does."""

    __slots__ = ("_function", "_size", "_crc")

    def __init__(self, function: Callable[[bytes | memoryview, int], int], size: int) -> None:
        self._function = function
        self._size = size
        self._crc = 0

    def update(self, data: bytes | memoryview) -> None:
        self._crc = self._function(data, self._crc)

    def digest(self) -> bytes:
        return self._crc.to_bytes(self._size, "big")


_CRC32C = anycrc.Model("CRC32-ISCSI")
_CRC64NVME = anycrc.Model("CRC64-NVME")
_DIGEST_SIZES = {"crc32": 4, "crc32c": 4, "crc64nvme": 8, "sha1": 20, "sha256": 32}


def new_checksum(algorithm: str) -> _Hasher:
    """A hasher (update/digest) for one of CHECKSUM_ALGORITHMS; digests are big-endian."""
    if algorithm == "crc32":
        return _Crc(zlib_ng.crc32, 4)
    if algorithm == "crc32c":
        return _Crc(_CRC32C.calc, 4)
    if algorithm == "crc64nvme":
        return _Crc(_CRC64NVME.calc, 8)
    if algorithm == "sha1":
        return hashlib.sha1()
    if algorithm == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unknown checksum algorithm {algorithm!r}")


def _decode_checksum(algorithm: str, value: str) -> bytes | None:
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return digest if len(digest) == _DIGEST_SIZES[algorithm] else None


def _bad_digest(algorithm: str) -> S3Error:
    return S3Error(
        "BadDigest",
        400,
        f"The {algorithm.upper()} you specified did not match the calculated checksum.",
    )
