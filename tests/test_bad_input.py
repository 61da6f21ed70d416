"""Bad input gets a clear message and changes nothing; races have exactly one winner."""

from __future__ import annotations

import html
import re
import secrets
import threading

import pytest
from django.test import Client

from accounts.models import Membership
from audit.models import AuditEvent
from audit.trail import Actor
from keys import credentials, services
from keys.models import AccessKey, KeyStatus

from .concurrency import run_in_threads
from .conftest import audit_mark, events_since, new_key

CREATE_URL = "/orgs/acme/keys/new/"
HTMX = {"HTTP_HX_REQUEST": "true"}
THREAD_TIMEOUT = 20


def text(response) -> str:
    return html.unescape(response.content.decode())


def create(client: Client, name: str, token: str | None = None, **extra):
    token = token or secrets.token_urlsafe(24)
    return client.post(CREATE_URL, {"name": name, "creation_token": token}, **extra)


def key_state(key: AccessKey) -> dict:
    return AccessKey.objects.filter(pk=key.pk).values().get()


# Rows: (submitted name, what the re-rendered form says).
BAD_NAMES = [
    ("laptop", "A live key named “laptop” already exists"),
    ("LAPTOP", "A live key named “LAPTOP” already exists"),
    ("  Laptop  ", "A live key named “Laptop” already exists"),
    ("", "Give the key a name."),
    ("   ", "Give the key a name."),
    ("x" * 65, "Names are at most 64 characters."),
    ("x" * 300, "Ensure this value has at most"),
    ("lap\x00top", "Null characters are not allowed."),
    ("tab\there", "Key names cannot contain control characters"),
    ("new\nline", "Key names cannot contain control characters"),
    ("bell\x07", "Key names cannot contain control characters"),
    ("laptop 💻", "That name has characters we don't allow."),
    ("<script>", "That name has characters we don't allow."),
]


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
@pytest.mark.parametrize(("name", "message"), BAD_NAMES)
def test_it_refuses_bad_key_names(owner, owner_client, name, message, htmx):
    existing, _ = new_key(owner, "laptop")
    before, mark = key_state(existing), audit_mark()
    r = create(owner_client, name, **(HTMX if htmx else {}))
    assert r.status_code == (200 if htmx else 400)
    assert message in text(r)
    # The form comes back, ready for another try, and no secret is shown.
    assert 'name="creation_token"' in r.content.decode()
    assert 'id="new-secret-access-key"' not in r.content.decode()
    assert list(AccessKey.objects.values_list("pk", flat=True)) == [existing.pk]
    assert key_state(existing) == before
    assert events_since(mark) == []


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_it_refuses_an_empty_create_post(owner_client, htmx):
    mark = audit_mark()
    r = owner_client.post(CREATE_URL, **(HTMX if htmx else {}))
    assert r.status_code == (200 if htmx else 400)
    assert "Give the key a name." in text(r)
    assert not AccessKey.objects.exists()
    assert events_since(mark) == []


def test_it_accepts_a_name_at_the_length_limit(owner_client):
    r = create(owner_client, "x" * 64)
    assert r.status_code == 200
    assert AccessKey.objects.get().name == "x" * 64


def test_it_reuses_the_name_of_a_revoked_key(owner, owner_client):
    old, _ = new_key(owner, "laptop")
    services.revoke_key(owner, Actor.for_user(owner.user), old)
    mark = audit_mark()
    r = create(owner_client, "Laptop")
    assert r.status_code == 200
    new = AccessKey.objects.get(status=KeyStatus.ACTIVE)
    assert new.pk != old.pk
    assert new.name == "Laptop"
    assert [(e.action, e.target_id) for e in events_since(mark)] == [("access_key.created", new.pk)]
    # The revoked one keeps its name, and is still revoked.
    old.refresh_from_db()
    assert (old.name, old.status) == ("laptop", KeyStatus.REVOKED)


def test_it_refuses_the_name_of_a_deactivated_key(owner, owner_client):
    old, _ = new_key(owner, "laptop")
    services.deactivate_key(owner, Actor.for_user(owner.user), old)
    mark = audit_mark()
    r = create(owner_client, "laptop")
    assert r.status_code == 400
    assert "already exists" in text(r)
    assert AccessKey.objects.count() == 1
    assert events_since(mark) == []


@pytest.fixture
def csrf_client(owner) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner.user)
    return client


def test_it_refuses_a_create_without_csrf_token(owner, csrf_client):
    mark = audit_mark()
    r = create(csrf_client, "laptop")
    assert r.status_code == 403
    assert "Nothing was changed" in text(r)
    assert not AccessKey.objects.exists()
    assert events_since(mark) == []


@pytest.mark.parametrize("action", ["deactivate", "reactivate", "revoke"])
def test_it_refuses_a_status_change_without_csrf_token(owner, csrf_client, action):
    key, _ = new_key(owner)
    if action == "reactivate":
        services.deactivate_key(owner, Actor.for_user(owner.user), key)
    before, mark = key_state(key), audit_mark()
    r = csrf_client.post(f"/orgs/acme/keys/{key.pk}/{action}/")
    assert r.status_code == 403
    assert key_state(key) == before
    assert events_since(mark) == []


def test_it_accepts_a_create_with_the_csrf_token_of_the_page(csrf_client):
    # The control for the two tests above: the same client with the page's token succeeds.
    page = csrf_client.get("/orgs/acme/keys/").content.decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    token = re.search(r'name="creation_token" value="([^"]+)"', page).group(1)
    r = csrf_client.post(
        CREATE_URL, {"name": "laptop", "creation_token": token, "csrfmiddlewaretoken": csrf}
    )
    assert r.status_code == 200
    assert AccessKey.objects.count() == 1


# How a key ID in the URL can be wrong; each turns a real key's ID into a bad one.
MALFORMED_IDS = {
    "word": lambda key_id: "nope",
    "lowercase-prefix": lambda key_id: "exc" + key_id[3:],
    "lowercase": lambda key_id: key_id.lower(),
    "too-long": lambda key_id: key_id + "A",
    "too-short": lambda key_id: key_id[:-1],
    "not-base32": lambda key_id: key_id[:-1] + "1",
    "dot-dot": lambda key_id: "..",
    "encoded-dot-dot": lambda key_id: "%2E%2E",
    "encoded-traversal": lambda key_id: "..%2F..%2Fglobex",
    "nul": lambda key_id: "EXC%00" + key_id[4:],
    "leading-space": lambda key_id: "%20" + key_id,
}


@pytest.mark.parametrize("make_bad", MALFORMED_IDS.values(), ids=MALFORMED_IDS.keys())
def test_it_answers_404_to_malformed_key_ids(owner, owner_client, make_bad):
    key, _ = new_key(owner)
    before, mark = key_state(key), audit_mark()
    base = f"/orgs/acme/keys/{make_bad(key.pk)}/"
    assert owner_client.get(base).status_code == 404
    assert owner_client.get(base + "revoke/").status_code == 404
    for action in ("deactivate", "reactivate", "revoke"):
        assert owner_client.post(base + f"{action}/").status_code == 404
    assert key_state(key) == before
    assert events_since(mark) == []


def test_it_answers_404_to_another_orgs_key_id(owner_client, outsider):
    theirs, _ = new_key(outsider, "globex-key")
    before, mark = key_state(theirs), audit_mark()
    base = f"/orgs/acme/keys/{theirs.pk}/"
    assert owner_client.get(base).status_code == 404
    assert owner_client.get(base + "revoke/").status_code == 404
    for action in ("deactivate", "reactivate", "revoke"):
        assert owner_client.post(base + f"{action}/").status_code == 404
    # Nor may Acme's owner reach it through Globex's URLs.
    assert owner_client.get(f"/orgs/globex/keys/{theirs.pk}/").status_code == 404
    assert owner_client.post(f"/orgs/globex/keys/{theirs.pk}/revoke/").status_code == 404
    assert key_state(theirs) == before
    assert events_since(mark) == []


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_it_revokes_a_key_once(owner, owner_client, htmx):
    key, _ = new_key(owner)
    mark = audit_mark()
    extra = HTMX if htmx else {}
    # An empty POST revokes: the reason is optional.
    first = owner_client.post(f"/orgs/acme/keys/{key.pk}/revoke/", **extra)
    key.refresh_from_db()
    assert key.status == KeyStatus.REVOKED
    revoked = key_state(key)
    second = owner_client.post(f"/orgs/acme/keys/{key.pk}/revoke/", **extra)
    if htmx:
        assert first.status_code == second.status_code == 200
        said = text(second)
    else:
        assert first.status_code == second.status_code == 302
        said = text(owner_client.get(second["Location"]))
    assert "Key “laptop” is revoked; nothing was changed." in said
    assert key_state(key) == revoked
    assert [e.action for e in events_since(mark)] == ["access_key.revoked"]


@pytest.mark.parametrize(
    ("action", "status", "message"),
    [
        ("deactivate", KeyStatus.INACTIVE, "is inactive; nothing was changed."),
        ("reactivate", KeyStatus.ACTIVE, "is active; nothing was changed."),
        ("deactivate", KeyStatus.REVOKED, "is revoked; nothing was changed."),
        ("reactivate", KeyStatus.REVOKED, "is revoked; nothing was changed."),
    ],
)
def test_it_refuses_a_status_change_from_the_wrong_state(
    owner, owner_client, action, status, message
):
    key, _ = new_key(owner)
    AccessKey.objects.filter(pk=key.pk).update(status=status)
    before, mark = key_state(key), audit_mark()
    r = owner_client.post(f"/orgs/acme/keys/{key.pk}/{action}/")
    assert r.status_code == 302
    assert message in text(owner_client.get(r["Location"]))
    assert key_state(key) == before
    assert events_since(mark) == []


def test_it_does_not_redirect_off_site_after_a_change(owner, owner_client):
    key, _ = new_key(owner)
    r = owner_client.post(
        f"/orgs/acme/keys/{key.pk}/deactivate/", {"next": "https://evil.example/"}
    )
    assert r.status_code == 302
    assert r["Location"] == "/orgs/acme/keys/"


@pytest.mark.django_db(transaction=True)
def test_it_lets_exactly_one_of_two_concurrent_revokes_win(owner, admin):
    key, _ = new_key(owner)
    mark = audit_mark()

    def revoke(barrier: threading.Barrier):
        # Each thread loads its own objects on its own connection.
        membership = Membership.objects.select_related("org", "user").get(pk=owner.pk)
        mine = AccessKey.objects.get(pk=key.pk)
        barrier.wait()
        return services.revoke_key(membership, Actor.for_user(membership.user), mine)

    results = run_in_threads(revoke, timeout=THREAD_TIMEOUT)
    winners = [r for r in results if isinstance(r, AccessKey)]
    losers = [r for r in results if isinstance(r, services.InvalidKeyState)]
    assert (len(winners), len(losers)) == (1, 1), results
    assert "is revoked; nothing was changed" in str(losers[0])
    key.refresh_from_db()
    assert key.status == KeyStatus.REVOKED
    assert [(e.action, e.target_id) for e in events_since(mark)] == [("access_key.revoked", key.pk)]


def test_it_creates_one_key_when_the_same_form_is_submitted_twice(owner_client):
    page = owner_client.get("/orgs/acme/keys/").content.decode()
    token = re.search(r'name="creation_token" value="([^"]+)"', page).group(1)
    mark = audit_mark()
    first = create(owner_client, "laptop", token)
    second = create(owner_client, "laptop", token)
    assert first.status_code == second.status_code == 200
    key = AccessKey.objects.get()
    secret = credentials.unseal(key.secret_kek_id, key.secret_sealed, key.pk)
    assert secret in first.content.decode()
    assert secret not in second.content.decode()
    assert key.pk in second.content.decode()
    assert "This form was already submitted" in second.content.decode()
    assert [(e.action, e.target_id) for e in events_since(mark)] == [("access_key.created", key.pk)]


def test_it_creates_one_key_when_a_resubmission_changes_the_name(owner_client):
    # The token, not the name, says it is the same form: no second key, no secret.
    token = secrets.token_urlsafe(24)
    first = create(owner_client, "laptop", token)
    second = create(owner_client, "desktop", token)
    assert first.status_code == second.status_code == 200
    key = AccessKey.objects.get()
    assert key.name == "laptop"
    assert 'id="new-secret-access-key"' not in second.content.decode()


@pytest.mark.django_db(transaction=True)
def test_it_creates_one_key_from_two_concurrent_submissions(owner, monkeypatch):
    token = secrets.token_urlsafe(24)
    # Hold both requests after their checks and before their inserts, so both reach the
    # insert and the database has to pick the winner.
    at_seal = threading.Barrier(2, timeout=5)
    real_seal = credentials.seal

    def seal_together(secret: str, key_id: str):
        try:
            at_seal.wait()
        except threading.BrokenBarrierError:
            pass
        return real_seal(secret, key_id)

    monkeypatch.setattr(credentials, "seal", seal_together)

    def submit(barrier: threading.Barrier):
        membership = Membership.objects.select_related("org", "user").get(pk=owner.pk)
        barrier.wait()
        return services.create_key(
            membership, Actor.for_user(membership.user), "laptop", creation_token=token
        )

    results = run_in_threads(submit, timeout=THREAD_TIMEOUT)
    assert all(isinstance(r, services.CreatedKey) for r in results), results
    assert not at_seal.broken
    key = AccessKey.objects.get()
    assert {r.key.pk for r in results} == {key.pk}
    assert sorted(r.is_new for r in results) == [False, True]
    winner = next(r for r in results if r.is_new)
    assert credentials.unseal(key.secret_kek_id, key.secret_sealed, key.pk) == winner.secret
    assert AuditEvent.objects.filter(action="access_key.created").count() == 1
