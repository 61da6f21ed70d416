"""Attacks on sign-in that need more than one step: a borrowed session adding its own
second factor, spellings of an address that the database folds together, guessing the
password through the password change form, inviting an owner from a stale session, and a
passkey registered twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import ApiToken, Invitation, Organization
from mfa import services
from mfa.models import THROTTLE_MAX_FAILURES, Passkey, TotpDevice
from mfa.passkeys import PasskeyError

from .conftest import PASSWORD, client_for, make_user
from .mfa_support import age_reauth, enrol_totp, secret_on, sign_in_with_password, totp_code
from .test_mfa_passkeys import add_passkey

NEW_PASSWORD = "Zx9!long-enough-pw"


def sent_to_confirm(response, *, factor: bool = False) -> bool:
    location = response.get("Location", "")
    return (
        response.status_code == 302
        and location.startswith("/accounts/confirm/")
        and (not factor or "factor=required" in location)
    )


def test_a_stale_session_cannot_add_an_authenticator_without_a_fresh_password(owner):
    client = client_for(owner)
    age_reauth(client)
    assert sent_to_confirm(client.get("/accounts/security/totp/"))
    assert sent_to_confirm(client.post("/accounts/security/totp/", {"code": "123456"}))
    assert sent_to_confirm(client.post("/accounts/security/passkeys/", {"credential": "{}"}))
    assert not TotpDevice.objects.filter(user=owner.user).exists()


def test_adding_a_factor_does_not_open_the_reauthentication_window(owner):
    client = client_for(owner)
    enrol_totp(client)
    age_reauth(client)
    # A second app is a new factor: the window stays closed until the person confirms.
    assert sent_to_confirm(client.get("/accounts/security/totp/"))
    assert sent_to_confirm(client.post("/orgs/acme/tokens/", {"name": "cli", "expires_in": ""}))
    assert not ApiToken.objects.filter(name="cli").exists()


def test_a_session_signed_in_without_the_factor_cannot_add_its_own(owner):
    # Signed in with the password alone, before the owner set up an app elsewhere.
    stale = Client()
    assert sign_in_with_password(stale, "owner@acme.test", PASSWORD).status_code == 302
    elsewhere = client_for(owner)
    enrol_totp(elsewhere, "owner's phone")
    Organization.objects.filter(slug="acme").update(require_two_factor=True)
    assert sent_to_confirm(stale.get("/orgs/acme/keys/"), factor=True)

    page = stale.get("/accounts/security/totp/")
    assert sent_to_confirm(page, factor=True)
    assert sent_to_confirm(
        stale.post("/accounts/security/totp/", {"code": "123456", "name": "attacker"}),
        factor=True,
    )
    assert sent_to_confirm(stale.post("/accounts/security/passkeys/", {}), factor=True)
    assert list(
        TotpDevice.objects.filter(user=owner.user, confirmed=True).values_list("name", flat=True)
    ) == ["owner's phone"]
    assert sent_to_confirm(stale.get("/orgs/acme/keys/"), factor=True)


def test_a_session_that_used_its_factor_adds_another(owner):
    client = client_for(owner)
    enrol_totp(client, "phone")
    # Enrolment used the new app, so the session counts as having used a second factor.
    page = client.get("/accounts/security/totp/")
    assert page.status_code == 200
    secret = secret_on(page.content.decode())
    done = client.post("/accounts/security/totp/", {"code": totp_code(secret), "name": "tablet"})
    assert done.status_code in (200, 302)
    assert TotpDevice.objects.filter(user=owner.user, confirmed=True).count() == 2


@pytest.mark.parametrize(
    "spelling",
    [
        "\u017fis@acme.test",  # LATIN SMALL LETTER LONG S
        "s\u0131s@acme.test",  # LATIN SMALL LETTER DOTLESS I
        "sis@acme.te\u017ft",
        " SIS@ACME.TEST ",
    ],
)
def test_other_spellings_of_a_locked_address_do_not_sign_in(db, settings, spelling):
    make_user("sis@acme.test")
    locker = Client(REMOTE_ADDR="198.51.100.1")
    for _ in range(settings.EXCLOUD_LOGIN_FAILURE_LIMIT):
        locker.post("/accounts/login/", {"username": "sis@acme.test", "password": "wrong"})
    assert (
        locker.post(
            "/accounts/login/", {"username": "sis@acme.test", "password": PASSWORD}
        ).status_code
        == 429
    )

    other = Client(REMOTE_ADDR="198.51.100.2")
    response = other.post("/accounts/login/", {"username": spelling, "password": PASSWORD})
    assert response.status_code in (200, 429)
    assert "_auth_user_id" not in other.session


def test_an_ascii_spelling_still_signs_in(owner):
    client = Client()
    response = client.post(
        "/accounts/login/", {"username": " Owner@ACME.test", "password": PASSWORD}
    )
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(owner.user.pk)


def test_the_password_change_form_counts_wrong_passwords_as_the_lockout_does(owner, settings):
    client = client_for(owner)
    change = {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    for _ in range(settings.EXCLOUD_LOGIN_FAILURE_LIMIT):
        client.post("/accounts/password_change/", {"old_password": "guess", **change})
    response = client.post("/accounts/password_change/", {"old_password": PASSWORD, **change})
    assert response.status_code != 302
    owner.user.refresh_from_db()
    assert owner.user.check_password(PASSWORD)


def test_the_password_change_form_takes_the_right_password(owner):
    client = client_for(owner)
    change = {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}
    response = client.post("/accounts/password_change/", {"old_password": PASSWORD, **change})
    assert response.status_code == 302
    owner.user.refresh_from_db()
    assert owner.user.check_password(NEW_PASSWORD)


def test_a_stale_session_cannot_invite_or_remove(owner, member):
    client = client_for(owner)
    age_reauth(client)
    invite = client.post(
        "/orgs/acme/members/invite/", {"email": "attacker@evil.test", "role": "owner"}
    )
    assert sent_to_confirm(invite)
    assert not Invitation.objects.filter(email="attacker@evil.test").exists()
    remove = client.post(f"/orgs/acme/members/{member.user_id}/remove/")
    assert sent_to_confirm(remove)
    assert member.user.memberships.filter(org__slug="acme").exists()


def test_a_passkey_is_registered_once(owner, member, rf):
    authenticator, _ = add_passkey(client_for(owner))
    stored = Passkey.objects.get(user=owner.user)
    request = rf.post("/accounts/security/passkeys/")
    request.session = {}
    with pytest.raises(PasskeyError):
        services.add_passkey(
            request,
            member.user,
            "copied",
            credential_id=authenticator.id,
            public_key=stored.public_key,
            sign_count=0,
            transports=[],
        )
    assert Passkey.objects.filter(credential_id=authenticator.id).count() == 1


def test_wrong_codes_cannot_lock_the_owner_out_for_longer_than_the_cap(owner, settings):
    client = client_for(owner)
    secret, _ = enrol_totp(client)
    device = TotpDevice.objects.get(user=owner.user, confirmed=True)
    # Someone who knows the password has failed a hundred times over the last days.
    for _ in range(100):
        device.throttle_increment(commit=False)
        device.throttling_failure_timestamp -= timedelta(days=1)
    device.save()
    assert device.throttling_failure_count == THROTTLE_MAX_FAILURES
    longest = settings.OTP_TOTP_THROTTLE_FACTOR * 2 ** (THROTTLE_MAX_FAILURES - 1)
    device.throttling_failure_timestamp = timezone.now() - timedelta(seconds=longest + 1)
    device.save()

    allowed, _ = device.verify_is_allowed()
    assert allowed
    assert device.verify_token(totp_code(secret, 1))
