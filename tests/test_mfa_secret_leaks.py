"""A TOTP seed and recovery codes exist in plaintext only in the responses that show them:
the enrolment page and the recovery codes page.

Each test enrols an authenticator app through the views, makes new recovery codes, signs
in with a code and with a recovery code, and searches one place the secrets could leak
to. Every search first proves it can see what is stored there.
"""

from __future__ import annotations

import base64
import json

import pytest
from django.contrib.sessions.models import Session
from django.test import Client

from audit.models import AuditEvent
from mfa.models import RecoveryCode, TotpDevice, normalize_recovery_code

from .conftest import PASSWORD
from .mfa_support import codes_on, secret_on, sign_in_with_password, totp_code
from .test_secret_leaks import cache_contents, database_dump, log_output  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def no_throttle(settings) -> None:
    # A wrong code is part of the walk; the right one follows at once.
    settings.OTP_TOTP_THROTTLE_FACTOR = 0


class Enrolled:
    def __init__(self) -> None:
        self.client = Client()
        self.secret = ""
        self.codes: list[str] = []
        self.later: list[tuple[str, object]] = []
        # What the session held after each request: a sign-out empties it.
        self.sessions: list[str] = []

    def snapshot(self) -> None:
        session = Session.objects.filter(session_key=self.client.session.session_key).first()
        if session is not None:
            self.sessions.append(repr(session.get_decoded()))

    def needles(self) -> list[str]:
        raw = base64.b32decode(self.secret)
        found = [self.secret, self.secret.lower(), raw.hex(), base64.b64encode(raw).decode()]
        for code in self.codes:
            found += [code, normalize_recovery_code(code), code.upper()]
        return found

    def assert_absent(self, where: str, text: str | bytes) -> None:
        for needle in self.needles():
            probe = needle.encode() if isinstance(text, bytes) else needle
            assert probe not in text, f"a TOTP seed or recovery code is in {where}"


def enrol_and_sign_in(owner) -> Enrolled:
    shown = Enrolled()
    client = shown.client
    assert sign_in_with_password(client, owner.user.email, PASSWORD).status_code == 302
    shown.secret = secret_on(client.get("/accounts/security/totp/").content.decode())
    shown.snapshot()
    client.post("/accounts/security/totp/", {"code": "not-a-code"})
    shown.snapshot()
    done = client.post("/accounts/security/totp/", {"code": totp_code(shown.secret), "name": "p"})
    shown.snapshot()
    shown.codes += codes_on(done.content.decode())
    again = client.post("/accounts/security/recovery-codes/")
    shown.snapshot()
    shown.codes += codes_on(again.content.decode())

    def fetch(label: str, method: str, path: str, data=None) -> None:
        response = getattr(client, method)(path, data or {})
        shown.later.append((label, response))
        shown.snapshot()

    fetch("security page", "get", "/accounts/security/")
    fetch("sign out", "post", "/accounts/logout/")
    fetch(
        "password step",
        "post",
        "/accounts/login/",
        {"username": owner.user.email, "password": PASSWORD},
    )
    fetch("second step page", "get", "/accounts/login/verify/")
    # A recovery code with its last character changed (to one it does not end in).
    last = "y" if shown.codes[0][-1].lower() == "x" else "x"
    fetch("wrong code", "post", "/accounts/login/verify/", {"code": shown.codes[0][:-1] + last})
    fetch("code", "post", "/accounts/login/verify/", {"code": totp_code(shown.secret, 1)})
    fetch("sign out again", "post", "/accounts/logout/")
    fetch(
        "password again",
        "post",
        "/accounts/login/",
        {"username": owner.user.email, "password": PASSWORD},
    )
    fetch("recovery code", "post", "/accounts/login/verify/", {"code": shown.codes[-1]})
    fetch("security page after", "get", "/accounts/security/")
    fetch("confirm page", "get", "/accounts/confirm/")
    fetch("keys page", "get", "/orgs/acme/keys/")
    return shown


def test_it_shows_the_seed_and_codes_only_on_pages_that_are_not_cached(owner):
    shown = enrol_and_sign_in(owner)
    assert len(shown.codes) == 20
    assert shown.client.session.get("_auth_user_id") == str(owner.user.pk)
    statuses = {label: response.status_code for label, response in shown.later}
    assert statuses["wrong code"] == 400
    assert statuses["code"] == statuses["recovery code"] == 302
    for label, response in shown.later:
        shown.assert_absent(label, response.content)
        shown.assert_absent(f"the headers of {label}", response.serialize_headers())
    shown.assert_absent("the client's cookies", shown.client.cookies.output())


def test_it_keeps_the_seed_and_codes_out_of_the_logs(owner, log_output):  # noqa: F811
    shown = enrol_and_sign_in(owner)
    device = TotpDevice.objects.get(user=owner.user)
    for where, logged in log_output().items():
        if where == "log records":
            # The SQL that stored the device is in the capture: proof that it sees the logs.
            assert 'INSERT INTO "mfa_totpdevice"' in logged
            assert str(device.uid) in logged
        shown.assert_absent(where, logged)


def test_it_keeps_the_seed_and_codes_out_of_sessions_cache_and_audit(owner):
    shown = enrol_and_sign_in(owner)
    sessions = shown.sessions + [repr(s.get_decoded()) for s in Session.objects.all()]
    assert any("mfa_pending_user" in s for s in sessions)
    assert any(str(owner.user.pk) in s for s in sessions)
    for session in sessions:
        shown.assert_absent("a stored session", session)
    shown.assert_absent("the cache", cache_contents())
    events = list(AuditEvent.objects.values())
    assert {"user.mfa_enrolled", "user.recovery_code_used"} <= {e["action"] for e in events}
    for event in events:
        shown.assert_absent(f"the {event['action']} event", json.dumps(event, default=str))


def test_it_stores_the_seed_only_sealed_and_the_codes_only_hashed(owner):
    shown = enrol_and_sign_in(owner)
    dump = database_dump()
    device = TotpDevice.objects.get(user=owner.user)
    assert bytes(device.seed_sealed).hex() in dump
    # The sealed blob really is this seed, so a plaintext copy would have been found.
    assert device.seed() == shown.secret
    hashes = list(RecoveryCode.objects.values_list("code_hash", flat=True))
    assert len(hashes) == 10 and all(h in dump for h in hashes)
    shown.assert_absent("the database dump", dump)
    for needle in shown.needles():
        assert needle.encode().hex() not in dump
