"""``POST /internal/v1/s3/verify``: our keys, as an authority for other S3 front ends.

A front end that serves S3 itself (Ceph RGW, a CDN edge) computes the string to sign of
each request and asks here, authenticated by a service token from
``EXCLOUD_VERIFY_SERVICE_TOKENS`` (``Authorization: Bearer <token>``; a user's API token
is refused). The answer runs through the gateway's own steps, in the gateway's order:
the scope in the string to sign (gateway.sigv4), the key (gateway.authority.read, a
database read per call, so a revoke is seen by the next call), admit() for usable keys
and their signing keys, the clock and the signature, then check_access() on the bucket.

Request, JSON::

    {"access_key_id": "EXC...", "string_to_sign": "AWS4-HMAC-SHA256\\n<x-amz-date>\\n"
     "<date>/<region>/s3/aws4_request\\n<hex sha256 of the canonical request>",
     "signature": "<hex>", "action": "read", "bucket": "photos" or null,
     "copy_source_bucket": null, "source_ip": "203.0.113.7" or null}

``string_to_sign`` is the text itself (it is ASCII by construction), not base64 as
Keystone takes it. ``action`` is what gateway.authority.authorize() decides on:
``ListBuckets``, ``CreateBucket``, ``DeleteBucket``, ``read`` or ``write``.

Answers (never the secret; always ``Cache-Control: no-store``):

- 200 ``{"allow": true, "org", "access_key_id", "scope", "signing_key"}``: the signing
  key derived for that scope, so the front end can verify chunk signatures itself.
- the S3 error's own status (403, or 400 for a malformed scope or string to sign) with
  ``{"allow": false, "code": "<S3 code>", "message", "details"}``, exactly what the
  gateway would answer, so the front end can relay it as AWS's XML.
- 401 ``{"allow": false, "code": "unauthorized"}`` for a missing or wrong service token,
  400 ``bad_request`` for a body that is not the JSON above, 405 for another method.

Each call counts toward the key's usage like a gateway request, kept in memory and sent
to the worker about once per EXCLOUD_USAGE_FLUSH_SECONDS; no call writes to the database.
"""

from __future__ import annotations

import atexit
import hmac
import ipaddress
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from . import authority, sigv4
from .models import BUCKET_NAME_MAX_LENGTH
from .usage import UsageRecorder

log = logging.getLogger(__name__)

ACTIONS = (
    authority.LIST_BUCKETS,
    authority.CREATE_BUCKET,
    authority.DELETE_BUCKET,
    authority.READ,
    authority.WRITE,
)
MAX_BODY_BYTES = 16 * 1024
# Longest accepted value per text field; anything real is far shorter.
MAX_LENGTHS = {
    "access_key_id": 128,
    "string_to_sign": 1024,
    "signature": 128,
    "action": 32,
    "bucket": BUCKET_NAME_MAX_LENGTH,
    "copy_source_bucket": BUCKET_NAME_MAX_LENGTH,
    "source_ip": 64,
}
UNAUTHORIZED_MESSAGE = (
    "Missing or wrong service token. Send one of EXCLOUD_VERIFY_SERVICE_TOKENS as "
    "'Authorization: Bearer <token>'."
)

# One of each per web process, as each gateway process has its own.
SIGNING_KEYS = sigv4.SigningKeyCache()
USAGE = UsageRecorder()
_flush_lock = threading.Lock()
_next_flush = time.monotonic() + settings.EXCLOUD_USAGE_FLUSH_SECONDS


class BadCall(Exception):
    """The body is not a verify request; its message says why."""


@dataclass(frozen=True, slots=True)
class Call:
    access_key_id: str
    string_to_sign: str
    signature: str
    action: str
    bucket: str | None
    copy_source_bucket: str | None
    source_ip: str | None


def _answer(status: int, body: dict[str, Any]) -> JsonResponse:
    response = JsonResponse(body, status=status)
    # An allow carries a signing key: no cache on the way may keep it.
    response["Cache-Control"] = "no-store"
    return response


def _refusal(status: int, code: str, message: str) -> JsonResponse:
    return _answer(status, {"allow": False, "code": code, "message": message})


def _service_token_ok(request: HttpRequest) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    presented = token.strip().encode()
    if scheme.lower() != "bearer" or not presented:
        return False
    # Compare with every token, so the time taken does not tell which one nearly matched.
    matched = False
    for expected in settings.EXCLOUD_VERIFY_SERVICE_TOKENS:
        matched |= hmac.compare_digest(presented, expected.encode())
    return matched


def _text(data: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise BadCall(f"'{name}' is required.")
        return None
    if not isinstance(value, str) or not value:
        raise BadCall(f"'{name}' must be a non-empty string.")
    if len(value) > MAX_LENGTHS[name]:
        raise BadCall(f"'{name}' is longer than {MAX_LENGTHS[name]} characters.")
    # NUL and lone surrogates (JSON allows both) can reach neither the database nor an HMAC.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadCall(f"'{name}' holds characters that are not allowed.") from None
    if "\x00" in value:
        raise BadCall(f"'{name}' holds characters that are not allowed.")
    return value


def _required(data: dict[str, Any], name: str) -> str:
    value = _text(data, name, required=True)
    assert value is not None
    return value


def parse_call(body: bytes) -> Call:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadCall("The body must be a JSON object.") from None
    if not isinstance(data, dict):
        raise BadCall("The body must be a JSON object.")
    unknown = sorted(set(data) - set(MAX_LENGTHS))
    if unknown:
        raise BadCall(f"Unknown field {unknown[0]!r}.")
    access_key_id = _required(data, "access_key_id")
    string_to_sign = _required(data, "string_to_sign")
    signature = _required(data, "signature")
    action = _required(data, "action")
    if action not in ACTIONS:
        raise BadCall(f"'action' must be one of {', '.join(ACTIONS)}.")
    source_ip = _text(data, "source_ip", required=False)
    if source_ip is not None:
        try:
            source_ip = str(ipaddress.ip_address(source_ip))
        except ValueError:
            raise BadCall("'source_ip' must be an IPv4 or IPv6 address.") from None
    return Call(
        access_key_id=access_key_id,
        string_to_sign=string_to_sign,
        signature=signature,
        action=action,
        bucket=_text(data, "bucket", required=False),
        copy_source_bucket=_text(data, "copy_source_bucket", required=False),
        source_ip=source_ip,
    )


@csrf_exempt
def verify(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        response = _refusal(405, "method_not_allowed", "Use POST.")
        response["Allow"] = "POST"
        return response
    if not _service_token_ok(request):
        response = _refusal(401, "unauthorized", UNAUTHORIZED_MESSAGE)
        response["WWW-Authenticate"] = 'Bearer realm="excloud-internal"'
        return response
    try:
        body = request.body
    except RequestDataTooBig:
        return _refusal(400, "bad_request", f"The body is over {MAX_BODY_BYTES} bytes.")
    if len(body) > MAX_BODY_BYTES:
        return _refusal(400, "bad_request", f"The body is over {MAX_BODY_BYTES} bytes.")
    try:
        call = parse_call(body)
    except BadCall as error:
        return _refusal(400, "bad_request", str(error))
    return decide(call)


def decide(call: Call, now: float | None = None) -> JsonResponse:
    """The gateway's checks on a string to sign, in the gateway's order."""
    found: authority.KeyInfo | None = None
    authenticated = False
    try:
        signed = sigv4.parse_string_to_sign(
            call.string_to_sign, call.access_key_id, region=settings.EXCLOUD_S3_REGION
        )
        names = tuple({n for n in (call.bucket, call.copy_source_bucket) if n is not None})
        found, owners = authority.read(call.access_key_id, names)
        key, signing_keys = authority.admit(call.access_key_id, found, SIGNING_KEYS)
        signing_key = sigv4.verify_string_to_sign(
            signed,
            call.access_key_id,
            call.signature,
            signing_keys,
            now=time.time() if now is None else now,
        )
        authenticated = True
        buckets = {name: authority.BucketRef(name, owners.get(name)) for name in names}
        authority.check_access(
            key,
            call.action,
            buckets[call.bucket] if call.bucket is not None else None,
            buckets[call.copy_source_bucket] if call.copy_source_bucket is not None else None,
        )
    except sigv4.S3Error as error:
        _record(call, found, error.status, authenticated)
        return _answer(
            error.status,
            {"allow": False, "code": error.code, "message": error.message, "details": error.extra},
        )
    _record(call, found, 200, authenticated)
    return _answer(
        200,
        {
            "allow": True,
            "org": key.org_slug,
            "access_key_id": key.id,
            "scope": signed.scope,
            "signing_key": signing_key.hex(),
        },
    )


def _record(call: Call, key: authority.KeyInfo | None, status: int, authenticated: bool) -> None:
    """Count the call as the gateway counts a request: only for a key we know."""
    if key is None:
        return
    USAGE.record(
        key.id,
        at=time.time(),
        ip=call.source_ip,
        operation=call.action,
        bucket=call.bucket or "",
        bytes_in=0,
        bytes_out=0,
        status=status,
        denied=not key.usable(),
        authenticated=authenticated,
    )
    _flush_when_due()


def _flush_when_due() -> None:
    global _next_flush
    now = time.monotonic()
    with _flush_lock:
        if now < _next_flush:
            return
        _next_flush = now + settings.EXCLOUD_USAGE_FLUSH_SECONDS
    flush_usage()


def flush_usage() -> None:
    """Send the counted usage to the worker (gateway.tasks.record_usage); on failure keep
    it for the next flush."""
    batch = USAGE.drain()
    if batch is None:
        return
    from .tasks import record_usage

    try:
        record_usage.delay(batch)
    except Exception:  # noqa: BLE001 - counting must never fail a verify call
        log.exception("could not send verify API usage totals to the broker")
        USAGE.restore(batch)


atexit.register(flush_usage)
