"""Body verifiers: a plain body's payload hash and checksum, and the aws-chunked decoder."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any, Protocol

from .checksums import CHECKSUM_HEADERS, _bad_digest, _decode_checksum, _Hasher, new_checksum
from .constants import EMPTY_SHA256
from .errors import S3Error, _incomplete_body, _invalid_request, _malformed_body
from .signing import signature

MAX_CHUNK_SIZE = 16 * 1024 * 1024
# A chunk header is at most ~100 bytes and a trailer line about as long; this bounds what
# the chunked decoder ever buffers, however the body is split.
MAX_LINE_LENGTH = 4096
MAX_TRAILER_LINES = 8

_SIGNED_CHUNK = re.compile(rb"([0-9a-fA-F]{1,16});chunk-signature=([0-9a-fA-F]{64})").fullmatch
_UNSIGNED_CHUNK = re.compile(rb"([0-9a-fA-F]{1,16})").fullmatch


class BodyVerifier(Protocol):
    """Feed body pieces in; forward what comes out; forward finish()'s bytes last."""

    decoded_length: int

    def feed(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class PayloadVerifier:
    """A plain (not aws-chunked) body: the literal x-amz-content-sha256, if any, and an
    ``x-amz-checksum-*`` header, if given, are checked by finish().

    feed() returns the previous piece and holds the newest one back until finish().
    """

    __slots__ = ("_sha256", "_expected", "_checksum", "_held", "_done", "decoded_length")

    def __init__(
        self, *, expected_sha256: str | None, checksum: tuple[str, bytes] | None = None
    ) -> None:
        self._expected = expected_sha256
        self._sha256 = hashlib.sha256() if expected_sha256 is not None else None
        self._checksum = (checksum[0], checksum[1], new_checksum(checksum[0])) if checksum else None
        self._held = b""
        self._done = False
        self.decoded_length = 0

    def feed(self, data: bytes) -> bytes:
        if self._done:
            raise RuntimeError("feed() after finish()")
        if not data:
            return b""
        data = bytes(data)
        if self._sha256 is not None:
            self._sha256.update(data)
        if self._checksum is not None:
            self._checksum[2].update(data)
        self.decoded_length += len(data)
        released, self._held = self._held, data
        return released

    def finish(self) -> bytes:
        if self._done:
            raise RuntimeError("finish() called twice")
        if self._sha256 is not None:
            computed = self._sha256.hexdigest()
            if not hmac.compare_digest(computed, self._expected or ""):
                raise S3Error(
                    "XAmzContentSHA256Mismatch",
                    400,
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                    {
                        "ClientComputedContentSHA256": self._expected,
                        "S3ComputedContentSHA256": computed,
                    },
                )
        if self._checksum is not None:
            algorithm, expected, hasher = self._checksum
            if not hmac.compare_digest(hasher.digest(), expected):
                raise _bad_digest(algorithm)
        self._done = True
        released, self._held = self._held, b""
        return released


# Decoder states.
_CHUNK_HEADER, _CHUNK_DATA, _CHUNK_END, _TRAILER, _DONE = range(5)


class ChunkedDecoder:
    """An incremental aws-chunked decoder and verifier.

    Signed (``signing_key`` given): every chunk signature, the final zero-length chunk's
    included, is checked against the chain that starts at ``seed_signature``; with
    ``trailer`` the trailer signature too. Unsigned (``signing_key`` None): only the
    framing and the trailer checksum. Whatever the split of the input, the internal buffer
    never exceeds MAX_LINE_LENGTH bytes and chunk data is never buffered; a declared chunk
    size above ``max_chunk_size`` is refused as soon as its header line is read.

    feed(raw) returns decoded bytes safe to forward and keeps the newest decoded piece
    back; finish() checks that the body ended properly, its decoded length and checksums,
    and returns the held-back bytes. After any error the decoder stays failed.
    """

    __slots__ = (
        "_key",
        "_amz_date",
        "_scope",
        "_previous",
        "_trailer",
        "_declared",
        "_expected_length",
        "_max_chunk_size",
        "_state",
        "_line",
        "_remaining",
        "_crlf",
        "_chunk_hash",
        "_chunk_signature",
        "_checksums",
        "_header_checksum",
        "_trailers",
        "_trailer_signature",
        "_held",
        "_error",
        "_finished",
        "decoded_length",
    )

    def __init__(
        self,
        *,
        signing_key: bytes | None,
        seed_signature: str = "",
        amz_date: str = "",
        scope: str = "",
        trailer: bool = False,
        declared_trailers: Sequence[str] = (),
        decoded_content_length: int | None = None,
        checksum: tuple[str, bytes] | None = None,
        max_chunk_size: int = MAX_CHUNK_SIZE,
    ) -> None:
        self._key = signing_key
        self._amz_date = amz_date
        self._scope = scope
        self._previous = seed_signature
        self._trailer = trailer
        self._declared = tuple(declared_trailers)
        self._expected_length = decoded_content_length
        self._max_chunk_size = max_chunk_size
        self._state = _CHUNK_HEADER
        self._line = bytearray()
        self._remaining = 0
        self._crlf = 0
        self._chunk_hash: Any = None
        self._chunk_signature = ""
        # One running hasher per algorithm, shared by the header checksum and the trailer.
        self._checksums: dict[str, _Hasher] = {}
        for name in self._declared:
            self._checksums[CHECKSUM_HEADERS[name]] = new_checksum(CHECKSUM_HEADERS[name])
        self._header_checksum = checksum
        if checksum is not None and checksum[0] not in self._checksums:
            self._checksums[checksum[0]] = new_checksum(checksum[0])
        self._trailers: dict[str, str] = {}
        self._trailer_signature: str | None = None
        self._held = b""
        self._error: S3Error | None = None
        self._finished = False
        self.decoded_length = 0

    def feed(self, data: bytes) -> bytes:
        if self._error is not None:
            raise self._error
        if self._finished:
            raise RuntimeError("feed() after finish()")
        try:
            pieces = self._decode(bytes(data))
        except S3Error as error:
            self._error = error
            raise
        if not pieces:
            return b""
        if self._held:
            pieces.insert(0, self._held)
        self._held = bytes(pieces.pop())
        return b"".join(pieces)

    def finish(self) -> bytes:
        if self._error is not None:
            raise self._error
        if self._finished:
            raise RuntimeError("finish() called twice")
        if self._state != _DONE:
            self._error = _incomplete_body(
                "The aws-chunked body ended before its final chunk and trailer."
            )
            raise self._error
        self._finished = True
        released, self._held = self._held, b""
        return released

    def _decode(self, data: bytes) -> list[memoryview]:
        view = memoryview(data)
        end = len(data)
        position = 0
        pieces: list[memoryview] = []
        while position < end:
            state = self._state
            if state == _CHUNK_DATA:
                take = min(self._remaining, end - position)
                piece = view[position : position + take]
                if self._chunk_hash is not None:
                    self._chunk_hash.update(piece)
                for hasher in self._checksums.values():
                    hasher.update(piece)
                pieces.append(piece)
                position += take
                self._remaining -= take
                self.decoded_length += take
                expected = self._expected_length
                if expected is not None and self.decoded_length > expected:
                    raise _malformed_body("more data than x-amz-decoded-content-length declares")
                if not self._remaining:
                    self._state = _CHUNK_END
            elif state == _CHUNK_END:
                if data[position] != b"\r\n"[self._crlf]:
                    raise _malformed_body("chunk data is not followed by CRLF")
                position += 1
                self._crlf += 1
                if self._crlf == 2:
                    self._crlf = 0
                    if self._key is not None:
                        self._verify_chunk()
                    self._state = _CHUNK_HEADER
            elif state == _DONE:
                # Some clients add a CRLF after the last one; anything else is an error.
                if data[position] not in b"\r\n":
                    raise _malformed_body("data after the final chunk")
                position += 1
            else:
                newline = data.find(b"\n", position)
                stop = end if newline < 0 else newline
                if len(self._line) + (stop - position) > MAX_LINE_LENGTH:
                    raise _malformed_body("line too long")
                self._line += view[position:stop]
                if newline < 0:
                    position = end
                    continue
                position = newline + 1
                line = bytes(self._line)
                self._line.clear()
                if state == _CHUNK_HEADER:
                    self._chunk_header(line)
                else:
                    self._trailer_line(line)
        return pieces

    def _chunk_header(self, line: bytes) -> None:
        if not line.endswith(b"\r"):
            raise _malformed_body("chunk header does not end with CRLF")
        line = line[:-1]
        match = (_SIGNED_CHUNK if self._key is not None else _UNSIGNED_CHUNK)(line)
        if match is None:
            raise _malformed_body("invalid chunk header")
        size = int(match[1], 16)
        if size > self._max_chunk_size:
            raise _malformed_body(
                f"chunk size {size} exceeds the maximum of {self._max_chunk_size} bytes"
            )
        if self._key is not None:
            self._chunk_signature = match[2].decode("ascii")
            self._chunk_hash = hashlib.sha256()
        if size:
            self._remaining = size
            self._state = _CHUNK_DATA
        else:
            if self._key is not None:
                self._verify_chunk()
            self._state = _TRAILER

    def _verify_chunk(self) -> None:
        to_sign = (
            f"AWS4-HMAC-SHA256-PAYLOAD\n{self._amz_date}\n{self._scope}\n{self._previous}\n"
            f"{EMPTY_SHA256}\n{self._chunk_hash.hexdigest()}"
        )
        assert self._key is not None
        expected = signature(self._key, to_sign)
        if not hmac.compare_digest(expected.encode(), self._chunk_signature.encode()):
            raise S3Error(
                "SignatureDoesNotMatch",
                403,
                "The chunk signature we calculated does not match the signature you provided.",
                {"StringToSign": to_sign, "SignatureProvided": self._chunk_signature},
            )
        self._previous = expected

    def _trailer_line(self, line: bytes) -> None:
        # Trailer lines end in CRLF, though some clients send a bare LF.
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            self._end_trailers()
            self._state = _DONE
            return
        if not self._trailer:
            raise _malformed_body("the final chunk is not followed by CRLF")
        if self._trailer_signature is not None:
            raise _malformed_trailer("x-amz-trailer-signature must be the last trailer")
        if len(self._trailers) >= MAX_TRAILER_LINES:
            raise _malformed_trailer("too many trailers")
        raw_name, colon, raw_value = line.partition(b":")
        if not colon or not raw_name.isascii() or not raw_value.isascii():
            raise _malformed_trailer("a trailer is not a name:value line")
        name = raw_name.strip().lower().decode("ascii")
        value = raw_value.strip().decode("ascii")
        if name == "x-amz-trailer-signature":
            if self._key is None:
                raise _malformed_trailer("a trailer signature on an unsigned payload")
            self._trailer_signature = value
            return
        if name not in self._declared or name in self._trailers:
            raise _malformed_trailer(f"trailer {name} was not declared in x-amz-trailer")
        self._trailers[name] = value

    def _end_trailers(self) -> None:
        if self._trailer and self._key is not None:
            canonical = "".join(f"{name}:{value}\n" for name, value in self._trailers.items())
            digest = hashlib.sha256(canonical.encode("ascii")).hexdigest()
            to_sign = (
                f"AWS4-HMAC-SHA256-TRAILER\n{self._amz_date}\n{self._scope}\n{self._previous}\n"
                f"{digest}"
            )
            expected = signature(self._key, to_sign)
            provided = self._trailer_signature or ""
            if not hmac.compare_digest(expected.encode(), provided.encode()):
                raise S3Error(
                    "SignatureDoesNotMatch",
                    403,
                    "The trailer signature we calculated does not match the signature you "
                    "provided.",
                    {"StringToSign": to_sign, "SignatureProvided": provided},
                )
        missing = [name for name in self._declared if name not in self._trailers]
        if missing:
            raise _malformed_trailer(f"the declared trailer {missing[0]} is missing")
        expected_length = self._expected_length
        if expected_length is not None and self.decoded_length != expected_length:
            raise _incomplete_body(
                "You did not provide the number of bytes specified by the "
                "x-amz-decoded-content-length HTTP header."
            )
        if self._header_checksum is not None:
            algorithm, digest = self._header_checksum
            if not hmac.compare_digest(self._checksums[algorithm].digest(), digest):
                raise _bad_digest(algorithm)
        for name, value in self._trailers.items():
            algorithm = CHECKSUM_HEADERS[name]
            digest = _decode_checksum(algorithm, value)
            if digest is None:
                raise _invalid_request(f"Value for {name} trailing header is invalid.")
            if not hmac.compare_digest(self._checksums[algorithm].digest(), digest):
                raise _bad_digest(algorithm)


def _malformed_trailer(detail: str) -> S3Error:
    return S3Error(
        "MalformedTrailerError",
        400,
        f"The request contained trailing data that was not well-formed: {detail}.",
    )


def strip_aws_chunked(content_encoding: str | None) -> str | None:
    """Content-Encoding without its ``aws-chunked`` token, for the object as stored."""
    if not content_encoding:
        return None
    kept = [
        token.strip()
        for token in content_encoding.split(",")
        if token.strip() and token.strip().lower() != "aws-chunked"
    ]
    return ", ".join(kept) or None
