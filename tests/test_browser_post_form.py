"""Browser uploads in a real browser: a page served from another origin posts a file to a
bucket with a plain HTML form built from a POST policy, in Debian's Chromium driven by
Playwright.

The page comes from a local http.server on its own port; the gateway listens on another
port of 127.0.0.1, which makes it another origin. A form post is a navigation, not a
fetch, so no CORS configuration is involved: the browser follows the gateway's 303 back
to the page's origin.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.browser_support import ARTIFACTS, TIMEOUT_MS, static_site
from tests.conftest import new_key
from tests.gateway_stack import gateway
from tests.test_gateway_e2e import bucket_name, s3_client

# Playwright's sync API keeps an asyncio event loop on this thread; without this Django
# refuses ORM calls from it, such as creating a key or the flush between tests.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MAX_BYTES = 64 * 1024
FORM_PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>Upload</title>
<link rel="icon" href="data:,">
<h1>Upload</h1>
<form method="post" enctype="multipart/form-data" action="{action}">
{hidden}
  <input type="file" name="file">
  <button type="submit">Upload</button>
</form>
</html>
"""
DONE_PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>Uploaded</title>
<link rel="icon" href="data:,">
<h1>Uploaded</h1>
</html>
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory, store):
    with gateway(tmp_path_factory.mktemp("gw"), store) as running:
        yield running


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[tuple[str, Path]]:
    """The origin of the upload pages (a site of its own) and the directory it serves,
    with done.html in it."""
    root = tmp_path_factory.mktemp("site")
    (root / "done.html").write_text(DONE_PAGE)
    with static_site(root) as origin:
        yield origin, root


@pytest.fixture
def open_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[[str], Page]]:
    """Open a URL in a fresh browser context; a screenshot and the console of every page
    are saved if the test fails."""
    contexts: list[BrowserContext] = []
    pages: list[tuple[Page, list[str]]] = []

    def open_url(url: str) -> Page:
        context = browser.new_context()
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        pages.append((page, console))
        page.goto(url)
        return page

    yield open_url

    failed = any(
        getattr(request.node, f"report_{when}", None) is not None
        and getattr(request.node, f"report_{when}").failed
        for when in ("setup", "call")
    )
    if failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        for p, (page, console) in enumerate(pages):
            page.screenshot(path=str(ARTIFACTS / f"{name}-{p}.png"), full_page=True)
            (ARTIFACTS / f"{name}-{p}-console.txt").write_text("\n".join(console) + "\n")
    for context in contexts:
        context.close()


def _form_page(root: Path, post: dict) -> str:
    """Write a page with an upload form for ``post`` (from generate_presigned_post);
    its path on the site."""
    hidden = "\n".join(
        f'  <input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in post["fields"].items()
    )
    name = f"form-{uuid.uuid4().hex}.html"
    (root / name).write_text(FORM_PAGE.format(action=html.escape(post["url"]), hidden=hidden))
    return f"/{name}"


def _upload(page: Page, filename: str, data: bytes) -> None:
    page.set_input_files(
        "input[name=file]",
        files=[{"name": filename, "mimeType": "application/octet-stream", "buffer": data}],
    )
    page.click("button[type=submit]")


def _redirecting_post(gw, owner, origin: str):
    """A bucket of the owner's org and a POST policy for uploads/ in it that sends the
    browser back to the page's origin: (client, bucket, presigned post, done page URL)."""
    key, secret = new_key(owner)
    s3 = s3_client(gw.url, key.id, secret)
    bucket = bucket_name()
    s3.create_bucket(Bucket=bucket)
    done = f"{origin}/done.html"
    post = s3.generate_presigned_post(
        bucket,
        "uploads/${filename}",
        Fields={"success_action_redirect": done},
        Conditions=[
            {"success_action_redirect": done},
            ["starts-with", "$key", "uploads/"],
            ["content-length-range", 1, MAX_BYTES],
        ],
        ExpiresIn=300,
    )
    return s3, bucket, post, done


def test_it_uploads_a_file_with_a_form_on_another_origin(gw, store, owner, open_page, site):
    origin, root = site
    s3, bucket, post, done = _redirecting_post(gw, owner, origin)
    data = os.urandom(20_000) + "naïve text".encode()
    filename = "holiday photo ü.bin"

    page = open_page(origin + _form_page(root, post))
    _upload(page, filename, data)
    page.wait_for_url(f"{done}?**")

    assert page.title() == "Uploaded"
    landed = urlsplit(page.url)
    etag = f'"{hashlib.md5(data).hexdigest()}"'
    object_key = f"uploads/{filename}"
    assert f"{landed.scheme}://{landed.netloc}{landed.path}" == done
    assert parse_qs(landed.query) == {"bucket": [bucket], "key": [object_key], "etag": [etag]}
    assert (store.root / bucket / object_key).read_bytes() == data
    stored = s3.get_object(Bucket=bucket, Key=object_key)
    assert stored["Body"].read() == data
    assert stored["ETag"] == etag


def test_it_shows_s3s_error_for_a_file_over_the_limit_and_stores_nothing(
    gw, store, owner, open_page, site
):
    origin, root = site
    _, bucket, post, _ = _redirecting_post(gw, owner, origin)

    page = open_page(origin + _form_page(root, post))
    with page.expect_navigation():
        _upload(page, "too big.bin", os.urandom(MAX_BYTES + 1))

    assert page.url == post["url"]
    assert "EntityTooLarge" in page.content()
    assert not (store.root / bucket / "uploads").exists()
