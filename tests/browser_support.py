"""What the browser tests share: Debian's Chromium under Playwright, watched for
Content-Security-Policy violations, and a static site of a page's own, served from another
origin than the portal and the gateway."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, sync_playwright

from tests.gateway_stack import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
TIMEOUT_MS = 10_000


# Runs in every page before its own scripts (Playwright's init scripts are not subject to
# the page's policy): each violation goes to the test at once through a binding, and is
# kept on the page too, read back before its context closes in case the binding's message
# is still on its way.
CSP_WATCH_SCRIPT = """
(() => {
  const seen = (window.__cspViolations = []);
  document.addEventListener("securitypolicyviolation", (event) => {
    const what = event.blockedURI || "inline";
    const sample = event.sample ? ` (${event.sample})` : "";
    const entry = `${event.effectiveDirective} refused ${what} on ${event.documentURI}${sample}`;
    seen.push(entry);
    if (window.__cspViolation) window.__cspViolation(entry);
  }, true);
})();
"""


class CspWatch:
    """Opens browser contexts like a Browser and records every Content-Security-Policy
    violation in their pages: the ``securitypolicyviolation`` events, and Chromium's
    console messages about the policy (which it also prints for what never reaches an
    event, such as a refused ``<meta>`` policy)."""

    def __init__(self, browser: Browser) -> None:
        self._browser = browser
        self._contexts: list[BrowserContext] = []
        self.violations: list[str] = []

    def __getattr__(self, name: str):
        return getattr(self._browser, name)

    def new_context(self, **options) -> BrowserContext:
        context = self._browser.new_context(**options)
        context.add_init_script(script=CSP_WATCH_SCRIPT)
        context.expose_binding("__cspViolation", lambda source, entry: self._record(entry))
        context.on("console", self._console)
        close = context.close

        def close_after_reading(**kwargs) -> None:
            self._read_pages(context)
            close(**kwargs)

        # Pages' own records are read while they are still open, whoever closes them.
        context.close = close_after_reading
        self._contexts.append(context)
        return context

    def _record(self, entry: str) -> None:
        if entry not in self.violations:
            self.violations.append(entry)

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self._record(f"console: {message.text}")

    def _read_pages(self, context: BrowserContext) -> None:
        for page in context.pages:
            try:
                entries = page.evaluate("window.__cspViolations || []")
            except Exception:  # noqa: BLE001 - a closed or crashed page has nothing left
                continue
            for entry in entries:
                self._record(entry)

    def close_all(self) -> None:
        for context in self._contexts:
            try:
                context.close()
            except Exception:  # noqa: BLE001 - already closed, by its test or its browser
                pass
        self._contexts.clear()

    def take_violations(self) -> list[str]:
        """The violations so far, forgotten here: for a test that causes them on purpose."""
        taken, self.violations = self.violations, []
        return taken

    def check(self) -> None:
        if self.violations:
            pytest.fail(
                "Content Security Policy violations:\n" + "\n".join(self.violations),
                pytrace=False,
            )


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def browser(chromium: Browser) -> Iterator[CspWatch]:
    """Chromium for one test, which fails at teardown if any page it opened violated its
    Content-Security-Policy."""
    watch = CspWatch(chromium)
    yield watch
    watch.close_all()
    watch.check()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:
        pass


@contextlib.contextmanager
def static_site(root: Path) -> Iterator[str]:
    """Serve ``root`` with http.server on a port of its own; yields the site's origin."""
    server = ThreadingHTTPServer(
        ("127.0.0.1", free_port()), functools.partial(_QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
