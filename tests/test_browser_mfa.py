"""Two-factor sign-in in Chromium: an authenticator app (with JavaScript off, on a phone),
recovery codes, an org that requires a second factor, and a passkey through Chromium's
virtual authenticator."""

from __future__ import annotations

import re
import time

import pytest
from django.contrib.sessions.backends.db import SessionStore
from playwright.sync_api import Page, expect

from accounts.models import Membership, Organization, Role, User
from audit.models import AuditEvent
from mfa.models import Passkey
from mfa.reauth import REAUTH_SESSION_KEY, REAUTH_WINDOW_SECONDS
from tests import test_browser

from .mfa_support import totp_code
from .test_browser import PASSWORD, PHONE, assert_fits_phone, sign_up

pytestmark = pytest.mark.browser

open_page = test_browser.open_page


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def sign_in(page: Page, base_url: str, email: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def enrol_app(page: Page) -> tuple[str, list[str]]:
    """From the Security page: set up the app with the key shown as text, confirm it with
    a code, and read the recovery codes shown once."""
    page.get_by_role("link", name="Set up an authenticator app").click()
    expect(page.locator(".qr svg")).to_be_visible()
    secret = page.locator("#totp-secret").inner_text().strip()
    page.get_by_label("Code from the app").fill(totp_code(secret))
    page.get_by_label("Name").fill("phone")
    page.get_by_role("button", name="Turn on").click()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    codes = page.locator("#recovery-codes").inner_text().split()
    assert len(codes) == 10
    return secret, codes


def test_it_enrols_an_app_and_signs_in_with_a_code_without_javascript(open_page, live_server):
    page = open_page(viewport=PHONE, is_mobile=True, java_script_enabled=False)
    base = live_server.url
    sign_up(page, base, "ada@example.test", "Analytical Engines")
    page.get_by_role("link", name="Security").click()
    expect(page.get_by_text("No authenticator app yet")).to_be_visible()
    # Passkeys need JavaScript: without it the form stays hidden and the page says why.
    expect(page.get_by_role("button", name="Add a passkey")).to_be_hidden()
    expect(page.get_by_text("Adding a passkey needs JavaScript")).to_be_visible()
    assert_fits_phone(page)

    secret, codes = enrol_app(page)
    assert_fits_phone(page)
    expect(page.get_by_role("button", name="Copy")).to_be_hidden()
    page.get_by_role("link", name="I saved them, continue").click()
    expect(page.get_by_text("10 of 10 unused")).to_be_visible()

    sign_out(page)
    sign_in(page, base, "ada@example.test")
    expect(page.get_by_role("heading", name="Two-factor sign-in")).to_be_visible()
    assert_fits_phone(page)
    page.get_by_label("Code").fill(totp_code(secret, 1))
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Access keys")).to_be_visible()

    # A recovery code signs in once.
    sign_out(page)
    sign_in(page, base, "ada@example.test")
    page.get_by_label("Code").fill(codes[0])
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_role("heading", name="Access keys")).to_be_visible()
    expect(page.get_by_text("You used a recovery code; 9 left")).to_be_visible()
    sign_out(page)
    sign_in(page, base, "ada@example.test")
    page.get_by_label("Code").fill(codes[0])
    page.get_by_role("button", name="Verify").click()
    expect(page.get_by_text("That code is not right")).to_be_visible()
    expect(page.get_by_role("heading", name="Two-factor sign-in")).to_be_visible()


def test_an_org_that_requires_two_factor_sends_a_member_to_enrolment(open_page, live_server):
    org = Organization.objects.create(slug="acme", name="Acme", require_two_factor=True)
    user = User.objects.create_user(email="grace@example.test", password=PASSWORD)
    Membership.objects.create(org=org, user=user, role=Role.MEMBER)
    page = open_page()
    sign_in(page, live_server.url, "grace@example.test")
    page.goto(f"{live_server.url}/orgs/acme/members/")
    expect(page).to_have_url(re.compile(r"/accounts/security/\?next=%2Forgs%2Facme%2Fmembers%2F$"))
    expect(page.get_by_text("Acme requires two-factor sign-in").first).to_be_visible()

    enrol_app(page)
    page.get_by_role("link", name="I saved them, continue").click()
    expect(page).to_have_url(f"{live_server.url}/orgs/acme/members/")
    expect(page.get_by_role("heading", name="Members of Acme")).to_be_visible()


def test_it_adds_a_passkey_and_signs_in_with_it(open_page, live_server, settings):
    # WebAuthn refuses an IP address as relying party: the portal is reached as localhost.
    assert live_server.url.startswith("http://localhost:")
    settings.SITE_URL = live_server.url
    page = open_page()
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
            }
        },
    )
    base = live_server.url
    sign_up(page, base, "linus@example.test", "Kernels")
    page.get_by_role("link", name="Security").click()
    page.get_by_label("Passkey name").fill("laptop")
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    page.get_by_role("link", name="I saved them, continue").click()
    expect(page.get_by_text("laptop")).to_be_visible()
    passkey = Passkey.objects.get(user__email="linus@example.test")
    assert passkey.name == "laptop" and passkey.public_key

    sign_out(page)
    sign_in(page, base, "linus@example.test")
    expect(page.get_by_role("heading", name="Two-factor sign-in")).to_be_visible()
    page.get_by_role("button", name="Use a passkey").click()
    expect(page.get_by_role("heading", name="Access keys")).to_be_visible()
    passkey.refresh_from_db()
    assert passkey.last_used_at is not None

    # Ten minutes on, creating a key asks again, and the passkey answers.
    [cookie] = [c for c in page.context.cookies() if c["name"] == "sessionid"]
    session = SessionStore(session_key=cookie["value"])
    session[REAUTH_SESSION_KEY] = int(time.time()) - REAUTH_WINDOW_SECONDS - 1
    session.save()
    page.goto(f"{base}/orgs/kernels/keys/new/")
    expect(page.get_by_role("heading", name="Confirm it’s you")).to_be_visible()
    page.get_by_role("button", name="Confirm with a passkey").click()
    expect(page).to_have_url(f"{base}/orgs/kernels/keys/new/")
    assert AuditEvent.objects.filter(
        action="user.reauthenticated", details__method="passkey"
    ).exists()
