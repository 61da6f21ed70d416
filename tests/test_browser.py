"""The keys page in a real browser: Debian's Chromium driven by Playwright.

These tests walk the way a new user goes: sign up, create a key, copy the secret that is
shown once, deactivate and revoke the key, with JavaScript (htmx swaps, the modal) and
without it (plain forms and a confirmation page), and on a phone-sized screen.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser_support import ARTIFACTS, TIMEOUT_MS

# Playwright's sync API keeps an asyncio event loop on this thread; without this Django
# refuses ORM calls from it, such as the live server's database flush between tests.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = pytest.mark.browser

ACCESS_KEY_ID_RE = re.compile(r"^EXC[A-Z2-7]{17}$")
SECRET_RE = re.compile(r"^[A-Za-z0-9+/]{40}$")
PASSWORD = "violet kettle mountain 83"
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def open_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[..., Page]]:
    """Open a page in a fresh browser context; screenshots of every page if the test fails."""
    contexts: list[BrowserContext] = []

    def open_page(**context_options) -> Page:
        context = browser.new_context(**context_options)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield open_page

    failed = any(
        getattr(request.node, f"report_{when}", None) is not None
        and getattr(request.node, f"report_{when}").failed
        for when in ("setup", "call")
    )
    if failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        for c, context in enumerate(contexts):
            for p, page in enumerate(context.pages):
                stem = ARTIFACTS / f"{name}-{c}-{p}"
                try:
                    page.screenshot(path=f"{stem}.png", full_page=True)
                    Path(f"{stem}.html").write_text(page.content())
                except Exception as e:  # A crashed page must not hide the real failure.
                    print(f"Could not save {stem}: {e}")
    for context in contexts:
        context.close()


def sign_up(page: Page, base_url: str, email: str, org_name: str) -> None:
    page.goto(f"{base_url}/accounts/signup/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Organisation name").fill(org_name)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Access keys")).to_be_visible()


def create_key(page: Page, name: str) -> None:
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_role("button", name="Create key").click()


def read_new_credentials(page: Page) -> tuple[str, str]:
    key_id = page.locator("#new-access-key-id").inner_text().strip()
    secret = page.locator("#new-secret-access-key").inner_text().strip()
    assert ACCESS_KEY_ID_RE.match(key_id), key_id
    assert SECRET_RE.match(secret), secret
    return key_id, secret


def key_row(page: Page, key_id: str):
    return page.get_by_role("row").filter(has_text=key_id)


def mark_document(page: Page) -> None:
    """Tag the current document, so a later check can tell htmx swaps from page loads."""
    page.evaluate("window.__sameDocument = true")


def assert_same_document(page: Page) -> None:
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"


def assert_fits_phone(page: Page) -> None:
    widths = page.evaluate(
        "({scroll: document.documentElement.scrollWidth, inner: window.innerWidth,"
        " body: document.body.scrollWidth})"
    )
    assert widths["inner"] == PHONE["width"], widths
    assert widths["scroll"] <= widths["inner"], f"{page.url} overflows: {widths}"
    assert widths["body"] <= widths["inner"], f"{page.url} overflows: {widths}"


def test_it_walks_a_new_user_through_create_deactivate_and_revoke(open_page, live_server):
    page = open_page()
    sign_up(page, live_server.url, "ada@example.test", "Analytical Engines")
    keys_url = page.url
    assert keys_url == f"{live_server.url}/orgs/analytical-engines/keys/"
    expect(page.get_by_role("status")).to_contain_text("Welcome to Excloud")
    expect(page.get_by_text("No keys yet. Create one above")).to_be_visible()
    assert page.evaluate("typeof htmx") == "object", "htmx did not load"

    mark_document(page)
    create_key(page, "laptop")
    expect(page.get_by_role("heading", name="Key “laptop” is ready")).to_be_visible()
    expect(page.get_by_text("this is the only time it is shown")).to_be_visible()
    key_id, secret = read_new_credentials(page)
    expect(page.locator("#new-secret-access-key")).to_be_visible()
    # The create panel was swapped in place, and the table refreshed on keysChanged.
    assert_same_document(page)
    assert page.url == keys_url
    row = key_row(page, key_id)
    expect(row).to_be_visible()
    expect(row).to_contain_text("laptop")
    expect(row.locator(".badge")).to_have_text("Active")
    expect(page.get_by_text("No keys yet")).to_have_count(0)

    page.reload()
    expect(row).to_be_visible()
    expect(page.get_by_role("button", name="Create key")).to_be_visible()
    expect(page.locator("#new-secret-access-key")).to_have_count(0)
    assert secret not in page.content()

    mark_document(page)
    row.get_by_role("button", name="Deactivate laptop").click()
    expect(row.locator(".badge")).to_have_text("Inactive")
    expect(page.get_by_role("status")).to_contain_text("is deactivated")
    expect(row.get_by_role("button", name="Reactivate laptop")).to_be_visible()

    revoke_link = row.get_by_role("link", name="Revoke laptop")
    dialog = page.get_by_role("dialog")
    revoke_link.click()
    expect(dialog).to_be_visible()
    expect(dialog.get_by_role("heading")).to_have_text("Revoke key “laptop”?")
    expect(dialog).to_contain_text(key_id)
    expect(dialog.get_by_label("Reason (optional)")).to_be_focused()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)

    revoke_link.click()
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)

    revoke_link.click()
    dialog.get_by_label("Reason (optional)").fill("laptop lost")
    dialog.get_by_role("button", name="Revoke “laptop”").click()
    expect(dialog).to_have_count(0)
    expect(row.locator(".badge")).to_have_text("Revoked")
    expect(page.get_by_role("status")).to_contain_text("is revoked")
    expect(row.get_by_role("button")).to_have_count(0)
    expect(row.get_by_role("link", name="Revoke laptop")).to_have_count(0)
    assert_same_document(page)

    page.get_by_role("link", name="Revoked and expired").click()
    expect(page).to_have_url(f"{keys_url}?tab=retired")
    expect(key_row(page, key_id).locator(".badge")).to_have_text("Revoked")
    page.get_by_role("link", name="Active and inactive").click()
    expect(page.get_by_text("No keys yet")).to_be_visible()
    expect(key_row(page, key_id)).to_have_count(0)
    assert secret not in page.content()


def test_it_deactivates_and_revokes_without_javascript(open_page, live_server):
    page = open_page(java_script_enabled=False)
    sign_up(page, live_server.url, "grace@example.test", "Compilers")
    keys_url = f"{live_server.url}/orgs/compilers/keys/"
    assert page.url == keys_url

    create_key(page, "ci-deploy")
    # Without htmx the form posts to its own page, which shows the secret.
    expect(page).to_have_url(f"{live_server.url}/orgs/compilers/keys/new/")
    expect(page.get_by_text("this is the only time it is shown")).to_be_visible()
    key_id, secret = read_new_credentials(page)
    page.get_by_role("link", name="Done").click()
    expect(page).to_have_url(keys_url)
    assert secret not in page.content()

    row = key_row(page, key_id)
    row.get_by_role("button", name="Deactivate ci-deploy").click()
    expect(page).to_have_url(keys_url)
    expect(page.get_by_role("status")).to_contain_text("is deactivated")
    expect(row.locator(".badge")).to_have_text("Inactive")

    row.get_by_role("link", name="Revoke ci-deploy").click()
    expect(page).to_have_url(re.compile(rf"/orgs/compilers/keys/{key_id}/revoke/\?next="))
    expect(page.get_by_role("dialog")).to_have_count(0)
    expect(page.get_by_role("heading", name="Revoke key “ci-deploy”?")).to_be_visible()
    expect(page.locator("main")).to_contain_text(key_id)
    page.get_by_label("Reason (optional)").fill("leaked in a build log")
    page.get_by_role("button", name="Revoke “ci-deploy”").click()

    expect(page).to_have_url(keys_url)
    expect(page.get_by_role("status")).to_contain_text("is revoked")
    expect(key_row(page, key_id)).to_have_count(0)
    page.get_by_role("link", name="Revoked and expired").click()
    expect(key_row(page, key_id).locator(".badge")).to_have_text("Revoked")
    page.get_by_role("link", name=key_id).click()
    expect(page.locator("main")).to_contain_text("leaked in a build log")


def test_it_cancels_the_revoke_confirmation_without_javascript(open_page, live_server):
    page = open_page(java_script_enabled=False)
    sign_up(page, live_server.url, "edsger@example.test", "Semaphores")
    create_key(page, "backup")
    key_id, _ = read_new_credentials(page)
    page.get_by_role("link", name="Done").click()

    key_row(page, key_id).get_by_role("link", name="Revoke backup").click()
    page.get_by_role("link", name="Cancel").click()
    expect(page).to_have_url(f"{live_server.url}/orgs/semaphores/keys/")
    expect(key_row(page, key_id).locator(".badge")).to_have_text("Active")


def test_it_copies_the_new_credentials_to_the_clipboard(open_page, live_server):
    page = open_page()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    sign_up(page, live_server.url, "linus@example.test", "Kernels")
    create_key(page, "rclone")
    key_id, secret = read_new_credentials(page)

    for source_id, expected in (
        ("new-secret-access-key", secret),
        ("new-access-key-id", key_id),
    ):
        # The button's name changes when it is clicked, so find it by the value beside it.
        button = page.locator("dd").filter(has=page.locator(f"#{source_id}")).get_by_role("button")
        expect(button).to_have_text("Copy")
        button.click()
        expect(button).to_have_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()") == expected
        # The label comes back, so the button can be used again.
        expect(button).to_have_text("Copy")


def test_it_fits_a_phone_screen(open_page, live_server):
    page = open_page(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=3)
    page.goto(f"{live_server.url}/accounts/signup/")
    assert_fits_phone(page)
    sign_up(page, live_server.url, "barbara@example.test", "Abstract Data Types")
    assert_fits_phone(page)

    create_key(page, "a-rather-long-key-name-for-the-nightly-offsite-backup-agent")
    key_id, _ = read_new_credentials(page)
    expect(key_row(page, key_id)).to_be_visible()
    assert_fits_phone(page)

    page.reload()
    expect(page.locator(f"#key-{key_id}")).to_be_visible()
    assert_fits_phone(page)

    page.locator(f"#key-{key_id}").get_by_role("link", name=re.compile("^Revoke ")).click()
    expect(page.get_by_role("dialog")).to_be_visible()
    assert_fits_phone(page)
    page.keyboard.press("Escape")

    page.get_by_role("link", name=key_id).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("a-rather-long-key-name")
    assert_fits_phone(page)

    page.get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", name=re.compile("^Members of"))).to_be_visible()
    assert_fits_phone(page)


def test_it_filters_the_audit_log_for_a_rotated_key(open_page, live_server):
    # The action filter once left out access_key.rotated, which the keys page records.
    page = open_page()
    sign_up(page, live_server.url, "ada@example.test", "Analytical Engines")
    create_key(page, "laptop")
    key_id, _ = read_new_credentials(page)
    page.goto(f"{live_server.url}/orgs/analytical-engines/keys/{key_id}/rotate/")
    page.get_by_role("button", name="Rotate key").click()
    expect(page.locator("#new-access-key-id")).to_be_visible()

    audit_url = f"{live_server.url}/orgs/analytical-engines/audit/"
    page.goto(audit_url)
    rows = page.locator("#audit-table tbody tr")
    expect(rows.filter(has_text="access_key.created")).to_have_count(1)
    expect(rows.filter(has_text="access_key.rotated")).to_have_count(1)
    mark_document(page)
    page.get_by_label("Action").select_option("access_key.rotated")
    expect(page).to_have_url(re.compile(r"[?&]action=access_key\.rotated(&|$)"))
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("access_key.rotated")
    expect(rows.first).to_contain_text(key_id)
    assert_same_document(page)
