"""Bucket CORS in a real browser: a page served from another origin uploads and downloads
through presigned URLs with fetch(), in Debian's Chromium driven by Playwright.

The page comes from a local http.server on its own port; the gateway listens on another
port of 127.0.0.1, which makes it another origin to Chromium. The bucket's CORS
configuration is set with ``aws s3api put-bucket-cors``, as a person would set it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page

from tests.browser_support import ARTIFACTS, TIMEOUT_MS, static_site
from tests.conftest import new_key
from tests.gateway_stack import free_port, gateway
from tests.test_gateway_e2e import _aws, bucket_name, s3_client

# Playwright's sync API keeps an asyncio event loop on this thread; without this Django
# refuses ORM calls from it, such as creating a key or the flush between tests.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

KEY = "notes/hello.txt"
# A Content-Type outside the CORS-safelisted ones makes the PUT non-simple: Chromium asks
# the gateway first, and a refused preflight means the PUT itself is never sent. It is
# signed into the presigned URL, so the browser must send exactly this.
CONTENT_TYPE = "application/octet-stream"
BLOCKED = "TypeError: Failed to fetch"
PAGE = """<!doctype html>
<html lang="en">
<title>Uploader</title>
<link rel="icon" href="data:,">
<script>
  async function upload(url, body, contentType) {
    try {
      const answer = await fetch(url, {
        method: "PUT", body, headers: {"Content-Type": contentType},
      });
      return {status: answer.status, etag: answer.headers.get("ETag")};
    } catch (error) {
      return {error: `${error.name}: ${error.message}`};
    }
  }
  async function download(url) {
    try {
      const answer = await fetch(url);
      return {status: answer.status, body: await answer.text()};
    } catch (error) {
      return {error: `${error.name}: ${error.message}`};
    }
  }
</script>
<h1>Uploader</h1>
</html>
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory, store):
    with gateway(tmp_path_factory.mktemp("gw"), store) as running:
        yield running


@pytest.fixture(scope="module")
def page_origin(tmp_path_factory) -> Iterator[str]:
    """The origin of the uploader page: a site of its own."""
    root = tmp_path_factory.mktemp("site")
    (root / "index.html").write_text(PAGE)
    with static_site(root) as origin:
        yield origin


@pytest.fixture
def uploader(
    browser: Browser, page_origin: str, request: pytest.FixtureRequest
) -> Iterator[Callable[[], Page]]:
    """Open the uploader page in a fresh browser context (no preflight cache shared with
    another); the console of every page is saved if the test fails: Chromium says there
    why it blocked a request."""
    contexts: list[BrowserContext] = []
    consoles: list[list[str]] = []

    def open_uploader() -> Page:
        context = browser.new_context()
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        console: list[str] = []
        consoles.append(console)
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.goto(f"{page_origin}/")
        assert page.title() == "Uploader"
        return page

    yield open_uploader

    failed = any(
        getattr(request.node, f"report_{when}", None) is not None
        and getattr(request.node, f"report_{when}").failed
        for when in ("setup", "call")
    )
    if failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        for c, console in enumerate(consoles):
            Path(ARTIFACTS / f"{name}-{c}-console.txt").write_text("\n".join(console) + "\n")
    for context in contexts:
        context.close()


def _put_cors(tmp_path: Path, gw, key_id: str, secret: str, bucket: str, origin: str) -> None:
    rule = {
        "AllowedHeaders": ["*"],
        "AllowedMethods": ["GET", "PUT"],
        "AllowedOrigins": [origin],
        "ExposeHeaders": ["ETag"],
    }
    _aws(
        tmp_path,
        gw.url,
        key_id,
        secret,
        "s3api",
        "put-bucket-cors",
        "--bucket",
        bucket,
        "--cors-configuration",
        json.dumps({"CORSRules": [rule]}),
    )


def _presigned(s3, bucket: str, expires: int) -> tuple[str, str]:
    """A presigned PUT (with CONTENT_TYPE signed in) and GET of KEY. ``expires`` differs
    between calls so no URL repeats (Chromium caches preflights by URL)."""
    put_url = s3.generate_presigned_url(
        "put_object",
        Params={"Bucket": bucket, "Key": KEY, "ContentType": CONTENT_TYPE},
        ExpiresIn=expires,
    )
    get_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": KEY}, ExpiresIn=expires
    )
    return put_url, get_url


def _upload(page: Page, url: str, body: str) -> dict:
    return page.evaluate(
        "([url, body, contentType]) => upload(url, body, contentType)", [url, body, CONTENT_TYPE]
    )


def _download(page: Page, url: str) -> dict:
    return page.evaluate("(url) => download(url)", url)


def test_it_lets_an_allowed_origin_upload_and_download_and_blocks_it_once_not_allowed(
    gw, store, owner, uploader, page_origin, tmp_path
):
    key, secret = new_key(owner)
    s3 = s3_client(gw.url, key.id, secret)
    bucket = bucket_name()
    s3.create_bucket(Bucket=bucket)
    _put_cors(tmp_path, gw, key.id, secret, bucket, page_origin)
    stored = store.root / bucket / KEY

    page = uploader()
    put_url, get_url = _presigned(s3, bucket, 300)
    body = "hello from another origin"
    uploaded = _upload(page, put_url, body)
    assert uploaded == {
        "status": 200,
        "etag": f'"{hashlib.md5(body.encode()).hexdigest()}"',
    }, uploaded
    assert stored.read_bytes() == body.encode()
    assert s3.head_object(Bucket=bucket, Key=KEY)["ContentType"] == CONTENT_TYPE
    downloaded = _download(page, get_url)
    assert downloaded == {"status": 200, "body": body}, downloaded

    # The rule now names another origin: nothing allows the page's any more.
    _put_cors(tmp_path, gw, key.id, secret, bucket, f"http://127.0.0.1:{free_port()}")
    page = uploader()
    put_url, get_url = _presigned(s3, bucket, 301)
    assert _upload(page, put_url, "overwritten by a page not allowed") == {"error": BLOCKED}
    assert stored.read_bytes() == body.encode()
    assert _download(page, get_url) == {"error": BLOCKED}


def test_it_blocks_a_page_from_a_bucket_without_a_cors_configuration(
    gw, store, owner, uploader, tmp_path
):
    key, secret = new_key(owner)
    s3 = s3_client(gw.url, key.id, secret)
    bucket = bucket_name()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=KEY, Body=b"private notes")

    page = uploader()
    put_url, get_url = _presigned(s3, bucket, 302)
    assert _upload(page, put_url, "overwritten by any page") == {"error": BLOCKED}
    assert (store.root / bucket / KEY).read_bytes() == b"private notes"
    assert _download(page, get_url) == {"error": BLOCKED}
