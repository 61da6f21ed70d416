"""Return URLs (``next``) that come from a link's author never reach a page or a redirect
unchecked: not as an ``href``, a form action or a hidden field that a later POST follows,
nor as a ``Location`` header.

Every view that reads a return URL is walked with hostile values, and every page of the
URLconf is fetched with ``?next=`` set to each of them. Which views read one is listed
here by hand and checked against a search of the source, so a new one cannot be missed.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from keys.models import AccessKey, KeyStatus
from tests.conftest import PASSWORD, client_for
from tests.urlconf import every_url

HOSTILE = [
    "javascript:alert(1)",
    " javascript:alert(1)",
    "//evil.example",
    "https:evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "http://evil.example",
    "java\tscript:alert(1)",
]
# What gives a hostile value away once whitespace and control characters are dropped (as
# browsers drop them from URLs), backslashes read as slashes and case is folded.
TELLTALES = ("evil.example", "javascript:", "alert(1)")
# Attributes and headers a browser follows as a URL. Their query string may carry a return
# URL on to another page of the site, which checks it again; the URL itself must stay here.
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "hx-get", "hx-post", "hx-delete"}
URL_HEADERS = {"location", "hx-redirect", "hx-location", "refresh"}

# The views that read a return URL, by the files that read or render one. A file that
# starts reading ``next`` (or a referrer) must be listed here and its views walked below.
RETURN_URL_FILES = {
    "excloud_portal/redirects.py": "safe_next, the check itself",
    "keys/views.py": "key_deactivate, key_reactivate, key_revoke",
    "templates/keys/key_revoke.html": "key_revoke: Cancel link and hidden next",
    "templates/keys/_key_actions.html": "key_deactivate, key_reactivate, key_revoke links",
    "templates/registration/login.html": "login (Django's LoginView checks its own next)",
    "accounts/views.py": "accept_invitation: the sign-in link back to the invitation",
    "accounts/lockout.py": "the lockout page: the sign-in form's hidden next",
    "mfa/views.py": "sign-in's second step, confirm, the Security pages: safe_next",
    "mfa/reauth.py": "confirm_url: a next built from the request's own path",
    "mfa/middleware.py": "the org's two-factor requirement: a next from the request's path",
    "templates/mfa/verify.html": "sign-in's second step: hidden next",
    "templates/mfa/confirm.html": "confirm: hidden next",
    "templates/mfa/security.html": "the Security page: hidden next and links",
    "templates/mfa/totp_setup.html": "authenticator setup: hidden next",
    "templates/mfa/recovery_codes.html": "recovery codes: the link onwards",
}
RETURN_URL_RE = re.compile(
    r"""["']next["']|[?&]next=|name=["']next["']|\{\{\s*next\b|"""
    r"""HTTP_REFERER|\breferr?er\b|redirect_to|return_to|return_url|success_url""",
    re.IGNORECASE,
)
# Where the portal's code lives besides its apps, which are found from INSTALLED_APPS.
SEARCHED = ("templates", "static", "excloud_portal")
IGNORED_DIRS = {"migrations", "__pycache__", "tests"}


def _normal(value: str) -> str:
    return re.sub(r"[\x00-\x20\x7f]+", "", value).replace("\\", "/").lower()


def _carries(value: str) -> bool:
    return any(t in _normal(value) for t in TELLTALES)


def _leads_away(url: str) -> bool:
    """Whether following this URL leaves the site, or runs script, whatever its query."""
    if url.strip() in ("", "#"):
        return False
    where = _normal(url).split("?", 1)[0].split("#", 1)[0]
    return _carries(where) or not url_has_allowed_host_and_scheme(url, {"testserver"})


class _Attributes(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {name: value or "" for name, value in attrs}))


def assert_not_carried(response) -> None:
    """No link, form, hidden return field or redirect of the response leads to a hostile
    URL, and no other attribute or header repeats one."""
    for name, value in response.items():
        bad = _leads_away(value) if name.lower() in URL_HEADERS else _carries(value)
        assert not bad, f"header {name}: {value!r}"
    if "html" not in response.get("Content-Type", ""):
        return
    parser = _Attributes()
    parser.feed(response.content.decode())
    for tag, attrs in parser.found:
        for name, value in attrs.items():
            follows = name in URL_ATTRIBUTES or (name == "value" and attrs.get("name") == "next")
            bad = _leads_away(value) if follows else _carries(value)
            assert not bad, f"<{tag} {name}={value!r}>"


@pytest.fixture
def signed_in(owner) -> Client:
    return client_for(owner)


def test_it_lists_every_file_that_reads_a_return_url():
    base = Path(settings.BASE_DIR)
    apps = [Path(app.path) for app in django_apps.get_app_configs()]
    ours = [
        p
        for p in apps
        if p.is_relative_to(base)
        and not any(part.startswith(".venv") for part in p.relative_to(base).parts)
    ]
    roots = [base / top for top in SEARCHED] + ours
    assert base / "keys" in roots
    found = set()
    for root in roots:
        for path in root.rglob("*"):
            if path.suffix not in (".py", ".html", ".js") or IGNORED_DIRS & set(path.parts):
                continue
            if RETURN_URL_RE.search(path.read_text()):
                found.add(str(path.relative_to(base)))
    assert found == set(RETURN_URL_FILES)


@pytest.mark.parametrize("hostile", HOSTILE)
class TestEveryReturnUrlView:
    def test_it_keeps_it_out_of_the_revoke_page(self, signed_in, key, hostile):
        r = signed_in.get(reverse("key_revoke", args=["acme", key.pk]), {"next": hostile})
        assert r.status_code == 200
        assert b"Cancel" in r.content
        assert_not_carried(r)

    def test_it_keeps_it_out_of_the_revoke_modal(self, signed_in, key, hostile):
        r = signed_in.get(
            reverse("key_revoke", args=["acme", key.pk]), {"next": hostile}, HTTP_HX_REQUEST="true"
        )
        assert r.status_code == 200
        assert b"<form" in r.content
        assert_not_carried(r)

    def test_it_does_not_follow_it_after_a_revoke(self, signed_in, key, hostile):
        r = signed_in.post(
            reverse("key_revoke", args=["acme", key.pk]), {"next": hostile, "reason": "lost"}
        )
        assert r.status_code == 302
        assert r["Location"] == reverse("key_list", args=["acme"])
        assert AccessKey.objects.get(pk=key.pk).status == KeyStatus.REVOKED
        assert_not_carried(r)

    @pytest.mark.parametrize("action", ["key_deactivate", "key_reactivate"])
    def test_it_does_not_follow_it_after_a_status_change(self, signed_in, key, hostile, action):
        if action == "key_reactivate":
            AccessKey.objects.filter(pk=key.pk).update(status=KeyStatus.INACTIVE)
        r = signed_in.post(reverse(action, args=["acme", key.pk]), {"next": hostile})
        assert r.status_code == 302
        assert r["Location"] == reverse("key_list", args=["acme"])
        assert_not_carried(r)

    def test_it_does_not_follow_it_after_a_refused_change(self, signed_in, key, hostile):
        AccessKey.objects.filter(pk=key.pk).update(status=KeyStatus.REVOKED)
        r = signed_in.post(reverse("key_deactivate", args=["acme", key.pk]), {"next": hostile})
        assert r.status_code == 302
        assert r["Location"] == reverse("key_list", args=["acme"])
        assert_not_carried(r)

    def test_it_keeps_it_out_of_the_sign_in_page(self, db, hostile):
        r = Client().get(reverse("login"), {"next": hostile})
        assert r.status_code == 200
        assert_not_carried(r)

    def test_it_does_not_follow_it_after_signing_in(self, owner, hostile):
        r = Client().post(
            reverse("login"), {"username": owner.user.email, "password": PASSWORD, "next": hostile}
        )
        assert r.status_code == 302
        assert r["Location"] == reverse(settings.LOGIN_REDIRECT_URL)
        assert_not_carried(r)

    def test_it_does_not_follow_it_after_a_confirmation(self, signed_in, hostile):
        r = signed_in.post(
            reverse("mfa_confirm"), {"method": "password", "password": PASSWORD, "next": hostile}
        )
        assert r.status_code == 302
        assert_not_carried(r)

    def test_it_keeps_it_out_of_the_lockout_page(self, owner, settings, hostile):
        settings.EXCLOUD_LOGIN_FAILURE_LIMIT = settings.AXES_FAILURE_LIMIT = 1
        wrong = {"username": owner.user.email, "password": "wrong", "next": hostile}
        Client().post(reverse("login"), wrong)
        r = Client().post(reverse("login"), wrong)
        assert r.status_code == 429
        assert_not_carried(r)

    def test_it_does_not_follow_it_after_signing_out(self, signed_in, hostile):
        r = signed_in.post(reverse("logout"), {"next": hostile})
        assert r.status_code == 302
        assert_not_carried(r)


def test_it_still_returns_to_a_page_of_this_site(signed_in, key):
    back = reverse("key_detail", args=["acme", key.pk])
    page = signed_in.get(reverse("key_revoke", args=["acme", key.pk]), {"next": back})
    assert f'href="{back}"' in page.content.decode()
    assert f'name="next" value="{back}"' in page.content.decode()
    r = signed_in.post(reverse("key_deactivate", args=["acme", key.pk]), {"next": back})
    assert r["Location"] == back


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("who", ["signed in", "signed out"])
def test_no_page_of_the_urlconf_carries_it(owner, url_arguments, hostile, who):
    client = client_for(owner) if who == "signed in" else Client()
    urls = every_url(url_arguments)
    assert len(urls) > 20
    for url in urls.values():
        r = client.get(url, {"next": hostile})
        assert r.status_code < 500, url
        assert_not_carried(r)
