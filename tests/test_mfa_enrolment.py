"""Setting up, listing and removing second factors on the Security page."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from mfa.models import RecoveryCode, TotpDevice
from mfa.services import has_factor

from .conftest import PASSWORD, audit_mark, client_for, events_since
from .mfa_support import age_reauth, codes_on, enrol_totp, secret_on, totp_code

SETUP = "/accounts/security/totp/"
SECURITY = "/accounts/security/"


def test_it_shows_empty_states_and_no_inline_script(owner):
    page = client_for(owner).get(SECURITY)
    assert page.status_code == 200
    body = page.content.decode()
    assert "No authenticator app yet" in body and "No passkey yet" in body
    assert "<script>" not in body and " style=" not in body and " onclick=" not in body


def test_it_sends_strangers_to_sign_in(db, client):
    assert client.get(SECURITY)["Location"].startswith("/accounts/login/")
    assert client.get(SETUP)["Location"].startswith("/accounts/login/")


def test_it_turns_the_app_on_only_with_a_valid_code(owner):
    client = client_for(owner)
    page = client.get(SETUP)
    body = page.content.decode()
    assert "no-store" in page["Cache-Control"]
    assert "<svg" in body and " style=" not in body
    secret = secret_on(body)

    mark = audit_mark()
    wrong = "000000" if totp_code(secret) != "000000" else "111111"
    refused = client.post(SETUP, {"code": wrong, "name": "phone"})
    assert refused.status_code == 400
    assert "not right" in refused.content.decode()
    assert not has_factor(owner.user)
    assert [e.action for e in events_since(mark)] == []

    # The page again shows the same secret: the app the user scanned keeps working.
    assert secret_on(client.get(SETUP).content.decode()) == secret
    done = client.post(SETUP, {"code": totp_code(secret), "name": "phone"})
    assert done.status_code == 200
    assert "no-store" in done["Cache-Control"]
    codes = codes_on(done.content.decode())
    assert len(codes) == 10 and len(set(codes)) == 10
    assert has_factor(owner.user)
    device = TotpDevice.objects.get(user=owner.user)
    assert device.confirmed and device.name == "phone"
    events = events_since(mark)
    assert [(e.action, e.details.get("kind")) for e in events] == [
        ("user.mfa_enrolled", "totp"),
        ("user.mfa_enrolled", "recovery"),
    ]
    assert events[0].details["name"] == "phone" and events[0].org_id is None


def test_it_lists_the_factors_and_recovery_codes_left(owner):
    client = client_for(owner)
    enrol_totp(client, "work phone")
    body = client.get(SECURITY).content.decode()
    assert "work phone" in body and "10 of 10 unused" in body


def test_it_regenerates_recovery_codes_and_the_old_ones_stop_working(owner):
    client = client_for(owner)
    _, old = enrol_totp(client)
    assert client.get("/accounts/security/recovery-codes/").status_code == 405
    mark = audit_mark()
    response = client.post("/accounts/security/recovery-codes/")
    assert response.status_code == 200
    new = codes_on(response.content.decode())
    assert len(new) == 10 and not set(new) & set(old)
    assert RecoveryCode.objects.filter(device__user=owner.user).count() == 10
    [event] = events_since(mark)
    assert event.action == "user.recovery_codes_regenerated"
    assert event.details["codes"] == 10


def test_it_refuses_recovery_codes_without_a_factor(owner):
    response = client_for(owner).post("/accounts/security/recovery-codes/")
    assert response.status_code == 302
    assert not RecoveryCode.objects.exists()


def test_it_removes_a_factor_after_a_fresh_sign_in(owner):
    client = client_for(owner)
    enrol_totp(client)
    device = TotpDevice.objects.get(user=owner.user)
    url = f"/accounts/security/totp/{device.pk}/remove/"
    age_reauth(client)
    response = client.post(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/confirm/?next=")
    assert TotpDevice.objects.filter(pk=device.pk).exists()

    confirmed = client.post(
        response["Location"], {"method": "password", "password": PASSWORD, "next": url}
    )
    assert confirmed["Location"] == url
    assert client.get(url).status_code == 200
    mark = audit_mark()
    assert client.post(url).status_code == 302
    assert not has_factor(owner.user)
    # With the last factor go the recovery codes.
    assert not RecoveryCode.objects.filter(device__user=owner.user).exists()
    actions = [(e.action, e.details.get("kind")) for e in events_since(mark)]
    assert actions == [("user.mfa_removed", "totp"), ("user.mfa_removed", "recovery")]


@pytest.mark.parametrize("kind", ["totp", "passkey", "recovery", "nonsense"])
def test_it_is_404_for_someone_elses_or_unknown_factor(owner, member, kind):
    enrol_totp(client_for(owner))
    device = TotpDevice.objects.get(user=owner.user)
    response = client_for(member).get(f"/accounts/security/{kind}/{device.pk}/remove/")
    assert response.status_code == 404


def test_it_keeps_the_last_factor_while_an_org_requires_two_factor(owner):
    client = client_for(owner)
    enrol_totp(client)
    owner.org.require_two_factor = True
    owner.org.save()
    device = TotpDevice.objects.get(user=owner.user)
    mark = audit_mark()
    response = client.post(f"/accounts/security/totp/{device.pk}/remove/", follow=True)
    assert "requires two-factor sign-in" in response.content.decode()
    assert TotpDevice.objects.filter(pk=device.pk).exists()
    assert AuditEvent.objects.filter(pk__gt=mark, action="user.mfa_removed").count() == 0


def test_it_refuses_a_passkey_the_browser_did_not_really_make(owner):
    client = client_for(owner)
    assert client.get(SECURITY).status_code == 200  # Issues the challenge.
    mark = audit_mark()
    response = client.post(
        "/accounts/security/passkeys/", {"name": "laptop", "credential": '{"id": "forged"}'}
    )
    assert response.status_code == 302
    assert "could not be verified" in client.get(response["Location"]).text
    assert not has_factor(owner.user)
    assert events_since(mark) == []
    assert client.get("/accounts/security/passkeys/").status_code == 405
