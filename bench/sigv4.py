"""Benchmark: SigV4 verification (gateway/sigv4/) against botocore signing the same request.

Run from the repository root::

    .venv/bin/python bench/sigv4.py [--strict]

For each request shape, botocore signs the request (``add_auth`` on a prepared AWSRequest,
the cheapest way botocore signs) and the gateway verifies it the way it will in production:
build the Request from an ASGI scope, parse, verify with a warm signing-key cache, and for a
PUT also hash the body against x-amz-content-sha256. Both run interleaved in the same
process, many rounds of many operations; the table shows the median time per operation and
the median of the per-round ratios verify / sign.

Budget: verification costs at most a quarter of
botocore's signing. The script exits non-zero when a verification fails, and with
``--strict`` also when a ratio is over budget (machines here are noisy, so by default the
ratio is reported, not enforced).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway import sigv4  # noqa: E402

ACCESS_KEY = "EXCABCDEFGHIJKLMNOPQ"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKE1"
REGION = "us-east-1"
ENDPOINT = "http://s3.example.test:9000"
BUDGET = 0.25
ROUNDS = 41
OPS_PER_ROUND = 200
PUT_BODY = bytes(range(256)) * 4  # 1 KiB


@dataclass
class Shape:
    name: str
    method: str
    url: str
    body: bytes = b""
    presigned: bool = False


SHAPES = [
    Shape("GET object", "GET", f"{ENDPOINT}/photos/2024/summer%20trip/IMG_0042.jpg"),
    Shape("PUT 1 KiB, literal hash", "PUT", f"{ENDPOINT}/photos/notes/today.txt", PUT_BODY),
    Shape("presigned GET", "GET", f"{ENDPOINT}/photos/2024/summer%20trip/IMG_0042.jpg", b"", True),
    Shape(
        "ListObjectsV2 with query",
        "GET",
        f"{ENDPOINT}/photos?list-type=2&prefix=2024%2Fsummer%20trip%2F&max-keys=100"
        "&encoding-type=url&continuation-token=abc%2Bdef%3D",
    ),
]


def host_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc


def botocore_signer(shape: Shape):
    credentials = Credentials(ACCESS_KEY, SECRET)
    if shape.presigned:
        signer = S3SigV4QueryAuth(credentials, "s3", REGION, expires=3600)
    else:
        signer = S3SigV4Auth(credentials, "s3", REGION)
    request = AWSRequest(method=shape.method, url=shape.url, data=shape.body)
    original_url = request.url

    def sign() -> AWSRequest:
        # The query signer rewrites the URL; start from the same one every time.
        request.url = original_url
        signer.add_auth(request)
        return request

    return sign


def asgi_scope(request: AWSRequest) -> dict[str, Any]:
    parts = urlsplit(request.url)
    headers = [(b"host", host_of(request.url).encode())]
    for name, value in request.headers.items():
        raw = value if isinstance(value, bytes) else value.encode("latin-1")
        headers.append((name.lower().encode("latin-1"), raw))
    return {
        "type": "http",
        "method": request.method,
        "path": parts.path,
        "raw_path": parts.path.encode(),
        "query_string": parts.query.encode(),
        "headers": headers,
    }


def gateway_verifier(shape: Shape, scope: dict[str, Any], cache: sigv4.SigningKeyCache):
    provider = cache.provider(lambda access_key_id: SECRET)
    body = shape.body

    def verify() -> sigv4.Verified:
        request = sigv4.Request.from_asgi(scope)
        auth = sigv4.parse(request, region=REGION)
        verified = sigv4.verify(auth, provider)
        if body:
            reader = verified.body()
            reader.feed(body)
            reader.finish()
        return verified

    return verify


def per_op_us(function, ops: int) -> float:
    start = time.perf_counter()
    for _ in range(ops):
        function()
    return (time.perf_counter() - start) / ops * 1e6


def measure(shape: Shape) -> tuple[float, float, float]:
    sign = botocore_signer(shape)
    cache = sigv4.SigningKeyCache()
    verify = gateway_verifier(shape, asgi_scope(sign()), cache)
    verify()  # Raises if the request does not verify; also warms the cache.
    sign_times, verify_times = [], []
    gc.disable()
    try:
        for _ in range(ROUNDS):
            sign_times.append(per_op_us(sign, OPS_PER_ROUND))
            verify_times.append(per_op_us(verify, OPS_PER_ROUND))
    finally:
        gc.enable()
    # The ratio of each round's adjacent measurements, then their median: robust to the
    # machine speeding up or slowing down during the run.
    ratios = [v / s for s, v in zip(sign_times, verify_times, strict=True)]
    return statistics.median(sign_times), statistics.median(verify_times), statistics.median(ratios)


def checksum_rates(piece: int = 256 * 1024, pieces: int = 256) -> None:
    """Each body checksum's rate over 256 KiB pieces (what the gateway is handed per read),
    against SHA-256, which every PUT with a signed payload pays anyway: a checksum the
    client picks should never be the costlier of the two."""
    # Larger than the CPU's caches, as a body streaming through is.
    body = memoryview(os.urandom(piece * pieces))
    rates = {}
    for algorithm in sigv4.CHECKSUM_ALGORITHMS:
        times = []
        for _ in range(5):
            hasher = sigv4.new_checksum(algorithm)
            started = time.perf_counter()
            for offset in range(0, len(body), piece):
                hasher.update(body[offset : offset + piece])
            times.append(time.perf_counter() - started)
        rates[algorithm] = piece * pieces / statistics.median(times) / 1e6
    print(f"\nbody checksums over {piece // 1024} KiB pieces (median of 5 runs)")
    for algorithm, rate in rates.items():
        print(f"{algorithm:<10} {rate:>8.0f} MB/s  {rate / rates['sha256']:>5.1f}x SHA-256")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--strict", action="store_true", help="fail when over budget")
    args = parser.parse_args()

    rows = []
    for shape in SHAPES:
        try:
            sign_us, verify_us, ratio = measure(shape)
        except sigv4.S3Error as error:
            print(f"{shape.name}: verification failed: {error}", file=sys.stderr)
            return 1
        rows.append((shape.name, sign_us, verify_us, ratio))

    print(f"SigV4: gateway verify (warm signing-key cache) vs botocore sign, budget ≤ {BUDGET}x")
    print(f"{'request':<28} {'botocore sign µs':>17} {'verify µs':>10} {'ratio':>6}  verdict")
    over = False
    for name, sign_us, verify_us, ratio in rows:
        verdict = "ok" if ratio <= BUDGET else "OVER BUDGET"
        over = over or ratio > BUDGET
        print(f"{name:<28} {sign_us:>17.1f} {verify_us:>10.1f} {ratio:>6.3f}  {verdict}")
    print(
        f"medians of {ROUNDS} interleaved rounds x {OPS_PER_ROUND} operations; ratio is the "
        "median of per-round ratios"
    )
    checksum_rates()
    return 1 if (over and args.strict) else 0


if __name__ == "__main__":
    sys.exit(main())
