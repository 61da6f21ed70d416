"""The request as received (gateway/sigv4/request.py): built from an ASGI scope."""

from __future__ import annotations

from gateway.sigv4.request import Request
from tests.sigv4_support import (  # noqa: F401  (frozen_botocore_clock is an autouse fixture)
    NOW,
    frozen_botocore_clock,
    sign,
    verify,
)


def test_it_verifies_requests_from_the_asgi_scope():
    request = sign("GET", "http://s3.example.test:9000/bkt/a%20b%2Bc/%C3%A9?prefix=a%20b&uploads")
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/bkt/a b+c/é",
        "raw_path": request.path.encode(),
        "query_string": request.query.encode(),
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in request.headers],
    }
    asgi = Request.from_asgi(scope, now=NOW)
    assert (asgi.path, asgi.query) == (request.path, request.query)
    verify(asgi)
