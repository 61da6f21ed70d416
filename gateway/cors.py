"""Bucket CORS configurations, kept by the gateway, answered as S3 answers them.

Django-free. A configuration is a list of rules, stored with the org's Bucket record as
JSON (``to_json``/``from_json``). The gateway answers PutBucketCors, GetBucketCors and
DeleteBucketCors itself, answers preflight ``OPTIONS`` requests from the configuration,
and adds the CORS headers to the answers of requests that carry an ``Origin``, so a page
on another origin can use presigned URLs whatever the store behind supports.
"""

from __future__ import annotations

import fnmatch
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from typing import Any

from . import s3errors
from .operations import parse_xml

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_RULES = 100
MAX_CONFIGURATION_BYTES = 64 * 1024
METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")


@dataclass(frozen=True, slots=True)
class Rule:
    allowed_origins: tuple[str, ...]
    allowed_methods: tuple[str, ...]
    allowed_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_seconds: int | None = None
    id: str | None = None

    def allows_origin(self, origin: str) -> bool:
        return any(_wildcard(pattern, origin) for pattern in self.allowed_origins)

    def allows(self, origin: str, method: str, headers: list[str]) -> bool:
        return (
            self.allows_origin(origin)
            and method in self.allowed_methods
            and all(
                any(_wildcard(pattern.lower(), header) for pattern in self.allowed_headers)
                for header in headers
            )
        )


def _wildcard(pattern: str, value: str) -> bool:
    """S3's matching: one ``*`` stands for any run of characters; nothing else is special."""
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]").replace("?", "[?]"))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_configuration(body: bytes) -> list[Rule]:
    """The rules of a PutBucketCors body, checked as S3 checks them."""
    if len(body) > MAX_CONFIGURATION_BYTES:
        raise s3errors.malformed_xml()
    root = parse_xml(body)
    if _local(root.tag) != "CORSConfiguration":
        raise s3errors.malformed_xml()
    rules = [_rule(element) for element in root if _local(element.tag) == "CORSRule"]
    if not rules or len(rules) > MAX_RULES:
        raise s3errors.malformed_xml(f"A configuration holds 1 to {MAX_RULES} rules.")
    return rules


def _rule(element: ET.Element) -> Rule:
    values: dict[str, list[str]] = {}
    for child in element:
        if len(child):
            raise s3errors.malformed_xml()
        values.setdefault(_local(child.tag), []).append((child.text or "").strip())
    origins = values.get("AllowedOrigin", [])
    methods = values.get("AllowedMethod", [])
    if not origins or not methods:
        raise s3errors.malformed_xml("Each CORSRule needs an AllowedOrigin and an AllowedMethod.")
    for method in methods:
        if method not in METHODS:
            raise s3errors.invalid_request(
                f"Found unsupported HTTP method in CORS config. Unsupported method is {method}"
            )
    for value in (*origins, *values.get("AllowedHeader", [])):
        if value.count("*") > 1 or not value:
            raise s3errors.invalid_request(
                f'AllowedOrigin and AllowedHeader "{value}" can have at most one * wildcard.'
            )
    max_age = values.get("MaxAgeSeconds")
    if max_age is not None:
        if len(max_age) != 1 or not max_age[0].isdigit():
            raise s3errors.malformed_xml("MaxAgeSeconds is a whole number of seconds.")
    ids = values.get("ID")
    return Rule(
        tuple(origins),
        tuple(dict.fromkeys(methods)),
        tuple(values.get("AllowedHeader", [])),
        tuple(values.get("ExposeHeader", [])),
        int(max_age[0]) if max_age else None,
        ids[0] if ids else None,
    )


def to_xml(rules: list[Rule]) -> bytes:
    ET.register_namespace("", S3_NS)
    root = ET.Element(f"{{{S3_NS}}}CORSConfiguration")
    for rule in rules:
        element = ET.SubElement(root, f"{{{S3_NS}}}CORSRule")
        if rule.id is not None:
            ET.SubElement(element, f"{{{S3_NS}}}ID").text = rule.id
        for tag, items in (
            ("AllowedHeader", rule.allowed_headers),
            ("AllowedMethod", rule.allowed_methods),
            ("AllowedOrigin", rule.allowed_origins),
            ("ExposeHeader", rule.expose_headers),
        ):
            for item in items:
                ET.SubElement(element, f"{{{S3_NS}}}{tag}").text = item
        if rule.max_age_seconds is not None:
            ET.SubElement(element, f"{{{S3_NS}}}MaxAgeSeconds").text = str(rule.max_age_seconds)
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        + ET.tostring(root, encoding="utf-8").split(b"?>", 1)[-1].lstrip()
    )


def to_json(rules: list[Rule]) -> list[dict[str, Any]]:
    return [asdict(rule) for rule in rules]


def from_json(data: list[dict[str, Any]] | None) -> list[Rule]:
    return [
        Rule(**{name: tuple(v) if isinstance(v, list) else v for name, v in item.items()})
        for item in data or []
    ]


def preflight(
    rules: list[Rule], origin: str | None, method: str | None, request_headers: str | None
) -> list[tuple[bytes, bytes]]:
    """The headers of a preflight's 200 answer, or the S3 error that refuses it."""
    if not origin:
        raise s3errors.bad_request("Insufficient information. Origin request header needed.")
    if method not in METHODS:
        raise s3errors.bad_request("Invalid Access-Control-Request-Method.")
    if not rules:
        raise s3errors.cors_forbidden("CORSResponse: CORS is not enabled for this bucket.")
    asked = [h.strip().lower() for h in (request_headers or "").split(",") if h.strip()]
    for rule in rules:
        if rule.allows(origin, method, asked):
            headers = _allow_headers(rule, origin)
            methods = ", ".join(rule.allowed_methods).encode()
            headers.append((b"access-control-allow-methods", methods))
            if asked:
                headers.append((b"access-control-allow-headers", ", ".join(asked).encode()))
            if rule.max_age_seconds is not None:
                headers.append((b"access-control-max-age", str(rule.max_age_seconds).encode()))
            return headers
    raise s3errors.cors_forbidden("CORSResponse: This CORS request is not allowed.")


def actual(rules: list[Rule], origin: str, method: str) -> list[tuple[bytes, bytes]]:
    """The CORS headers for the answer to a request from ``origin`` (none if no rule
    allows it: the browser then keeps the answer from the page)."""
    for rule in rules:
        if rule.allows_origin(origin) and method in rule.allowed_methods:
            headers = _allow_headers(rule, origin)
            if rule.expose_headers:
                headers.append(
                    (b"access-control-expose-headers", ", ".join(rule.expose_headers).encode())
                )
            return headers
    return []


def _allow_headers(rule: Rule, origin: str) -> list[tuple[bytes, bytes]]:
    if "*" in rule.allowed_origins:
        return [(b"access-control-allow-origin", b"*"), (b"vary", b"Origin")]
    return [
        (b"access-control-allow-origin", origin.encode("latin-1", "replace")),
        (b"access-control-allow-credentials", b"true"),
        (b"vary", b"Origin, Access-Control-Request-Headers, Access-Control-Request-Method"),
    ]
