"""The credential snippets in Chromium: tabs, downloads built in the page, the profile name,
and no request after the creation response carrying the secret."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, Request, expect

from keys import snippets
from tests import test_browser
from tests.test_browser import create_key, read_new_credentials, sign_up

# The page fixture (screenshots on failure) of the keys page's tests.
open_page = test_browser.open_page

pytestmark = pytest.mark.browser

TAB_KINDS = [(title, names) for _, title, names in snippets.TABS]
PROFILE = "nightly.backup"


def download(page: Page, tmp_path: Path, filename: str) -> str:
    """Click the Download button of this file; returns what the browser saved."""
    with page.expect_download() as info:
        page.get_by_role("button", name=f"Download {filename}").click()
    saved = info.value
    assert saved.suggested_filename == filename
    assert saved.failure() is None
    path = tmp_path / f"{len(list(tmp_path.iterdir()))}-{filename}"
    saved.save_as(path)
    return path.read_text()


def test_it_downloads_every_snippet_without_sending_the_secret_again(
    open_page, live_server, tmp_path
):
    page = open_page(accept_downloads=True)
    requests: list[Request] = []
    # Every page of the context, so the second tab below is recorded too.
    page.context.on("request", lambda request: requests.append(request))
    sign_up(page, live_server.url, "margaret@example.test", "Apollo Guidance")
    create_key(page, "flight")
    expect(page.get_by_role("heading", name="Key “flight” is ready")).to_be_visible()
    key_id, secret = read_new_credentials(page)
    creation = [i for i, r in enumerate(requests) if r.method == "POST" and "/keys/new/" in r.url]
    assert len(creation) == 1

    tabs = page.get_by_role("tablist", name="Configuration for")
    expect(tabs.get_by_role("tab")).to_have_count(len(TAB_KINDS))
    for title, names in TAB_KINDS:
        tab = tabs.get_by_role("tab", name=title, exact=True)
        tab.click()
        expect(tab).to_have_attribute("aria-selected", "true")
        panel = page.get_by_role("tabpanel", name=title, exact=True)
        expect(panel).to_be_visible()
        expect(page.get_by_role("tabpanel")).to_have_count(1)  # the others are hidden
        for name in names:
            expected = snippets.render(name, key_id, secret)
            expect(panel).to_contain_text(re.sub(r"\s+", " ", expected.kind.where).split(",")[0])
            text = download(page, tmp_path, expected.filename)
            assert text == expected.text(), name
            assert key_id in text or name == "aws_config"
            assert secret in text or name == "aws_config"

    # The profile name edits the AWS files in the page, and their downloads.
    page.get_by_role("tab", name="AWS CLI / SDKs").click()
    page.get_by_label("AWS profile name").fill(PROFILE)
    credentials = download(page, tmp_path, "credentials")
    config = download(page, tmp_path, "config")
    assert credentials == snippets.render("aws_credentials", key_id, secret).text(PROFILE)
    assert credentials.startswith(f"[{PROFILE}]\n")
    assert config.startswith(f"[profile {PROFILE}]\n")
    expect(page.get_by_text(f"aws --profile {PROFILE} s3 ls")).to_be_visible()
    page.get_by_label("AWS profile name").fill("no spaces please")
    expect(page.get_by_label("AWS profile name")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#snippet-aws_credentials")).to_contain_text(f"[{PROFILE}]")

    # The tabs work from the keyboard.
    first = tabs.get_by_role("tab").first
    first.focus()
    page.keyboard.press("ArrowRight")
    expect(tabs.get_by_role("tab", name="Environment")).to_be_focused()
    expect(tabs.get_by_role("tab", name="Environment")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("End")
    expect(tabs.get_by_role("tab", name="CSV")).to_be_focused()
    expect(page.get_by_role("tabpanel", name="CSV")).to_be_visible()

    # Reloading shows the key in the list, never the secret.
    page.reload()
    expect(page.get_by_role("row").filter(has_text=key_id)).to_be_visible()
    assert secret not in page.content()

    # The key's page: the same snippets with a placeholder where the secret goes. It opens
    # in a new tab: Chromium holds back an 11th quick download from one tab.
    page = page.context.new_page()
    page.goto(f"{live_server.url}/orgs/apollo-guidance/keys/{key_id}/")
    expect(page.get_by_role("heading", name="Use this key")).to_be_visible()
    expect(page.locator("#snippet-exc-configure")).to_have_text(
        f"exc buckets keys configure {key_id} --profile excloud"
    )
    credentials = download(page, tmp_path, "credentials")
    assert credentials == snippets.render("aws_credentials", key_id).text()
    assert snippets.SECRET_PLACEHOLDER in credentials
    page.get_by_label("AWS profile name").fill(PROFILE)
    expect(page.locator("#snippet-exc-configure")).to_have_text(
        f"exc buckets keys configure {key_id} --profile {PROFILE}"
    )
    assert secret not in page.content()

    later = requests[creation[0] + 1 :]
    # The capture saw the page at work: the list refresh, the reload, the detail page.
    assert any(r.url.endswith("/orgs/apollo-guidance/keys/") for r in later)
    assert any(f"/keys/{key_id}/" in r.url for r in later)
    for request in later:
        assert secret not in request.url, request.url
        assert secret not in str(request.all_headers()), request.url
        assert secret not in (request.post_data or ""), request.url


def test_it_shows_every_snippet_stacked_without_javascript(open_page, live_server):
    page = open_page(java_script_enabled=False)
    sign_up(page, live_server.url, "katherine@example.test", "Trajectories")
    create_key(page, "orbit")
    key_id, secret = read_new_credentials(page)

    expect(page.get_by_role("tablist")).to_have_count(0)
    expect(page.get_by_role("tabpanel")).to_have_count(len(TAB_KINDS))
    for name in (n for _, names in TAB_KINDS for n in names):
        code = page.locator(f"#snippet-{name}")
        expect(code).to_be_visible()
        assert code.text_content() == snippets.render(name, key_id, secret).text()
    expect(page.get_by_role("button", name=re.compile("^Download"))).to_have_count(0)
