"""A key's scope in a real browser on a phone-sized screen: chosen in the create form,
shown in the list and on the key's page, narrowed after the before-and-after step."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from keys.models import AccessKey
from keys.scope import Scope
from tests.test_browser import (
    PHONE,
    assert_fits_phone,
    key_row,
    open_page,  # noqa: F401 (fixture)
    read_new_credentials,
    sign_up,
)

pytestmark = pytest.mark.browser
# Prefixes are object names: long, and without a space to break a line at.
LONG = "app/2026/" + "nightly-export-" * 8


def test_a_scoped_key_is_made_shown_and_narrowed_on_a_phone(open_page, live_server):  # noqa: F811
    page = open_page(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=3)
    sign_up(page, live_server.url, "carol@example.test", "Scoped Things")

    page.get_by_label("Name", exact=True).fill("ingest")
    page.get_by_text("Scope: what the key may do").click()
    page.get_by_label(re.compile("Read-only")).check()
    page.get_by_label("Buckets", exact=True).fill("logs/app/\nbackups")
    page.get_by_label("Allowed source addresses").fill("10.0.0.0/8\n10.0.0.300")
    assert_fits_phone(page)
    page.get_by_role("button", name="Create key").click()
    # The bad address is refused at its field, with everything typed still there.
    expect(page.get_by_text("“10.0.0.300” is not an IP address or network")).to_be_visible()
    expect(page.get_by_label("Buckets", exact=True)).to_have_value("logs/app/\nbackups")
    expect(page.get_by_label(re.compile("Read-only"))).to_be_checked()
    assert_fits_phone(page)
    page.get_by_label("Allowed source addresses").fill("10.0.0.0/8")
    page.get_by_role("button", name="Create key").click()

    key_id, _ = read_new_credentials(page)
    expect(page.locator("#new-key-scope")).to_have_text(
        "read-only on backups, logs/app/*, from 10.0.0.0/8"
    )
    assert_fits_phone(page)
    page.reload()
    expect(key_row(page, key_id)).to_contain_text("read-only · 2 buckets · IP-limited")
    assert_fits_phone(page)

    page.get_by_role("link", name=key_id).click()
    expect(page.locator("#key-scope")).to_have_text(
        "read-only on backups, logs/app/*, from 10.0.0.0/8"
    )
    page.get_by_role("link", name="Narrow the scope of ingest").click()
    expect(page.get_by_label("Buckets", exact=True)).to_have_value("backups\nlogs/app/")
    assert_fits_phone(page)
    page.get_by_label("Buckets", exact=True).fill(f"logs/{LONG}")
    page.get_by_role("button", name="Review the change").click()
    expect(page.get_by_role("heading", name="Narrow the scope?")).to_be_visible()
    assert_fits_phone(page)
    page.get_by_role("button", name="Narrow the scope").click()

    expect(
        page.get_by_text(f"may now do read-only on logs/{LONG}*, from 10.0.0.0/8")
    ).to_be_visible()
    assert_fits_phone(page)
    assert AccessKey.objects.get(pk=key_id).key_scope == Scope.build(
        permission="read-only", buckets=[("logs", LONG)], networks=["10.0.0.0/8"]
    )
