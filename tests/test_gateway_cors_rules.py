"""Bucket CORS rules without a network: parsing a configuration as S3 checks it, and
answering preflights and actual requests from it."""

from __future__ import annotations

import pytest

from gateway import cors
from gateway.sigv4 import S3Error


def _config(*rules: str) -> bytes:
    return (
        b'<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        + b"".join(f"<CORSRule>{rule}</CORSRule>".encode() for rule in rules)
        + b"</CORSConfiguration>"
    )


APP = (
    "<ID>app</ID><AllowedOrigin>https://app.example.com</AllowedOrigin>"
    "<AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod>"
    "<AllowedHeader>content-type</AllowedHeader><AllowedHeader>x-amz-meta-*</AllowedHeader>"
    "<ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>600</MaxAgeSeconds>"
)
ANYONE = "<AllowedOrigin>*</AllowedOrigin><AllowedMethod>HEAD</AllowedMethod>"


def test_it_reads_a_configuration_and_writes_it_back_the_same():
    rules = cors.parse_configuration(_config(APP, ANYONE))

    assert rules[0] == cors.Rule(
        ("https://app.example.com",),
        ("GET", "PUT"),
        ("content-type", "x-amz-meta-*"),
        ("ETag",),
        600,
        "app",
    )
    assert cors.parse_configuration(cors.to_xml(rules)) == rules
    assert cors.from_json(cors.to_json(rules)) == rules


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (_config(), "MalformedXML"),
        (_config("<AllowedMethod>GET</AllowedMethod>"), "MalformedXML"),
        (_config("<AllowedOrigin>*</AllowedOrigin>"), "MalformedXML"),
        (
            _config("<AllowedOrigin>*</AllowedOrigin><AllowedMethod>PATCH</AllowedMethod>"),
            "InvalidRequest",
        ),
        (
            _config("<AllowedOrigin>*.*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"),
            "InvalidRequest",
        ),
        (_config(ANYONE + "<MaxAgeSeconds>-1</MaxAgeSeconds>"), "MalformedXML"),
        (_config(*[ANYONE] * 101), "MalformedXML"),
        (b'<!DOCTYPE x [<!ENTITY e "*">]>' + _config(ANYONE), "MalformedXML"),
        (_config(ANYONE).decode().encode("utf-16"), "MalformedXML"),
        (b"<Other/>", "MalformedXML"),
        (b"not xml", "MalformedXML"),
    ],
)
def test_it_refuses_configurations_s3_refuses(body, code):
    with pytest.raises(S3Error) as caught:
        cors.parse_configuration(body)
    assert (caught.value.code, caught.value.status) == (code, 400)


def test_it_allows_a_preflight_a_rule_allows():
    rules = cors.parse_configuration(_config(APP, ANYONE))

    headers = dict(
        cors.preflight(rules, "https://app.example.com", "PUT", "Content-Type, X-Amz-Meta-Tag")
    )

    assert headers[b"access-control-allow-origin"] == b"https://app.example.com"
    assert headers[b"access-control-allow-methods"] == b"GET, PUT"
    assert headers[b"access-control-allow-headers"] == b"content-type, x-amz-meta-tag"
    assert headers[b"access-control-max-age"] == b"600"
    assert headers[b"access-control-allow-credentials"] == b"true"
    anyone = dict(cors.preflight(rules, "https://elsewhere.test", "HEAD", None))
    assert anyone[b"access-control-allow-origin"] == b"*"


@pytest.mark.parametrize(
    ("origin", "method", "asked", "status"),
    [
        ("https://evil.example.com", "PUT", None, 403),
        ("https://app.example.com", "DELETE", None, 403),
        ("https://app.example.com", "PUT", "authorization", 403),
        ("https://app.example.com.evil.test", "GET", None, 403),
        (None, "GET", None, 400),
        ("https://app.example.com", "PATCH", None, 400),
    ],
)
def test_it_refuses_a_preflight_no_rule_allows(origin, method, asked, status):
    rules = cors.parse_configuration(_config(APP))
    with pytest.raises(S3Error) as caught:
        cors.preflight(rules, origin, method, asked)
    assert caught.value.status == status


def test_it_refuses_every_preflight_of_a_bucket_without_rules():
    with pytest.raises(S3Error) as caught:
        cors.preflight([], "https://app.example.com", "GET", None)
    assert (caught.value.status, caught.value.code) == (403, "AccessForbidden")


def test_it_matches_one_wildcard_and_nothing_else_special():
    rules = cors.parse_configuration(
        _config(
            "<AllowedOrigin>https://*.example.com</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
        )
    )
    assert cors.actual(rules, "https://a.example.com", "GET")
    assert not cors.actual(rules, "https://example.com", "GET")
    assert not cors.actual(rules, "http://a.example.com", "GET")
    brackets = cors.parse_configuration(
        _config(
            "<AllowedOrigin>https://[ab].test</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
        )
    )
    assert not cors.actual(brackets, "https://a.test", "GET")
    assert cors.actual(brackets, "https://[ab].test", "GET")


def test_it_adds_headers_to_an_actual_request_only_for_an_allowed_origin_and_method():
    rules = cors.parse_configuration(_config(APP))

    allowed = dict(cors.actual(rules, "https://app.example.com", "GET"))

    assert allowed[b"access-control-allow-origin"] == b"https://app.example.com"
    assert allowed[b"access-control-expose-headers"] == b"ETag"
    assert cors.actual(rules, "https://app.example.com", "DELETE") == []
    assert cors.actual(rules, "https://evil.example.com", "GET") == []
