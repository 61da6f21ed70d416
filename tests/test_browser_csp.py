"""The Content-Security-Policy watch that every browser test runs under
(tests/browser_support.py) catches violations, so a clean browser suite means something;
and the portal's own pages refuse what the policy forbids."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from tests.browser_support import TIMEOUT_MS, CspWatch, static_site

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = pytest.mark.browser

# A page that declares the portal's policy and then breaks it with an inline script, an
# inline style attribute and an inline event handler.
VIOLATING = """<!doctype html>
<html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'self'; script-src 'self'; style-src 'self'">
<title>Violating</title></head>
<body>
<p style="color: red">Inline style</p>
<img src="missing.png" onerror="document.title = 'handler ran'">
<script>document.title = "inline script ran";</script>
</body></html>
"""
CLEAN = """<!doctype html>
<html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'self'">
<title>Clean</title></head><body><p>Nothing inline.</p></body></html>
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[str]:
    root: Path = tmp_path_factory.mktemp("csp-site")
    (root / "violating.html").write_text(VIOLATING)
    (root / "clean.html").write_text(CLEAN)
    (root / "favicon.ico").write_bytes(b"")
    with static_site(root) as origin:
        yield origin


def _open(watch: CspWatch, url: str):
    context = watch.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(url)
    return context, page


def test_it_catches_a_page_that_violates_its_policy(chromium: Browser, site: str):
    watch = CspWatch(chromium)
    context, page = _open(watch, f"{site}/violating.html")
    # The policy held: nothing inline ran.
    assert page.title() == "Violating"
    context.close()
    caught = "\n".join(watch.violations)
    assert "script-src" in caught
    assert "style-src" in caught
    with pytest.raises(pytest.fail.Exception, match="Content Security Policy violations"):
        watch.check()


def test_it_reads_violations_a_page_still_holds_when_its_context_closes(
    chromium: Browser, site: str
):
    watch = CspWatch(chromium)
    context, page = _open(watch, f"{site}/clean.html")
    # Recorded on the page alone, as an event whose binding call had not arrived would be.
    page.evaluate("window.__cspViolations.push('script-src refused inline on a test page')")
    assert watch.violations == []
    context.close()
    assert watch.violations == ["script-src refused inline on a test page"]


def test_it_passes_a_page_that_keeps_to_its_policy(chromium: Browser, site: str):
    watch = CspWatch(chromium)
    context, page = _open(watch, f"{site}/clean.html")
    assert page.title() == "Clean"
    context.close()
    assert watch.violations == []
    watch.check()


def test_the_portal_refuses_an_injected_inline_script(browser, live_server):
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    response = page.goto(f"{live_server.url}/accounts/login/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "document.title = 'injected';";
            document.body.append(script);
        }"""
    )
    page.wait_for_function("window.__cspViolations.length > 0")
    assert page.title() != "injected"
    context.close()
    caught = browser.take_violations()
    assert any("script-src" in entry for entry in caught), caught


def test_the_api_documentation_keeps_to_the_policy(browser, live_server):
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{live_server.url}/api/v1/docs")
    page.locator("#swagger-ui .title").filter(has_text="Excloud API").wait_for()
    page.locator(".opblock").first.wait_for()
