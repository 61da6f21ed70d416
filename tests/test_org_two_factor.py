"""An org that requires two-factor sign-in: only owners switch it, only with a second
factor of their own; members without one are sent to enrolment from every org page."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.test import Client

from accounts.models import Organization
from audit.models import AuditEvent

from .conftest import PASSWORD, audit_mark, client_for, events_since, new_key
from .mfa_support import enrol_totp, totp_code

URL = "/orgs/acme/two-factor/"


def require(org: Organization) -> None:
    org.require_two_factor = True
    org.save(update_fields=["require_two_factor"])


def test_it_refuses_an_owner_without_a_second_factor(owner):
    client = client_for(owner)
    mark = audit_mark()
    response = client.post(URL, {"require_two_factor": "on"}, follow=True)
    assert "Set up two-factor sign-in for your own account first" in response.content.decode()
    assert not Organization.objects.get(pk=owner.org_id).require_two_factor
    assert events_since(mark) == []


def test_an_owner_with_a_second_factor_requires_it_and_stops_requiring_it(owner):
    client = client_for(owner)
    enrol_totp(client)
    mark = audit_mark()
    assert client.post(URL, {"require_two_factor": "on"})["Location"] == "/orgs/acme/members/"
    assert Organization.objects.get(pk=owner.org_id).require_two_factor
    assert client.post(URL, {})["Location"] == "/orgs/acme/members/"
    assert not Organization.objects.get(pk=owner.org_id).require_two_factor
    events = events_since(mark)
    assert [(e.action, e.org_id, e.actor_user_id) for e in events] == [
        ("org.two_factor_required", owner.org_id, owner.user_id),
        ("org.two_factor_not_required", owner.org_id, owner.user_id),
    ]


def test_the_members_page_shows_the_switch_to_owners_only(owner, admin):
    assert "Require two-factor sign-in" in client_for(owner).get("/orgs/acme/members/").text
    assert "Require two-factor sign-in" not in client_for(admin).get("/orgs/acme/members/").text


def test_it_refuses_admins_other_methods_and_outsiders(owner, admin, outsider):
    enrol_totp(client_for(admin))
    assert client_for(admin).post(URL, {"require_two_factor": "on"}).status_code == 403
    assert client_for(owner).get(URL).status_code == 405
    assert client_for(outsider).post(URL, {"require_two_factor": "on"}).status_code == 404
    assert not AuditEvent.objects.filter(action="org.two_factor_required").exists()


ORG_PAGES = [
    "/orgs/acme/keys/",
    "/orgs/acme/keys/new/",
    "/orgs/acme/members/",
    "/orgs/acme/audit/",
    "/orgs/acme/tokens/",
    "/orgs/acme/key-policy/",
]


@pytest.mark.parametrize("path", ORG_PAGES)
def test_it_sends_a_member_without_a_factor_to_enrolment_and_back(owner, admin, path):
    require(owner.org)
    client = client_for(admin)
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/security/?next={quote(path, safe='')}"
    page = client.get(response["Location"])
    assert "Acme requires two-factor sign-in" in page.text
    assert f'href="{path}"' in page.text

    enrol_totp(client)
    assert client.get(path).status_code == 200


def test_it_sends_key_pages_and_htmx_requests_to_enrolment(owner, member):
    key, _ = new_key(owner)
    require(owner.org)
    client = client_for(member)
    detail = client.get(f"/orgs/acme/keys/{key.pk}/")
    assert detail["Location"].startswith("/accounts/security/?next=")
    htmx = client.get("/orgs/acme/keys/", headers={"HX-Request": "true", "HX-Target": "key-table"})
    assert htmx.status_code == 200
    assert htmx["HX-Redirect"].startswith("/accounts/security/?next=")
    # A change is refused as well, and changes nothing.
    post = client.post(f"/orgs/acme/keys/{key.pk}/deactivate/", {"next": "/orgs/acme/keys/"})
    assert post["Location"].startswith("/accounts/security/?next=")
    key.refresh_from_db()
    assert key.status == "active"


def test_it_leaves_orgs_that_do_not_require_it_alone(owner, member):
    assert client_for(member).get("/orgs/acme/keys/").status_code == 200


def test_it_asks_for_the_second_factor_of_a_session_signed_in_without_it(owner, admin):
    secret, _ = enrol_totp(client_for(admin))
    require(owner.org)
    # Signed in by other means than the two-step sign-in: no second factor in this session.
    client = Client()
    client.force_login(admin.user)
    response = client.get("/orgs/acme/keys/")
    assert response["Location"] == (
        "/accounts/confirm/?next=%2Forgs%2Facme%2Fkeys%2F&factor=required"
    )
    page = client.get(response["Location"])
    assert "Confirm with code" in page.text and "Confirm with password" not in page.text
    # The password does not count here.
    client.post(
        "/accounts/confirm/",
        {
            "method": "password",
            "password": PASSWORD,
            "next": "/orgs/acme/keys/",
            "factor": "required",
        },
    )
    assert client.get("/orgs/acme/keys/").status_code == 302
    confirmed = client.post(
        "/accounts/confirm/",
        {"method": "code", "second-code": totp_code(secret, 1), "next": "/orgs/acme/keys/"},
    )
    assert confirmed["Location"] == "/orgs/acme/keys/"
    assert client.get("/orgs/acme/keys/").status_code == 200
