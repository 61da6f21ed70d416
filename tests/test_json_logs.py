"""LOG_FORMAT=json: one JSON object per line, with the request's ID."""

from __future__ import annotations

import json
import logging
import sys

import httpx
import pytest

from excloud_portal.logs import JsonFormatter, RequestIdFilter, bind_request_id
from tests.gateway_stack import web


def test_it_writes_one_json_object_per_record():
    record = logging.LogRecord("keys.tasks", logging.ERROR, __file__, 1, "sent %d", (3,), None)
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    bind_request_id("req-12345678")
    RequestIdFilter().filter(record)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "keys.tasks"
    assert entry["message"] == "sent 3"
    assert entry["request_id"] == "req-12345678"
    assert "ValueError: boom" in entry["exception"]
    assert entry["time"].endswith("+00:00")


@pytest.mark.django_db(transaction=True)
def test_the_web_logs_json_lines_with_the_request_id(tmp_path, store):
    with web(tmp_path, store, var=tmp_path, LOG_FORMAT="json") as url:
        r = httpx.get(url + "/no/such/page/", headers={"X-Request-ID": "probe-0123456789"})
        assert r.status_code == 404
        assert r.headers["x-request-id"] == "probe-0123456789"
        generated = httpx.get(url + "/also/missing/").headers["x-request-id"]
    log = next(tmp_path.glob("web-*.log")).read_text()
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert entries, log
    not_found = [e for e in entries if e["logger"] == "django.request"]
    assert [e["request_id"] for e in not_found] == ["probe-0123456789", generated]
    assert not_found[0]["message"] == "Not Found: /no/such/page/"
    assert not_found[0]["level"] == "WARNING"
