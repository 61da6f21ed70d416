"""The web's /metrics: request counts by URL name, who may read them, and a Celery
worker's task outcomes."""

from __future__ import annotations

import time
import urllib.request

import pytest
from django.test import Client
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from excloud_portal import celery_app
from tests.gateway_stack import free_port, worker

pytestmark = pytest.mark.django_db
TOKEN = "t" * 40


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(**extra) -> dict[tuple[str, frozenset], float]:
    r = Client().get("/metrics", **extra)
    assert r.status_code == 200
    assert r["Content-Type"].startswith("text/plain")
    assert not r.cookies
    return samples(r.content.decode())


def requests(found, route: str, method: str, status: str) -> float:
    key = (
        "excloud_web_requests_total",
        frozenset(dict(route=route, method=method, status=status).items()),
    )
    return found.get(key, 0.0)


def test_it_counts_requests_by_url_name_and_status(owner_client):
    before = scrape()
    assert owner_client.get(reverse("key_list", args=["acme"])).status_code == 200
    assert owner_client.get("/orgs/acme/keys/EXCNOSUCHKEY/").status_code == 404
    assert Client().get("/no/such/page/").status_code == 404
    after = scrape()
    assert (
        requests(after, "key_list", "GET", "200") - requests(before, "key_list", "GET", "200") == 1
    )
    grew = requests(after, "key_detail", "GET", "404") - requests(
        before, "key_detail", "GET", "404"
    )
    assert grew == 1
    unmatched = requests(after, "<unmatched>", "GET", "404") - requests(
        before, "<unmatched>", "GET", "404"
    )
    assert unmatched == 1
    count = ("excloud_web_request_duration_seconds_count", frozenset({"route": "key_list"}.items()))
    assert after[count] - before.get(count, 0.0) == 1


def test_it_answers_metrics_only_to_allowed_networks_or_the_token(settings):
    settings.EXCLOUD_METRICS_TOKEN = TOKEN
    assert Client().get("/metrics").status_code == 200
    assert Client().get("/metrics", REMOTE_ADDR="::1").status_code == 200
    assert Client().get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 404
    # Through a proxy, loopback is anybody.
    assert Client().get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 404
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}", "REMOTE_ADDR": "203.0.113.9"}
    assert Client().get("/metrics", **bearer).status_code == 200
    wrong = {"HTTP_AUTHORIZATION": "Bearer " + "u" * 40, "REMOTE_ADDR": "203.0.113.9"}
    assert Client().get("/metrics", **wrong).status_code == 404
    settings.EXCLOUD_METRICS_TOKEN = ""
    assert (
        Client()
        .get("/metrics", HTTP_AUTHORIZATION="Bearer ", REMOTE_ADDR="203.0.113.9")
        .status_code
        == 404
    )


@pytest.mark.django_db(transaction=True)
def test_a_worker_serves_its_task_outcomes(tmp_path, store, settings):
    if not settings.REDIS_URL:
        pytest.skip("the worker and this test share the broker through Redis")
    port = free_port()
    with worker(
        tmp_path,
        store,
        redis_url=settings.REDIS_URL,
        var=tmp_path,
        EXCLOUD_WORKER_METRICS_PORT=str(port),
    ) as log:
        celery_app.send_task("keys.tasks.expire_due_keys")
        # Called with an argument it does not take: the task fails.
        celery_app.send_task("keys.tasks.expire_due_keys", args=["unexpected"])
        name = "keys.tasks.expire_due_keys"
        wanted = {
            (
                "excloud_celery_tasks_total",
                frozenset({"task": name, "outcome": "succeeded"}.items()),
            ),
            ("excloud_celery_tasks_total", frozenset({"task": name, "outcome": "failed"}.items())),
        }
        deadline = time.monotonic() + 30
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                found = samples(r.read().decode())
            if all(found.get(key, 0) >= 1 for key in wanted) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert all(found.get(key, 0) == 1 for key in wanted), log.read_text()
