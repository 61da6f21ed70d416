"""A key's scope on the dashboard: chosen in the create form, shown wherever the key is,
narrowed (never widened) from the key's page after a confirmation, audited."""

from __future__ import annotations

import html

import pytest

from audit.models import AuditEvent
from audit.trail import Actor
from keys.models import AccessKey
from keys.scope import READ_ONLY, READ_WRITE, Scope
from keys.services import create_key

from .conftest import audit_mark, client_for, events_since, new_key

CREATE = "/orgs/acme/keys/new/"
LOGS = Scope.build(
    permission=READ_WRITE, buckets=[("logs", "app/"), "backups"], networks=["10.0.0.0/8"]
)


def scope_url(key) -> str:
    return f"/orgs/acme/keys/{key.pk}/scope/"


def text(response) -> str:
    return html.unescape(response.content.decode())


def scoped_key(membership, name: str = "ingest", scope: Scope = LOGS) -> AccessKey:
    return create_key(membership, Actor.for_user(membership.user), name, scope=scope).key


# -- creating --------------------------------------------------------------------------


@pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain"])
def test_the_create_form_sets_the_scope_and_shows_it_with_the_secret(owner, htmx):
    headers = {"HX-Request": "true", "HX-Target": "create-panel"} if htmx else {}
    mark = audit_mark()
    response = client_for(owner).post(
        CREATE,
        {
            "name": "ingest",
            "permission": READ_ONLY,
            "buckets": "logs/app/\r\n\r\n  backups  \r\n",
            "networks": "10.0.0.0/8\r\n2001:db8::/32",
        },
        headers=headers,
    )
    assert response.status_code == 200, text(response)
    key = AccessKey.objects.get(name="ingest")
    expected = Scope.build(
        permission=READ_ONLY,
        buckets=[("logs", "app/"), "backups"],
        networks=["10.0.0.0/8", "2001:db8::/32"],
    )
    assert key.key_scope == expected
    page = text(response)
    assert f'<dd id="new-key-scope">{expected.describe()}</dd>' in page
    # The snippets shown with the secret carry the scope too.
    assert page.count(f"# Scope: {expected.describe()}") == 7
    [event] = [e for e in events_since(mark) if e.action == "access_key.created"]
    assert event.details["scope"] == expected.as_api()


def test_a_name_alone_still_makes_a_key_with_the_default_scope(owner):
    response = client_for(owner).post(CREATE, {"name": "laptop"})
    assert response.status_code == 200
    assert AccessKey.objects.get(name="laptop").scope == {}
    assert "admin on all of the organisation's buckets" in text(response)


@pytest.mark.parametrize(
    "field, data, message",
    [
        ("buckets", {"buckets": "Logs"}, "“Logs” is not a bucket name"),
        ("buckets", {"buckets": "logs\nlogs/a"}, "Name each bucket once."),
        ("networks", {"networks": "10.1.2.3/8"}, "“10.1.2.3/8” is not an IP address or network"),
        ("permission", {"permission": "owner"}, "Choose a permission."),
    ],
)
def test_a_bad_scope_is_refused_at_its_field_and_nothing_typed_is_lost(owner, field, data, message):
    typed = {
        "name": "ingest",
        "permission": READ_ONLY,
        "buckets": "logs/app/",
        "networks": "192.0.2.0/24",
        **data,
    }
    response = client_for(owner).post(CREATE, typed)
    assert response.status_code == 400
    assert not AccessKey.objects.filter(name="ingest").exists()
    page = text(response)
    # The message sits in the field's own block, and the scope section is open.
    block = page[page.index(f'for="id_{field}"') if field != "permission" else 0 :]
    if field == "permission":
        block = page[page.index("<legend>Permission</legend>") :]
    assert message in block[: block.index("</fieldset>" if field == "permission" else "</div>")]
    assert '<details class="scope-fields" open>' in page
    assert 'value="ingest"' in page
    for value in (typed["buckets"], typed["networks"]):
        assert value in page
    if field != "permission":
        assert f'value="{READ_ONLY}"' in page and "checked" in page


def test_an_auditor_cannot_create_a_scoped_key(auditor):
    response = client_for(auditor).post(
        CREATE, {"name": "ingest", "permission": READ_ONLY, "buckets": "logs"}
    )
    assert response.status_code == 403
    assert not AccessKey.objects.exists()


# -- showing ---------------------------------------------------------------------------


def test_the_keys_list_shows_a_badge_and_the_detail_page_the_whole_scope(owner):
    scoped_key(owner)
    plain, _ = new_key(owner, "laptop")
    listing = text(client_for(owner).get("/orgs/acme/keys/"))
    assert "read-write · 2 buckets · IP-limited" in listing
    assert "admin · all buckets" in listing
    key = AccessKey.objects.get(name="ingest")
    detail = text(client_for(owner).get(f"/orgs/acme/keys/{key.pk}/"))
    assert LOGS.describe() in detail
    assert LOGS.describe() == "read-write on backups, logs/app/*, from 10.0.0.0/8"
    assert "<code>logs</code>: objects starting with <code>app/</code>" in detail
    assert "<code>backups</code>: every object" in detail
    assert "<code>10.0.0.0/8</code>" in detail
    assert f"# Scope: {LOGS.describe()}" in detail
    assert scope_url(key) in detail
    plain_detail = text(client_for(owner).get(f"/orgs/acme/keys/{plain.pk}/"))
    assert "All of the organisation's buckets" in plain_detail and "Any address" in plain_detail


def test_only_those_who_may_change_the_key_are_offered_narrowing(owner, member):
    key = scoped_key(owner)
    assert scope_url(key) in text(client_for(owner).get(f"/orgs/acme/keys/{key.pk}/"))
    assert scope_url(key) not in text(client_for(member).get(f"/orgs/acme/keys/{key.pk}/"))


# -- narrowing -------------------------------------------------------------------------


def test_the_narrow_form_starts_from_the_current_scope(owner):
    key = scoped_key(owner)
    page = text(client_for(owner).get(scope_url(key)))
    assert '<input type="radio" name="permission" value="read-write"' in page
    assert 'value="read-write" class="" id="id_permission_1" checked' in page or (
        page.split('value="read-write"')[1].split(">")[0].endswith("checked")
    )
    assert "backups\nlogs/app/</textarea>" in page
    assert "10.0.0.0/8</textarea>" in page


def test_narrowing_asks_first_showing_before_and_after_then_narrows_and_audits(owner):
    key = scoped_key(owner)
    client = client_for(owner)
    new = {"permission": READ_ONLY, "buckets": "logs/app/2026/", "networks": "10.1.0.0/16"}
    mark = audit_mark()

    review = client.post(scope_url(key), new)
    assert review.status_code == 200
    page = text(review)
    narrower = Scope.build(
        permission=READ_ONLY, buckets=[("logs", "app/2026/")], networks=["10.1.0.0/16"]
    )
    assert "Narrow the scope?" in page
    assert page.index(LOGS.describe()) < page.index(narrower.describe())
    assert "read-write · 2 buckets · IP-limited" in page
    assert "read-only · logs/app/2026/* · IP-limited" in page
    key.refresh_from_db()
    assert key.key_scope == LOGS and events_since(mark) == []

    done = client.post(scope_url(key), {**new, "confirm": "1"})
    assert done.status_code == 302 and done["Location"] == f"/orgs/acme/keys/{key.pk}/"
    key.refresh_from_db()
    assert key.key_scope == narrower
    [event] = events_since(mark)
    assert event.action == "access_key.scope_narrowed"
    assert event.details["from"] == LOGS.as_api() and event.details["to"] == narrower.as_api()
    detail = text(client.get(done["Location"]))
    assert f"may now do {narrower.describe()}" in detail
    # The key's history says what each event did to the scope.
    assert f"Scope: from {LOGS.describe()} to {narrower.describe()}</span>" in detail
    assert f"Scope: {LOGS.describe()}</span>" in detail


def test_change_goes_back_to_the_form_with_what_was_typed(owner):
    key = scoped_key(owner)
    page = text(
        client_for(owner).post(
            scope_url(key),
            {"permission": READ_ONLY, "buckets": "logs/app/x", "networks": "", "edit": "1"},
        )
    )
    assert "Narrow the scope?" not in page and "logs/app/x</textarea>" in page
    assert AccessKey.objects.get(pk=key.pk).key_scope == LOGS


@pytest.mark.parametrize("confirm", [False, True], ids=["review", "confirm"])
def test_widening_is_refused_with_the_services_message(owner, confirm):
    key = scoped_key(owner)
    client = client_for(owner)
    mark = audit_mark()
    wider = {"permission": "admin", "buckets": "logs/app/\nbackups", "networks": "10.0.0.0/8"}
    response = client.post(scope_url(key), wider | ({"confirm": "1"} if confirm else {}))
    assert response.status_code == 400
    page = text(response)
    assert "A key's scope can only be narrowed. Key “ingest” may do " + LOGS.describe() in page
    assert "Narrow the scope?" not in page
    assert AccessKey.objects.get(pk=key.pk).key_scope == LOGS and events_since(mark) == []


def test_the_same_scope_is_no_change(owner):
    key = scoped_key(owner)
    response = client_for(owner).post(
        scope_url(key),
        {"permission": READ_WRITE, "buckets": "logs/app/\nbackups", "networks": "10.0.0.0/8"},
    )
    assert response.status_code == 400 and "scope already" in text(response)


def test_a_member_cannot_narrow_an_owners_key_but_may_their_own(owner, member):
    owners = scoped_key(owner)
    client_for(member)
    mark = audit_mark()
    narrower = {"permission": READ_ONLY, "buckets": "backups", "networks": "10.0.0.0/8"}
    assert client_for(member).get(scope_url(owners)).status_code == 403
    refused = client_for(member).post(scope_url(owners), {**narrower, "confirm": "1"})
    assert refused.status_code == 403
    assert AccessKey.objects.get(pk=owners.pk).key_scope == LOGS and events_since(mark) == []

    own = scoped_key(member, "mine")
    done = client_for(member).post(scope_url(own), {**narrower, "confirm": "1"})
    assert done.status_code == 302
    assert AccessKey.objects.get(pk=own.pk).key_scope.buckets[0].name == "backups"


def test_an_auditor_and_another_org_cannot_narrow(owner, auditor, outsider):
    key = scoped_key(owner)
    assert client_for(auditor).get(scope_url(key)).status_code == 403
    assert client_for(outsider).get(scope_url(key)).status_code == 404


def test_a_revoked_key_has_no_narrow_page(owner, owner_client):
    key = scoped_key(owner)
    owner_client.post(f"/orgs/acme/keys/{key.pk}/revoke/", {"reason": ""})
    assert AccessKey.objects.get(pk=key.pk).status == "revoked"
    assert owner_client.get(scope_url(key)).status_code == 404
    assert AuditEvent.objects.filter(action="access_key.scope_narrowed").count() == 0
