"""One request on its way through the gateway, and all that is learnt about it as it goes.

Django-free. The gateway makes one ``Exchange`` per request and hands it from step to
step instead of loose arguments: each step reads what the steps before it found (the
operation, the verified signature, the key, the owners of the buckets it touches) and
adds its own. Usage recording reads it once the request is answered.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import limits, sigv4
from .asgi_io import Receiver, Sender
from .guard import ip_address_or_none
from .operations import Operation

if TYPE_CHECKING:
    from .authority import KeyInfo


@dataclass(slots=True)
class Exchange:
    """One request, and what the gateway has found out about it so far."""

    scope: dict[str, Any]
    request: sigv4.Request
    request_id: str
    receive: Receiver
    send: Sender
    ip: str | None
    # What the request does, and every name it touches (DeleteObjects' grows once its
    # body is read).
    operation: Operation | None = None
    # The request's signature, once it verified.
    verified: sigv4.Verified | None = None
    # The key the request was signed with, once it proved usable, and the org holding
    # each bucket the operation touches (None: no org).
    key: KeyInfo | None = None
    owners: dict[str, int | None] = field(default_factory=dict)
    # The whole body of a request decided on its body, once read and verified.
    body: bytes | None = None
    # The key the request was signed with: set only once its signature verified.
    access_key_id: str | None = None
    authenticated: bool = False
    denied: bool = False
    # A key ID the request named without authenticating (a denied attempt).
    claimed_key_id: str | None = None
    failures: list[BaseException] = field(default_factory=list)
    # This request claimed its CreateBucket's name, to give back if the store refuses.
    claimed_bucket: bool = False
    # The S3 error code the request was answered with, if any.
    error_code: str | None = None

    @classmethod
    def begin(cls, scope: dict[str, Any], receive, send, body_timeout: float) -> Exchange:
        """The exchange of an ASGI HTTP request, with its waits on the client limited to
        ``body_timeout`` seconds each."""
        request = sigv4.Request.from_asgi(scope)
        return cls(
            scope,
            request,
            secrets.token_hex(8).upper(),
            Receiver(receive, body_timeout, limits.undeclared_body_limit(request)),
            Sender(send, body_timeout),
            client_address(scope),
        )

    def close(self) -> None:
        """The exchange is over: its waits on the client are done."""
        self.receive.close()
        self.send.close()

    @property
    def headers(self) -> dict[str, list[str]]:
        """The request's headers by lowercase name."""
        return self.request.header_map or {}

    def header(self, name: str) -> str | None:
        """The first value of the request's header ``name``, or None."""
        return (self.headers.get(name) or [None])[0]


def client_address(scope: dict[str, Any]) -> str | None:
    """The request's source address, or None when it is not known. Behind a trusted proxy
    the ASGI server takes it from X-Forwarded-For as written, which need not be an
    address at all: such a value counts as unknown (a key limited to source networks is
    refused it), never as text to match, count or store."""
    return ip_address_or_none((scope.get("client") or (None,))[0])
