"""Body checksums (gateway/sigv4/checksums.py): every algorithm against reference values."""

from __future__ import annotations

import base64
import hashlib
import zlib

import pytest

from gateway.sigv4.checksums import CHECKSUM_ALGORITHMS, new_checksum
from gateway.sigv4.chunked import ChunkedDecoder
from tests.sigv4_support import (
    read_until_error,
)


@pytest.mark.parametrize(
    "algorithm,digest_hex",
    [
        ("crc32", "cbf43926"),
        ("crc32c", "e3069283"),
        ("crc64nvme", "ae8b14860a799888"),
        ("sha1", hashlib.sha1(b"123456789").hexdigest()),
        ("sha256", hashlib.sha256(b"123456789").hexdigest()),
    ],
)
def test_it_checks_unsigned_trailers_of_every_algorithm(algorithm, digest_hex):
    # Check values from the CRC catalogue (RevEng) for "123456789".
    value = base64.b64encode(bytes.fromhex(digest_hex)).decode()
    name = f"x-amz-checksum-{algorithm}"
    for body, ok in (
        (f"4\r\n1234\r\n5\r\n56789\r\n0\r\n{name}:{value}\r\n\r\n".encode(), True),
        (f"4\r\n1234\r\n5\r\n56780\r\n0\r\n{name}:{value}\r\n\r\n".encode(), False),
    ):
        for step in (1, 4, len(body)):
            decoder = ChunkedDecoder(
                signing_key=None, trailer=True, declared_trailers=(name,), decoded_content_length=9
            )
            if ok:
                out = b"".join(decoder.feed(body[i : i + step]) for i in range(0, len(body), step))
                assert out + decoder.finish() == b"123456789"
            else:
                assert read_until_error(decoder, body, step)[1].code == "BadDigest"


def bitwise_crc(data: bytes, polynomial: int, width: int) -> bytes:
    # The textbook reflected CRC, one bit at a time: a reference for the table-driven one.
    mask = (1 << width) - 1
    crc = mask
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ polynomial if crc & 1 else crc >> 1
    return (crc ^ mask).to_bytes(width // 8, "big")


@pytest.mark.parametrize(
    "algorithm,polynomial,width",
    [("crc32c", 0x82F63B78, 32), ("crc64nvme", 0x9A6C9329AC4BC9B5, 64), ("crc32", 0xEDB88320, 32)],
)
def test_it_matches_a_bitwise_crc_at_every_alignment(algorithm, polynomial, width):
    data = hashlib.sha256(b"seed").digest() * 40 + b"tail!"
    expected = bitwise_crc(data, polynomial, width)
    for size in (1, 3, 7, 8, 13, 64, len(data)):
        checksum = new_checksum(algorithm)
        for i in range(0, len(data), size):
            checksum.update(memoryview(data)[i : i + size])
        assert checksum.digest() == expected, size


def test_it_computes_checksums_incrementally():
    data = bytes(range(256)) * 41
    for algorithm in CHECKSUM_ALGORITHMS:
        whole = new_checksum(algorithm)
        whole.update(data)
        pieces = new_checksum(algorithm)
        for i in range(0, len(data), 1000):
            pieces.update(memoryview(data)[i : i + 1000])
        assert whole.digest() == pieces.digest(), algorithm
    crc = new_checksum("crc32")
    crc.update(data)
    assert crc.digest() == zlib.crc32(data).to_bytes(4, "big")
