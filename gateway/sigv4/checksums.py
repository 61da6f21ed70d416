"""The body checksums S3 accepts (x-amz-checksum-*): CRC32, CRC32C, CRC64NVME, SHA1, SHA256."""

from __future__ import annotations

import base64
import binascii
import hashlib
import sys
import zlib
from typing import Protocol

from .errors import S3Error

# The checksum headers S3 accepts on a body, by algorithm: x-amz-checksum-<name>.
CHECKSUM_ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")
CHECKSUM_HEADERS = {f"x-amz-checksum-{name}": name for name in CHECKSUM_ALGORITHMS}


class _Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...

    def digest(self) -> bytes: ...


def _crc_tables(polynomial: int) -> tuple[tuple[int, ...], ...]:
    """The eight tables of "slicing-by-8" for a reflected CRC: table k advances a byte that
    still has k more bytes to travel through the register."""
    first = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ polynomial if crc & 1 else crc >> 1
        first.append(crc)
    tables = [tuple(first)]
    for _ in range(7):
        previous = tables[-1]
        tables.append(tuple((value >> 8) ^ first[value & 0xFF] for value in previous))
    return tuple(tables)


class _Crc32:
    __slots__ = ("_crc",)

    def __init__(self) -> None:
        self._crc = 0

    def update(self, data: bytes | memoryview) -> None:
        self._crc = zlib.crc32(data, self._crc)

    def digest(self) -> bytes:
        return self._crc.to_bytes(4, "big")


_LITTLE_ENDIAN = sys.byteorder == "little"


class _ReflectedCrc:
    """A reflected CRC (CRC32C, CRC64NVME) in pure Python, eight bytes per step.

    About 40-50 MB/s: enough for the occasional client that picks these algorithms; boto3
    and aws-cli send CRC32, which zlib computes in C.
    """

    __slots__ = ("_crc", "_tables", "_size", "_mask")

    def __init__(self, tables: tuple[tuple[int, ...], ...], size: int) -> None:
        self._tables = tables
        self._size = size
        self._mask = (1 << (8 * size)) - 1
        self._crc = self._mask

    def update(self, data: bytes | memoryview) -> None:
        crc = self._crc
        view = memoryview(data).cast("B")
        t0, t1, t2, t3, t4, t5, t6, t7 = self._tables
        whole = len(view) - len(view) % 8 if _LITTLE_ENDIAN else 0
        if whole:
            # Native 64-bit words are little-endian here: byte 0 is the low byte, the
            # first to enter a reflected CRC register.
            for word in view[:whole].cast("Q"):
                value = crc ^ word
                crc = (
                    t7[value & 0xFF]
                    ^ t6[(value >> 8) & 0xFF]
                    ^ t5[(value >> 16) & 0xFF]
                    ^ t4[(value >> 24) & 0xFF]
                    ^ t3[(value >> 32) & 0xFF]
                    ^ t2[(value >> 40) & 0xFF]
                    ^ t1[(value >> 48) & 0xFF]
                    ^ t0[value >> 56]
                )
        for byte in view[whole:]:
            crc = t0[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        self._crc = crc

    def digest(self) -> bytes:
        return (self._crc ^ self._mask).to_bytes(self._size, "big")


_CRC32C_TABLES = _crc_tables(0x82F63B78)
_CRC64NVME_TABLES = _crc_tables(0x9A6C9329AC4BC9B5)
_DIGEST_SIZES = {"crc32": 4, "crc32c": 4, "crc64nvme": 8, "sha1": 20, "sha256": 32}


def new_checksum(algorithm: str) -> _Hasher:
    """A hasher (update/digest) for one of CHECKSUM_ALGORITHMS; digests are big-endian."""
    if algorithm == "crc32":
        return _Crc32()
    if algorithm == "crc32c":
        return _ReflectedCrc(_CRC32C_TABLES, 4)
    if algorithm == "crc64nvme":
        return _ReflectedCrc(_CRC64NVME_TABLES, 8)
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
