"""gateway.s3errors without a network: every error answer carries the same headers."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway import s3errors


def _sent(error, *, head: bool = False, close: bool = False) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    asyncio.run(
        s3errors.send_error(
            send, error, request_id="ABC123", resource="/bucket/key", head=head, close=close
        )
    )
    return messages


def test_it_answers_an_error_with_aws_xml_and_the_request_id():
    start, body = _sent(s3errors.no_such_bucket("bucket"))

    assert start["status"] == 404
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/xml"
    assert headers[b"x-amz-request-id"] == b"ABC123"
    assert headers[b"x-content-type-options"] == b"nosniff"
    assert headers[b"content-length"] == str(len(body["body"])).encode()
    assert b"retry-after" not in headers
    assert b"<Code>NoSuchBucket</Code>" in body["body"]
    assert b"<BucketName>bucket</BucketName>" in body["body"]
    assert b"<Resource>/bucket/key</Resource>" in body["body"]
    assert b"<RequestId>ABC123</RequestId>" in body["body"]


def test_it_tells_a_client_when_to_retry_a_503():
    start, _ = _sent(s3errors.store_unavailable())
    assert dict(start["headers"])[b"retry-after"] == b"1"

    start, _ = _sent(s3errors.slow_down(7))
    assert dict(start["headers"])[b"retry-after"] == b"7"


def test_it_sends_no_body_to_a_head_request_and_can_close_the_connection():
    start, body = _sent(s3errors.request_timeout(), head=True, close=True)

    assert start["status"] == 400
    assert dict(start["headers"])[b"connection"] == b"close"
    assert body["body"] == b""
    # The length is the one a GET would have had, as for any HEAD answer.
    assert int(dict(start["headers"])[b"content-length"]) > 0


def test_it_words_malformed_xml_alike_with_or_without_a_detail():
    plain = s3errors.malformed_xml()
    detailed = s3errors.malformed_xml("Each CORSRule needs an AllowedOrigin.")

    assert plain.message.endswith("published schema.")
    assert detailed.message == plain.message + " Each CORSRule needs an AllowedOrigin."
