"""A key's activity chart in Chromium: a screenshot of the page, and every bar's day,
value and drawn height agreeing with the table beside it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from keys.models import KeyUsage, KeyUsageDay
from tests import test_browser
from tests.browser_support import ARTIFACTS
from tests.conftest import new_key
from tests.test_browser_mfa import sign_in

open_page = test_browser.open_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MEASURES = ("requests", "bytes_in", "bytes_out", "errors")


def test_the_chart_draws_the_numbers_of_its_table(open_page, live_server, owner):
    key, _ = new_key(owner, "nightly-backup")
    now = timezone.now()
    today = now.date()
    # Rolled-up days, hourly rows of the last days, and idle days between.
    for back, requests in [(27, 40), (20, 5), (12, 90), (6, 1)]:
        KeyUsageDay.objects.create(
            access_key=key,
            day=today - timedelta(days=back),
            requests=requests,
            bytes_in=requests * 2048,
            bytes_out=requests * 10_000,
            errors=requests // 10,
        )
    # The hour before this one is yesterday's between 00:00 and 01:00 UTC.
    hourly: dict[str, int] = {}
    for hours_back, requests in [(0, 7), (1, 13), (30, 60)]:
        hour = (now - timedelta(hours=hours_back)).replace(minute=0, second=0, microsecond=0)
        KeyUsage.objects.create(
            access_key=key, hour=hour, requests=requests, bytes_in=512, errors=1
        )
        day = hour.date().isoformat()
        hourly[day] = hourly.get(day, 0) + requests

    owner.user.set_password(test_browser.PASSWORD)
    owner.user.save()
    page = open_page(viewport={"width": 1100, "height": 1400})
    sign_in(page, live_server.url, owner.user.email)
    expect(page.get_by_role("heading", name="Access keys")).to_be_visible()
    page.goto(f"{live_server.url}/orgs/{owner.org.slug}/keys/{key.pk}/")
    expect(page.get_by_role("heading", name="Activity, last 30 days")).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".usage-charts").screenshot(path=str(ARTIFACTS / "key-activity-chart.png"))
    page.screenshot(path=str(ARTIFACTS / "key-activity-page.png"), full_page=True)

    page.get_by_text("The same 30 days as a table").click()
    table = page.evaluate(
        """() => Object.fromEntries(
            [...document.querySelectorAll('#usage-days tbody tr')].map((row) => [
                row.dataset.day,
                Object.fromEntries([...row.querySelectorAll('td[data-measure]')].map(
                    (cell) => [cell.dataset.measure, Number(cell.dataset.value)])),
            ]))"""
    )
    # The numbers a reader sees in the table, not only its data attributes.
    shown_requests = page.evaluate(
        """() => Object.fromEntries(
            [...document.querySelectorAll('#usage-days tbody tr')].map((row) => [
                row.dataset.day,
                Number(row.querySelector('td[data-measure=requests]').innerText),
            ]))"""
    )
    assert len(table) == 30
    assert shown_requests == {day: values["requests"] for day, values in table.items()}
    assert {day: table[day]["requests"] for day in hourly} == hourly
    assert sum(values["requests"] for values in table.values()) == 40 + 5 + 90 + 1 + 20 + 60

    for measure in MEASURES:
        bars = page.evaluate(
            """(measure) => [...document.querySelectorAll(
                `figure[data-measure="${measure}"] rect.chart-bar`)].map((bar) => ({
                day: bar.dataset.day, value: Number(bar.dataset.value),
                height: bar.getBoundingClientRect().height,
                left: bar.getBoundingClientRect().left}))""",
            measure,
        )
        assert [bar["day"] for bar in bars] == sorted(table), measure
        assert all(a["left"] < b["left"] for a, b in zip(bars, bars[1:], strict=False))
        assert {bar["day"]: bar["value"] for bar in bars} == {
            day: values[measure] for day, values in table.items()
        }, measure
        # What is drawn matches too: each bar's height in proportion to its value.
        tallest = max(bars, key=lambda bar: bar["value"])
        for bar in bars:
            if bar["value"] == 0:
                assert bar["height"] == 0, (measure, bar)
            else:
                expected = tallest["height"] * bar["value"] / tallest["value"]
                assert abs(bar["height"] - expected) <= max(1.5, expected * 0.02), (measure, bar)


def test_the_usage_pages_fit_a_phone_and_the_report_shows_its_progress(
    open_page, live_server, owner
):
    key, _ = new_key(owner, "a-key-with-a-rather-long-name-for-a-phone-screen")
    KeyUsage.objects.create(
        access_key=key, hour=timezone.now().replace(minute=0, second=0, microsecond=0), requests=3
    )
    owner.user.set_password(test_browser.PASSWORD)
    owner.user.save()
    page = open_page(viewport=test_browser.PHONE, is_mobile=True)
    sign_in(page, live_server.url, owner.user.email)
    expect(page.get_by_role("heading", name="Access keys")).to_be_visible()
    base = f"{live_server.url}/orgs/{owner.org.slug}"
    for path, heading in [
        (f"/keys/{key.pk}/", "Activity, last 30 days"),
        ("/usage/", "Usage"),
        ("/buckets/", "Buckets"),
        ("/credential-report/", "Credential report"),
    ]:
        page.goto(base + path)
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        test_browser.assert_fits_phone(page)

    # Asked for with htmx, the report's entry appears queued in place; no worker runs here.
    page.get_by_role("button", name="Generate a new report").click()
    expect(page.locator("#report-list [data-status=pending]")).to_contain_text("0 of 1 keys")
    assert page.url == base + "/credential-report/"
