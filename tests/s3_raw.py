"""A raw S3 client for attack tests: its own SigV4 signer and a plain socket.

Neither botocore nor gateway.sigv4: an SDK refuses to send what an attacker sends, and a
signer shared with the server would agree with the server's mistakes. Here the request
target goes out byte for byte as given, the canonical URI that is signed is chosen
separately (sign the decoded path, send an encoded one), and any header may repeat.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple
from urllib.parse import quote, unquote_to_bytes

REGION = "us-east-1"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
TIMEOUT = 10.0
# How long an answered connection is watched for the server closing it.
CLOSE_WAIT = 1.0

Headers = Sequence[tuple[str, str]]


class Response(NamedTuple):
    """An answer; ``status`` is None when the connection closed without one."""

    status: int | None
    headers: list[tuple[str, str]]  # names in lower case
    body: bytes

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key == name.lower()]
        return values[0] if values else None


def error_code(body: bytes) -> str | None:
    """The <Code> of an S3 XML error body, or None."""
    found = re.search(rb"<Code>([^<]*)</Code>", body)
    return found.group(1).decode() if found else None


def canonical_uri(path: str) -> str:
    """A raw path as SigV4 signs it: decoded once, re-encoded keeping A-Za-z0-9-_.~/."""
    return quote(unquote_to_bytes(path), safe="/~") or "/"


def _query_component(raw: str) -> str:
    # A literal "+" in a raw query is a space, as the gateway (like MinIO and RGW) reads it.
    return quote(unquote_to_bytes(raw.replace("+", " ")), safe="~")


def canonical_query(query: str) -> str:
    """A raw query as SigV4 signs it: each name and value re-encoded, sorted."""
    pairs = sorted(
        (_query_component(name), _query_component(value))
        for name, _, value in (part.partition("=") for part in query.split("&") if part)
    )
    return "&".join(f"{name}={value}" for name, value in pairs)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def authorization(
    *,
    method: str,
    uri: str,
    query: str,
    headers: Headers,
    signed: list[str],
    payload_hash: str,
    key_id: str,
    secret: str,
    amz_date: str,
    region: str = REGION,
) -> str:
    """The Authorization value for these (already canonical) URI and query; repeated
    signed headers are joined with "," as SigV4 says."""
    lines = [method, uri, query]
    for name in signed:
        values = [" ".join(v.split()) for n, v in headers if n.lower() == name]
        lines.append(f"{name}:{','.join(values)}")
    lines += ["", ";".join(signed), payload_hash]
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{digest}"
    key = ("AWS4" + secret).encode()
    for part in (amz_date[:8], region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, "
        f"SignedHeaders={';'.join(signed)}, Signature={signature}"
    )


def build(
    method: str,
    target: str | bytes,
    *,
    key_id: str,
    secret: str,
    host: str,
    headers: Headers = (),
    body: bytes = b"",
    payload_hash: str | None = None,
    uri: str | None = None,
    query: str | None = None,
    unsigned: Headers = (),
    amz_date: str | None = None,
    content_length: int | None = None,
) -> bytes:
    """The bytes of one signed HTTP/1.1 request.

    ``target`` is sent exactly as given. ``uri`` and ``query`` are the canonical URI and
    query to sign (by default, those of ``target``). ``headers`` are signed (a Host or
    x-amz-date among them replaces the default one, and may repeat); ``unsigned`` are
    sent unsigned after the Authorization header (a second Authorization, say).
    ``content_length`` is the Content-Length to claim, if not the body's own.
    """
    raw = target if isinstance(target, bytes) else target.encode()
    raw_path, _, raw_query = raw.partition(b"?")
    if uri is None:
        uri = canonical_uri(raw_path.decode("latin-1"))
    if query is None:
        query = canonical_query(raw_query.decode("latin-1"))
    amz_date = amz_date or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    payload_hash = payload_hash or hashlib.sha256(body).hexdigest()
    given = {name.lower() for name, _ in headers}
    sent: list[tuple[str, str]] = []
    if "host" not in given:
        sent.append(("Host", host))
    if "x-amz-date" not in given:
        sent.append(("X-Amz-Date", amz_date))
    if "x-amz-content-sha256" not in given:
        sent.append(("X-Amz-Content-Sha256", payload_hash))
    sent += list(headers)
    signed = sorted({name.lower() for name, _ in sent})
    first_date = next(v for n, v in sent if n.lower() == "x-amz-date")
    auth = authorization(
        method=method,
        uri=uri,
        query=query,
        headers=sent,
        signed=signed,
        payload_hash=payload_hash,
        key_id=key_id,
        secret=secret,
        amz_date=first_date,
    )
    sent.append(("Authorization", auth))
    sent += list(unsigned)
    if content_length is not None:
        sent.append(("Content-Length", str(content_length)))
    elif body or method in ("PUT", "POST"):
        sent.append(("Content-Length", str(len(body))))
    head = method.encode() + b" " + raw + b" HTTP/1.1\r\n"
    head += b"".join(f"{n}: {v}\r\n".encode("latin-1") for n, v in sent)
    return head + b"\r\n" + body


class Connection:
    """One keep-alive connection to 127.0.0.1:port that sends bytes and reads answers."""

    def __init__(self, port: int, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""
        self.eof = False

    def close(self) -> None:
        self.sock.close()

    def _more(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ConnectionAbortedError):
            data = b""
        if not data:
            self.eof = True
        self.buffer += data
        return bool(data)

    def _take(self, size: int) -> bytes:
        while len(self.buffer) < size and self._more():
            pass
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer and self._more():
            pass
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def send(self, data: bytes, *, head_only: bool = False) -> Response:
        """Write ``data`` and read one answer (no body when ``head_only``: a HEAD)."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.sock.sendall(data)
        return self.receive(head_only=head_only)

    def receive(self, *, head_only: bool = False) -> Response:
        while b"\r\n\r\n" not in self.buffer and self._more():
            pass
        if b"\r\n\r\n" not in self.buffer:
            return Response(None, [], self.buffer)
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        headers = []
        for line in lines:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        response = Response(status, headers, b"")
        length = response.header("content-length")
        if head_only or status in (204, 304) or 100 <= status < 200:
            body = b""
        elif length is not None:
            body = self._take(int(length))
        elif "chunked" in (response.header("transfer-encoding") or ""):
            body = b""
            while size := int(self._line().split(b";")[0] or b"0", 16):
                body += self._take(size)
                self._line()
            while self._line():  # trailers, up to the blank line
                pass
        else:
            while self._more():
                pass
            body, self.buffer = self.buffer, b""
        return response._replace(body=body)

    def closed(self, wait: float = CLOSE_WAIT) -> bool:
        """Does the server close the connection (within ``wait`` seconds)?"""
        if self.eof:
            return True
        timeout = self.sock.gettimeout()
        self.sock.settimeout(wait)
        try:
            return not self._more()
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(timeout)


def send(port: int, data: bytes, *, head_only: bool = False, timeout: float = TIMEOUT) -> Response:
    """Send one request on a fresh connection and read its answer."""
    connection = Connection(port, timeout)
    try:
        return connection.send(data, head_only=head_only)
    finally:
        connection.close()


@dataclass
class Signer:
    """Signed requests as one key, to one gateway port, path style unless a Host says."""

    port: int
    key_id: str
    secret: str

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def build(self, method: str, target: str | bytes, **options) -> bytes:
        options.setdefault("host", self.host)
        return build(method, target, key_id=self.key_id, secret=self.secret, **options)

    def request(self, method: str, target: str | bytes, **options) -> Response:
        return send(self.port, self.build(method, target, **options), head_only=method == "HEAD")
