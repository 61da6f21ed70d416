"""Passkeys without a browser: added with a software authenticator's answer, used to sign
in and to confirm identity, refused when the answer is replayed or another's."""

from __future__ import annotations

from django.test import Client

from audit.models import AuditEvent
from mfa.models import Passkey

from .conftest import PASSWORD, audit_mark, client_for, events_since
from .mfa_support import age_reauth, codes_on, sign_in_with_password
from .webauthn_soft import SoftAuthenticator, options_on


def add_passkey(client: Client, name: str = "laptop") -> tuple[SoftAuthenticator, list[str]]:
    authenticator = SoftAuthenticator()
    options = options_on(client.get("/accounts/security/").text)
    response = client.post(
        "/accounts/security/passkeys/", {"name": name, "credential": authenticator.create(options)}
    )
    assert response.status_code == 200, response
    return authenticator, codes_on(response.text)


def test_it_adds_a_passkey_with_recovery_codes_and_audits_it(owner):
    client = client_for(owner)
    mark = audit_mark()
    authenticator, codes = add_passkey(client)
    assert len(codes) == 10
    passkey = Passkey.objects.get(user=owner.user)
    assert (passkey.name, passkey.credential_id, passkey.transports) == (
        "laptop",
        authenticator.id,
        ["internal"],
    )
    assert [(e.action, e.details["kind"]) for e in events_since(mark)] == [
        ("user.mfa_enrolled", "passkey"),
        ("user.mfa_enrolled", "recovery"),
    ]
    # The same authenticator is not registered twice: the options exclude it.
    assert authenticator.id in options_on(client.get("/accounts/security/").text)


def test_it_signs_in_with_a_passkey_and_refuses_a_replayed_answer(owner):
    authenticator, _ = add_passkey(client_for(owner))
    client = Client()
    sign_in_with_password(client, owner.user.email, PASSWORD, next_url="/orgs/acme/keys/")
    answer = authenticator.get(options_on(client.get("/accounts/login/verify/").text))
    response = client.post(
        "/accounts/login/passkey/", {"credential": answer, "next": "/orgs/acme/keys/"}
    )
    assert response["Location"] == "/orgs/acme/keys/"
    assert client.session["_auth_user_id"] == str(owner.user.pk)
    assert Passkey.objects.get(user=owner.user).sign_count == 1

    replay = Client()
    sign_in_with_password(replay, owner.user.email, PASSWORD)
    replay.get("/accounts/login/verify/")
    refused = replay.post("/accounts/login/passkey/", {"credential": answer})
    assert refused.status_code == 400
    assert "_auth_user_id" not in replay.session


def test_it_refuses_someone_elses_passkey(owner, member):
    theirs, _ = add_passkey(client_for(member))
    add_passkey(client_for(owner))
    client = Client()
    sign_in_with_password(client, owner.user.email, PASSWORD)
    answer = theirs.get(options_on(client.get("/accounts/login/verify/").text))
    assert client.post("/accounts/login/passkey/", {"credential": answer}).status_code == 400
    assert "_auth_user_id" not in client.session


def test_a_passkey_confirms_identity(owner):
    client = client_for(owner)
    authenticator, _ = add_passkey(client)
    age_reauth(client)
    page = client.get("/accounts/confirm/?next=/orgs/acme/tokens/")
    answer = authenticator.get(options_on(page.text))
    response = client.post(
        "/accounts/confirm/passkey/", {"credential": answer, "next": "/orgs/acme/tokens/"}
    )
    assert response["Location"] == "/orgs/acme/tokens/"
    event = AuditEvent.objects.filter(action="user.reauthenticated").get()
    assert event.details["method"] == "passkey"
