"""S3 error answers and AWS's XML error body (gateway/sigv4/errors.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gateway.sigv4.errors import S3Error, error_xml, invalid_access_key_id


def test_it_renders_the_aws_error_body_escaped():
    error = S3Error(
        "SignatureDoesNotMatch",
        403,
        "a < b & c > d",
        {"StringToSign": "AWS4-HMAC-SHA256\n<x>&amp;\x00", "Region": "us-east-1"},
    )
    body = error_xml(error, request_id="r&1", resource="/b/k<")
    assert body.startswith(
        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code>'
    )
    assert b"<Message>a &lt; b &amp; c &gt; d</Message>" in body
    root = ET.fromstring(body)
    assert root.findtext("StringToSign") == "AWS4-HMAC-SHA256\n<x>&amp;\ufffd"
    assert (root.findtext("RequestId"), root.findtext("Resource")) == ("r&1", "/b/k<")
    assert [child.tag for child in root] == [
        "Code",
        "Message",
        "StringToSign",
        "Region",
        "Resource",
        "RequestId",
    ]
    assert error.to_xml("r&1", "/b/k<") == body


def test_it_describes_an_unknown_access_key():
    error = invalid_access_key_id("EXCNOPE")
    assert (error.code, error.status) == ("InvalidAccessKeyId", 403)
    assert ET.fromstring(error.to_xml()).findtext("AWSAccessKeyId") == "EXCNOPE"
