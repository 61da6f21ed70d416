"""``POST /internal/v1/s3/verify``: our keys, as an authority for other S3 front ends.

A front end that serves S3 itself (Ceph RGW, a CDN edge) computes the string to sign of
each request and asks here, authenticated by a service token from
``EXCLOUD_VERIFY_SERVICE_TOKENS`` (``Authorization: Bearer <token>``; a user's API token
is refused). The answer runs through the gateway's own steps, in the gateway's order:
the scope in the string to sign (gateway.sigv4), the key (gateway.authority.read, a
database read per call, so a revoke or a narrowed scope is seen by the next call), the
clock and the signature, whether the key is usable, then check_access() on the names and
the source address, which also decides the key's own scope (keys/scope.py).

A token may be limited to some orgs (``TOKEN@acme|globex``): for a key of any other org
it gets the answer an unknown key gets, decided before the signature is looked at, so it
learns nothing about keys of orgs its front end does not serve.

Request, JSON::

    {"access_key_id": "EXC...", "string_to_sign": "AWS4-HMAC-SHA256\\n<x-amz-date>\\n"
     "<date>/<region>/s3/aws4_request\\n<hex sha256 of the canonical request>",
     "signature": "<hex>", "action": "read", "bucket": "photos" or null,
     "copy_source_bucket": null, "source_ip": "203.0.113.7" or null,
     "key": "2024/cat.jpg" or null, "copy_source_key": null, "prefix": null}

``string_to_sign`` is the text itself (it is ASCII by construction), not base64 as
Keystone takes it. ``action`` is what gateway.authority.authorize() decides on:
``ListBuckets``, ``CreateBucket``, ``DeleteBucket``, ``read`` or ``write``.

The last three fields are optional, and narrow the question for keys whose scope is
limited (gateway.operations.for_verify_action): ``key`` is the object read or written;
``copy_source_key`` the object a write copies from (with ``copy_source_bucket``);
``prefix``, with ``read`` and no ``key``, asks about listing the names under it. A
``read`` or ``write`` without ``key`` asks about every object of the bucket, and a key
limited to a prefix of it is refused; a key limited to some networks is refused when
``source_ip`` is missing. Keys of the default scope are answered as before.

Answers (never the secret; always ``Cache-Control: no-store``):

- 200 ``{"allow": true, "org", "access_key_id", "scope", "signing_key"}``: the signing
  key derived for that scope, so the front end can verify chunk signatures itself.
- the S3 error's own status (403; 404 NoSuchBucket or 409 for bucket names as S3 answers
  them; 400 for a malformed scope, string to sign or bucket name) with
  ``{"allow": false, "code": "<S3 code>", "message", "details"}``, exactly what the
  gateway would answer, so the front end can relay it as AWS's XML.
- 401 ``{"allow": false, "code": "unauthorized"}`` for a missing or wrong service token,
  400 ``bad_request`` for a body that is not the JSON above, 405 for another method.

Calls are counted like gateway requests: toward the key's usage only once the signature
verified with its secret, otherwise as a denied attempt on the key ID named. Each 200
also counts one signing key handed to that token (gateway.models.SigningKeyGrant), as a
signing key lets its holder sign requests as the key (the README says for how long). All
of it is kept in memory and sent to the worker about once per
EXCLOUD_USAGE_FLUSH_SECONDS; no call writes to the database.
"""

from __future__ import annotations

import atexit
import hashlib
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

from . import authority, operations, s3errors, sigv4
from .models import BUCKET_NAME_MAX_LENGTH
from .tasks import record_usage
from .usage import UsageRecorder

log = logging.getLogger(__name__)

ACTIONS = tuple(operations.VERIFY_ACTIONS)
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
    "key": 1024,
    "copy_source_key": 1024,
    "prefix": 1024,
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
class Caller:
    """The front end behind a call: its token's label and the orgs it may verify for."""

    label: str
    orgs: frozenset[str] | None  # None: every org

    def serves(self, org_slug: str) -> bool:
        return self.orgs is None or org_slug in self.orgs


@dataclass(frozen=True, slots=True)
class Call:
    access_key_id: str
    string_to_sign: str
    signature: str
    action: str
    bucket: str | None
    copy_source_bucket: str | None
    source_ip: str | None
    key: str | None = None
    copy_source_key: str | None = None
    prefix: str | None = None


def _answer(status: int, body: dict[str, Any]) -> JsonResponse:
    response = JsonResponse(body, status=status)
    # An allow carries a signing key: no cache on the way may keep it.
    response["Cache-Control"] = "no-store"
    return response


def _refusal(status: int, code: str, message: str) -> JsonResponse:
    return _answer(status, {"allow": False, "code": code, "message": message})


def token_label(token: str) -> str:
    """What usage counts and logs call a service token: a fingerprint, never the token."""
    return "token " + hashlib.sha256(token.encode()).hexdigest()[:12]


def _caller(request: HttpRequest) -> Caller | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    presented = token.strip().encode()
    if scheme.lower() != "bearer" or not presented:
        return None
    # Compare with every token, so the time taken does not tell which one nearly matched.
    matched = None
    for expected, orgs in settings.EXCLOUD_VERIFY_SERVICE_TOKENS:
        if hmac.compare_digest(presented, expected.encode()):
            matched = Caller(token_label(expected), orgs)
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
    key = _text(data, "key", required=False)
    copy_source_key = _text(data, "copy_source_key", required=False)
    prefix = _text(data, "prefix", required=False)
    if key is not None and action not in ("read", "write"):
        raise BadCall("'key' goes with the actions read and write.")
    if prefix is not None and (action != "read" or key is not None):
        raise BadCall("'prefix' goes with the action read, without 'key'.")
    if copy_source_key is not None and data.get("copy_source_bucket") is None:
        raise BadCall("'copy_source_key' goes with 'copy_source_bucket'.")
    return Call(
        access_key_id=access_key_id,
        string_to_sign=string_to_sign,
        signature=signature,
        action=action,
        bucket=_text(data, "bucket", required=False),
        copy_source_bucket=_text(data, "copy_source_bucket", required=False),
        source_ip=source_ip,
        key=key,
        copy_source_key=copy_source_key,
        prefix=prefix,
    )


@csrf_exempt
def verify(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        response = _refusal(405, "method_not_allowed", "Use POST.")
        response["Allow"] = "POST"
        return response
    caller = _caller(request)
    if caller is None:
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
    return decide(call, caller)


def decide(call: Call, caller: Caller, now: float | None = None) -> JsonResponse:
    """The gateway's checks on a string to sign, in the gateway's order, for a front end
    that may verify for ``caller.orgs``."""
    at = time.time() if now is None else now
    named = False
    # Set once the call's signature verified with this key's secret.
    signer: authority.KeyInfo | None = None
    authenticated = False
    try:
        signed = sigv4.parse_string_to_sign(
            call.string_to_sign, call.access_key_id, region=settings.EXCLOUD_S3_REGION
        )
        operation = operations.for_verify_action(
            call.action,
            call.bucket,
            call.copy_source_bucket,
            call.key,
            call.copy_source_key,
            call.prefix,
        )
        found, owners = authority.read(call.access_key_id, operation.buckets)
        named = True
        # A key of an org this front end does not serve is an unknown key to it: refused
        # before its signature or its status is looked at.
        if found is None or not caller.serves(found.org_slug):
            raise s3errors.invalid_access_key_id(call.access_key_id)
        key = found
        signing_key = authority.authenticate(
            call.access_key_id,
            key,
            SIGNING_KEYS,
            lambda signing_keys: sigv4.verify_string_to_sign(
                signed, call.access_key_id, call.signature, signing_keys, now=at
            ),
        )
        signer = key
        authority.require_usable(key)
        authenticated = True
        authority.check_access(key, operation, owners, call.source_ip)
    except sigv4.S3Error as error:
        if named:
            _record(call, signer, error.status, authenticated, at)
        return _answer(
            error.status,
            {"allow": False, "code": error.code, "message": error.message, "details": error.extra},
        )
    USAGE.record_signing_key(caller.label, key.id, at=at)
    _record(call, key, 200, authenticated, at)
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


def _record(
    call: Call, signer: authority.KeyInfo | None, status: int, authenticated: bool, at: float
) -> None:
    """Count a call that named a key as the gateway counts a request: toward the key only
    when signed with its secret, else as a denied attempt, so naming a key adds nothing
    to its usage."""
    if signer is None:
        USAGE.record_denied_attempt(
            authority.counted_key_id(call.access_key_id), at=at, ip=call.source_ip
        )
    else:
        USAGE.record(
            signer.id,
            at=at,
            ip=call.source_ip,
            operation=call.action,
            bucket=call.bucket or "",
            bytes_in=0,
            bytes_out=0,
            status=status,
            denied=not authenticated,
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
    what was not sent for the next flush."""
    batches = USAGE.outgoing()
    for index, batch in enumerate(batches):
        try:
            record_usage.delay(batch)
        except Exception:  # noqa: BLE001 - counting must never fail a verify call
            log.exception("could not send verify API usage totals to the broker")
            for unsent in batches[index:]:
                USAGE.restore(unsent)
            return


atexit.register(flush_usage)
