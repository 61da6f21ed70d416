"""What the SigV4 tests share: requests that botocore itself signed, as the gateway receives
them, and an independent signer for aws-chunked bodies.

No database: every request is built by botocore (a real boto3 client whose HTTP send is
intercepted, or botocore's signers on an AWSRequest) at a frozen time, then fed to the
verifier as the gateway would receive it. aws-chunked bodies with chunk signatures, which
botocore does not produce, come from the small signer in the "Chunk signing" section, whose
seed signature is checked against botocore's header signature and whose algorithm is checked
against the worked examples in the S3 API reference.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import zlib
from datetime import datetime
from functools import cache
from urllib.parse import urlsplit

import boto3
import botocore.auth
import botocore.utils
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from gateway.sigv4 import verification
from gateway.sigv4.errors import S3Error
from gateway.sigv4.parsing import parse
from gateway.sigv4.request import Request
from gateway.sigv4.signing import derive_signing_key

ACCESS_KEY = "EXCABCDEFGHIJKLMNOPQ"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE1"
REGION = "us-east-1"
CREDENTIALS = Credentials(ACCESS_KEY, SECRET)
FROZEN = datetime(2025, 3, 14, 15, 9, 26)  # naive UTC, as botocore's clock returns it
NOW = float(calendar.timegm(FROZEN.timetuple()))
AMZ_DATE = "20250314T150926Z"
SCOPE = f"20250314/{REGION}/s3/aws4_request"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

ODD_KEYS = [
    "a b",
    "a+b",
    "100%",
    "50%25 literally",
    "unicodé/ключ/名前",
    "a//b",
    "/leading",
    "~tilde",
    "eq=x&y",
    "dots/../and/./segments",
    "everything a b+c%d/é//~=x?#&;:,@$!'()*",
]


@pytest.fixture(autouse=True)
def frozen_botocore_clock(monkeypatch):
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *args, **kwargs: FROZEN)


# ---------------------------------------------------------------------------------------
# Helpers: from botocore's request to what the gateway receives


def host_of(url: str) -> str:
    # What the HTTP client sends as Host: the port only when it is not the scheme default.
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}[parts.scheme]
    if parts.port is None or parts.port == default:
        return parts.hostname
    return f"{parts.hostname}:{parts.port}"


def to_request(method: str, url: str, headers, now: float = NOW) -> Request:
    parts = urlsplit(url)
    pairs = [("Host", host_of(url))]
    for name, value in headers:
        pairs.append((name, value.decode("latin-1") if isinstance(value, bytes) else value))
    return Request(method, parts.path, parts.query, pairs, now=now)


def provider(secret: str = SECRET):
    return lambda access_key_id, date, region: derive_signing_key(secret, date, region)


def verify(request: Request, secret: str = SECRET, region: str = REGION) -> verification.Verified:
    auth = parse(request, region=region)
    assert auth.access_key_id == ACCESS_KEY
    return verification.verify(auth, provider(secret))


def read_body(verified: verification.Verified, body: bytes, step: int | None = None) -> bytes:
    reader = verified.body()
    step = step or max(len(body), 1)
    out = [reader.feed(body[i : i + step]) for i in range(0, len(body), step)]
    out.append(reader.finish())
    return b"".join(out)


def error_of(call, *args, **kwargs) -> S3Error:
    with pytest.raises(S3Error) as caught:
        call(*args, **kwargs)
    return caught.value


def replace_header(request: Request, name: str, value: str | None) -> Request:
    headers = [(k, v) for k, v in request.headers if k.lower() != name.lower()]
    if value is not None:
        headers.append((name, value))
    return Request(request.method, request.path, request.query, headers, now=request.now)


def header(request: Request, name: str) -> str:
    return next(v for k, v in request.headers if k.lower() == name.lower())


def sign(method: str, url: str, headers=None, body: bytes = b"", signer=None) -> Request:
    aws = AWSRequest(method=method, url=url, data=body)
    for name, value in headers or ():
        aws.headers[name] = value  # HTTPHeaders appends: repeated names stay repeated
    (signer or S3SigV4Auth(CREDENTIALS, "s3", REGION)).add_auth(aws)
    return to_request(method, aws.url, aws.headers.items())


class _Sent(Exception):
    """Raised instead of sending: the request is captured before it hits the network."""


@cache
def s3_client(endpoint: str, addressing: str = "path", region: str = REGION, secret: str = SECRET):
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=secret,
        region_name=region,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": addressing},
            retries={"max_attempts": 1},
        ),
    )


def send(client, operation: str, **params) -> tuple[Request, bytes]:
    """Run a boto3 operation up to the HTTP send; return the request and the raw body."""
    captured = []

    def before_send(request, **kwargs):
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        captured.append((request, bytes(body or b"")))
        raise _Sent

    client.meta.events.register("before-send", before_send)
    try:
        with pytest.raises(_Sent):
            getattr(client, operation)(**params)
    finally:
        client.meta.events.unregister("before-send", before_send)
    prepared, body = captured[0]
    return to_request(prepared.method, prepared.url, prepared.headers.items()), body


def presign(operation: str, expires: int = 3600, **params) -> Request:
    url = s3_client("http://s3.example.test:9000").generate_presigned_url(
        operation, Params=params, ExpiresIn=expires
    )
    return to_request({"get_object": "GET", "put_object": "PUT"}[operation], url, [])


# ---------------------------------------------------------------------------------------
# Chunk signing: a separate, minimal signer for STREAMING-AWS4-HMAC-SHA256-PAYLOAD bodies


def _hmac_hex(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def independent_signing_key(secret: str, date: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


class ChunkSigner:
    """Signs aws-chunked bodies per the S3 API reference ("Signature calculations for the
    Authorization header: transferring payload in multiple chunks")."""

    def __init__(self, key: bytes, seed: str, amz_date: str = AMZ_DATE, scope: str = SCOPE):
        self.key, self.previous, self.amz_date, self.scope = key, seed, amz_date, scope

    def chunk(self, data: bytes) -> bytes:
        string_to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                self.amz_date,
                self.scope,
                self.previous,
                EMPTY_SHA256,
                hashlib.sha256(data).hexdigest(),
            ]
        )
        self.previous = _hmac_hex(self.key, string_to_sign)
        return f"{len(data):x};chunk-signature={self.previous}\r\n".encode() + data + b"\r\n"

    def final(self, trailer: tuple[str, str] | None = None) -> bytes:
        last = self.chunk(b"")[:-2]  # "0;chunk-signature=...\r\n"
        if trailer is None:
            return last + b"\r\n"
        line = f"{trailer[0]}:{trailer[1]}"
        string_to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-TRAILER",
                self.amz_date,
                self.scope,
                self.previous,
                hashlib.sha256(f"{line}\n".encode()).hexdigest(),
            ]
        )
        signature = _hmac_hex(self.key, string_to_sign)
        return last + f"{line}\r\nx-amz-trailer-signature:{signature}\r\n\r\n".encode()

    def body(self, payload: bytes, size: int, trailer: tuple[str, str] | None = None) -> bytes:
        chunks = [self.chunk(payload[i : i + size]) for i in range(0, len(payload), size)]
        return b"".join(chunks) + self.final(trailer)


def independent_seed(request: Request, signed: list[str], payload_mode: str, key: bytes) -> str:
    values = {k.lower(): " ".join(v.split()) for k, v in request.headers}
    canonical = "\n".join(
        [
            request.method,
            request.path,
            "",
            "".join(f"{name}:{values[name]}\n" for name in signed),
            ";".join(signed),
            payload_mode,
        ]
    )
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", AMZ_DATE, SCOPE, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    return _hmac_hex(key, string_to_sign)


class StreamingSigV4Auth(S3SigV4Auth):
    """botocore's S3 signer with the payload hash set to a streaming mode."""

    def __init__(self, mode: str):
        super().__init__(CREDENTIALS, "s3", REGION)
        self.mode = mode

    def payload(self, request):
        return self.mode


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def streaming_upload(
    payload: bytes,
    size: int = 16,
    trailer: bool = False,
    declared_length: int | None = None,
    trailer_value: str | None = None,
    send_length: bool = True,
    extra_headers: tuple[tuple[str, str], ...] = (),
) -> tuple[Request, bytes, ChunkSigner]:
    mode = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD" + ("-TRAILER" if trailer else "")
    headers = [("Content-Encoding", "aws-chunked"), ("X-Amz-Storage-Class", "STANDARD")]
    headers += extra_headers
    if send_length:
        length = len(payload) if declared_length is None else declared_length
        headers.append(("X-Amz-Decoded-Content-Length", str(length)))
    if trailer:
        headers.append(("X-Amz-Trailer", "x-amz-checksum-crc32"))
    request = sign(
        "PUT",
        "http://s3.example.test:9000/bkt/chunked%20object",
        headers,
        signer=StreamingSigV4Auth(mode),
    )
    botocore_seed = header(request, "Authorization").rsplit("Signature=", 1)[1]
    signed = header(request, "Authorization").split("SignedHeaders=")[1].split(",")[0].split(";")
    key = independent_signing_key(SECRET, "20250314")
    assert independent_seed(request, signed, mode, key) == botocore_seed
    signer = ChunkSigner(key, botocore_seed)
    checksum = ("x-amz-checksum-crc32", trailer_value or crc32_b64(payload)) if trailer else None
    return request, signer.body(payload, size, checksum), signer


def tamper(body: bytes, old: bytes, new: bytes, nth: int = 0) -> bytes:
    index = -1
    for _ in range(nth + 1):
        index = body.index(old, index + 1)
    return body[:index] + new + body[index + len(old) :]


def read_until_error(reader, body: bytes, step: int = 5) -> tuple[bytes, S3Error]:
    released = b""
    try:
        for i in range(0, len(body), step):
            released += reader.feed(body[i : i + step])
        released += reader.finish()
    except S3Error as error:
        return released, error
    raise AssertionError("the body verified")
