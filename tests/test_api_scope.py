"""A key's scope in the REST API: in every key answer, accepted on create, narrowed with
PUT /keys/{id}/scope; bad scopes answer 422, widening 409, others' keys 403; audited."""

from __future__ import annotations

import pytest

from accounts.tokens import create_api_token
from audit.trail import Actor
from keys.models import AccessKey
from keys.scope import Scope

from .conftest import audit_mark, events_since
from .test_api import assert_error, call

SCOPED = {
    "permission": "read-only",
    "buckets": [{"name": "logs", "prefix": "app/"}, {"name": "backups", "prefix": ""}],
    "networks": ["10.0.0.0/8", "2001:db8::/32"],
}
# As the API answers it: buckets by name, networks by version then address.
SCOPED_OUT = {
    "permission": "read-only",
    "buckets": [{"name": "backups", "prefix": ""}, {"name": "logs", "prefix": "app/"}],
    "networks": ["10.0.0.0/8", "2001:db8::/32"],
}
DEFAULT_OUT = {"permission": "admin", "buckets": None, "networks": []}


@pytest.fixture
def tokens(owner, member, auditor, outsider) -> dict[str, str]:
    people = {"owner": owner, "member": member, "auditor": auditor, "outsider": outsider}
    return {
        who: create_api_token(m, Actor.for_user(m.user), f"{who}-token").plaintext
        for who, m in people.items()
    }


def create(token: str, scope=None, name: str = "ingest"):
    return call(token, "POST", "/keys", {"name": name} | ({"scope": scope} if scope else {}))


def test_a_key_created_with_a_scope_has_it_everywhere_and_in_its_audit_event(tokens):
    mark = audit_mark()
    response = create(tokens["member"], SCOPED)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["scope"] == SCOPED_OUT
    key = AccessKey.objects.get(pk=body["id"])
    assert key.key_scope == Scope.build(**SCOPED)
    [event] = events_since(mark)
    assert event.action == "access_key.created" and event.details["scope"] == SCOPED_OUT
    assert call(tokens["owner"], "GET", f"/keys/{key.pk}").json()["scope"] == SCOPED_OUT
    listed = call(tokens["auditor"], "GET", "/keys").json()["items"]
    assert [k["scope"] for k in listed] == [SCOPED_OUT]


def test_without_a_scope_a_key_gets_the_default(tokens):
    body = create(tokens["owner"]).json()
    assert body["scope"] == DEFAULT_OUT
    assert AccessKey.objects.get(pk=body["id"]).scope == {}


def test_a_partial_scope_takes_the_defaults_for_the_rest(tokens):
    body = create(tokens["owner"], {"buckets": [{"name": "logs"}]}).json()
    assert body["scope"] == {
        "permission": "admin",
        "buckets": [{"name": "logs", "prefix": ""}],
        "networks": [],
    }


@pytest.mark.parametrize(
    "scope, code, message",
    [
        ({"buckets": [{"name": "Logs"}]}, "invalid_scope", "“Logs” is not a bucket name"),
        ({"buckets": []}, "invalid_scope", "Name at least one bucket, or allow all buckets."),
        (
            {"buckets": [{"name": "logs"}, {"name": "logs", "prefix": "a"}]},
            "invalid_scope",
            "Name each bucket once.",
        ),
        ({"networks": ["10.1.2.3/8"]}, "invalid_scope", "is not an IP address or network"),
        ({"buckets": [{"name": "logs", "prefix": "a\nb"}]}, "invalid_scope", "control characters"),
        ({"permission": "owner"}, "validation_error", "scope.permission"),
        ({"networks": ["10.0.0.0/8"] * 51}, "validation_error", "scope.networks"),
    ],
)
def test_a_bad_scope_is_refused_with_a_message_and_creates_nothing(tokens, scope, code, message):
    mark = audit_mark()
    response = create(tokens["owner"], scope)
    assert_error(response, 422, code)
    assert message in response.json()["message"]
    assert not AccessKey.objects.exists() and events_since(mark) == []


def test_narrowing_answers_the_key_with_its_new_scope_and_is_audited(tokens):
    key_id = create(tokens["member"], SCOPED).json()["id"]
    narrower = {
        "permission": "read-only",
        "buckets": [{"name": "logs", "prefix": "app/2026/"}],
        "networks": ["10.1.0.0/16"],
    }
    mark = audit_mark()
    response = call(tokens["member"], "PUT", f"/keys/{key_id}/scope", narrower)
    assert response.status_code == 200, response.content
    assert response.json()["scope"] == narrower
    assert AccessKey.objects.get(pk=key_id).key_scope == Scope.build(**narrower)
    [event] = events_since(mark)
    assert event.action == "access_key.scope_narrowed" and event.actor_type == "api_token"
    assert (event.details["from"], event.details["to"]) == (SCOPED_OUT, narrower)


@pytest.mark.parametrize(
    "wider",
    [
        {**SCOPED, "permission": "read-write"},
        {**SCOPED, "buckets": None},
        {**SCOPED, "buckets": [{"name": "logs", "prefix": "ap"}]},
        {**SCOPED, "buckets": [{"name": "other"}]},
        {**SCOPED, "networks": []},
        {**SCOPED, "networks": ["0.0.0.0/0"]},
    ],
    ids=["permission", "all-buckets", "shorter-prefix", "other-bucket", "any-ip", "wider-net"],
)
def test_widening_is_refused_with_409_and_changes_nothing(tokens, wider):
    key_id = create(tokens["owner"], SCOPED).json()["id"]
    mark = audit_mark()
    response = call(tokens["owner"], "PUT", f"/keys/{key_id}/scope", wider)
    assert_error(response, 409, "scope_widened")
    assert "can only be narrowed" in response.json()["message"]
    assert AccessKey.objects.get(pk=key_id).key_scope == Scope.build(**SCOPED)
    assert events_since(mark) == []


def test_a_member_cannot_narrow_an_owners_key_and_nobody_a_revoked_one(tokens):
    key_id = create(tokens["owner"], SCOPED).json()["id"]
    narrower = {**SCOPED, "networks": ["10.0.0.0/9"]}
    mark = audit_mark()
    assert_error(call(tokens["member"], "PUT", f"/keys/{key_id}/scope", narrower), 403, "forbidden")
    assert_error(
        call(tokens["auditor"], "PUT", f"/keys/{key_id}/scope", narrower), 403, "forbidden"
    )
    assert_error(
        call(tokens["outsider"], "PUT", f"/keys/{key_id}/scope", narrower), 404, "not_found"
    )
    assert events_since(mark) == []
    call(tokens["owner"], "DELETE", f"/keys/{key_id}")
    revoked = call(tokens["owner"], "PUT", f"/keys/{key_id}/scope", narrower)
    assert_error(revoked, 409, "invalid_state")


def test_an_auditor_cannot_create_a_scoped_key(tokens):
    assert_error(create(tokens["auditor"], SCOPED), 403, "forbidden")
    assert not AccessKey.objects.exists()


def test_the_openapi_document_describes_the_scope(client):
    document = client.get("/api/v1/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert schemas["KeyScope"]["properties"]["permission"]["enum"] == [
        "read-only",
        "read-write",
        "admin",
    ]
    assert "scope" in schemas["KeyOut"]["required"]
    assert "put" in document["paths"]["/api/v1/keys/{key_id}/scope"]
