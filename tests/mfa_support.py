"""What the two-factor tests share: codes computed from the secret the enrolment page
shows, and enrolment and sign-in through the views."""

from __future__ import annotations

import base64
import html
import re
import time

from django.test import Client
from django_otp.oath import TOTP

from mfa.reauth import REAUTH_SESSION_KEY, REAUTH_WINDOW_SECONDS

SECRET_RE = re.compile(r'<code id="totp-secret">([A-Z2-7]+=*)</code>')
CODES_RE = re.compile(r'<pre class="recovery-codes" id="recovery-codes">([^<]*)</pre>')
STEP = 30


def totp_code(secret: str, steps_ahead: int = 0) -> str:
    """The app's code for now, or for a later time step (a code is accepted once, so each
    use after the first takes the next step's code, which the one-step tolerance allows)."""
    totp = TOTP(base64.b32decode(secret), STEP, 0, 6, 0)
    totp.time = time.time() + steps_ahead * STEP
    return f"{totp.token():06d}"


def secret_on(page: str) -> str:
    return SECRET_RE.search(page).group(1)


def codes_on(page: str) -> list[str]:
    return html.unescape(CODES_RE.search(page).group(1)).split()


def enrol_totp(client: Client, name: str = "phone") -> tuple[str, list[str]]:
    """Set up an authenticator app through the views; returns its secret and the recovery
    codes shown once."""
    page = client.get("/accounts/security/totp/")
    assert page.status_code == 200
    secret = secret_on(page.content.decode())
    done = client.post("/accounts/security/totp/", {"code": totp_code(secret), "name": name})
    assert done.status_code == 200, done.content.decode()
    return secret, codes_on(done.content.decode())


def sign_in_with_password(client: Client, email: str, password: str, next_url: str = ""):
    data = {"username": email, "password": password}
    if next_url:
        data["next"] = next_url
    return client.post("/accounts/login/", data)


def age_reauth(client: Client) -> None:
    """Move the session's last proof of identity back past the re-authentication window."""
    session = client.session
    session[REAUTH_SESSION_KEY] = int(time.time()) - REAUTH_WINDOW_SECONDS - 1
    session.save()
